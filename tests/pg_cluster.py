"""A private PostgreSQL cluster on a free loopback port, for the tests that need a server.

It lives in a temporary folder (run as the `postgres` user when the tests run as root, since
the server refuses root), trusts loopback connections, runs without durability (fsync off)
and is stopped and removed when the session ends.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg


def server_binaries() -> Path | None:
    """The folder of initdb and pg_ctl, the newest version found."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda path: [int(n) for n in path.parent.parent.name.split(".") if n.isdigit()],
    )
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class PostgresServer:
    port: int
    user: str = "postgres"

    def dsn(self, database: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user={self.user} dbname={database}"

    def sqlalchemy_url(self, database: str) -> str:
        """The URL Meltano takes as its system database (MELTANO_DATABASE_URI)."""
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> None:
        with psycopg.connect(self.dsn(), autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{name}"')

    def rows(self, sql: str, database: str = "postgres") -> list[dict[str, Any]]:
        """Rows of a query as JSON values (json_agg): json/jsonb columns come back nested,
        timestamps as text."""
        wrapped = f"SELECT coalesce(json_agg(t), '[]'::json) FROM ({sql}) AS t"
        with psycopg.connect(self.dsn(database)) as db:
            found = db.execute(wrapped.encode()).fetchone()
        assert found is not None
        rows: list[dict[str, Any]] = found[0]
        return rows

    def column_types(self, database: str, schema: str, table: str) -> dict[str, str]:
        found = self.rows(
            "SELECT column_name, data_type FROM information_schema.columns "
            f"WHERE table_schema = '{schema}' AND table_name = '{table}'",
            database,
        )
        return {row["column_name"]: row["data_type"] for row in found}


@contextlib.contextmanager
def private_cluster(binaries: Path) -> Iterator[PostgresServer]:
    as_user: dict[str, Any] = {}
    folder = Path(tempfile.mkdtemp(prefix="tap-deepconverse-pg-"))
    if os.geteuid() == 0:
        account = pwd.getpwnam("postgres")
        as_user = {"user": account.pw_uid, "group": account.pw_gid}
        os.chown(folder, account.pw_uid, account.pw_gid)
    data = folder / "data"

    def pg(*command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(command),
            capture_output=True,
            text=True,
            timeout=120,
            cwd=folder,
            check=False,
            **as_user,
        )

    try:
        done = pg(
            str(binaries / "initdb"),
            *("-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"),
        )
        assert done.returncode == 0, done.stdout + done.stderr
        for _attempt in range(5):  # another process may take the free port first
            port = free_port()
            options = (
                f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            )
            done = pg(
                str(binaries / "pg_ctl"),
                *("-D", str(data), "-l", str(folder / "log"), "-w", "-t", "60"),
                *("-o", options, "start"),
            )
            if done.returncode == 0:
                break
        else:
            log = (folder / "log").read_text(errors="replace") if (folder / "log").exists() else ""
            msg = f"PostgreSQL did not start: {done.stderr}\n{log[-3000:]}"
            raise RuntimeError(msg)
        try:
            yield PostgresServer(port)
        finally:
            pg(str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
