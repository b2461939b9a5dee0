"""End to end into real loaders: the tap's output, piped into the targets meltano.yml declares.

Each loader is installed from its pinned pip_url in meltano.yml into a venv of its own, cached
under ~/.cache/tap-deepconverse/loaders (keyed by pip_url and Python), and gets the config
meltano.yml gives it; the tap gets meltano.yml's extractor config (its stream maps) too. So
these runs are what `meltano run tap-deepconverse <loader>` does, minus Meltano itself.

PostgreSQL runs in a private cluster on a free loopback port under a temporary folder
(as the `postgres` user when the tests run as root); it is skipped only when no PostgreSQL
server binary exists.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.util
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml  # type: ignore[import-untyped]

from tap_deepconverse.simulator import Dataset, Simulator, SimulatorOptions, generate_dataset
from tap_deepconverse.timestamps import parse_timestamp
from tests.conftest import TapRunner, config_for

pytestmark = pytest.mark.targets

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tap-deepconverse"
TIME_FIELDS = {"conversations": ("startTime", "lastActionAt"), "messages": ("time",)}
OBJECT_FIELDS = {"conversations": ("metadata", "tags", "_extra"), "messages": ("_extra",)}
ANY_JSON_FIELDS = {"conversations": (), "messages": ("outMsg", "userInput")}


# The project's declarations


def meltano_plugin(kind: str, name: str) -> dict[str, Any]:
    project = yaml.safe_load((ROOT / "meltano.yml").read_text(encoding="utf-8"))
    (plugin,) = [p for p in project["plugins"][kind] if p["name"] == name]
    return dict(plugin)


def loader_config(name: str, **overrides: Any) -> dict[str, Any]:
    return {**(meltano_plugin("loaders", name).get("config") or {}), **overrides}


def loader_venv(name: str) -> Path:
    """A venv holding the loader's pinned pip_url, built once and kept between sessions."""
    spec = str(meltano_plugin("loaders", name)["pip_url"])
    key = hashlib.sha256(f"{spec}|{sys.version}|{sys.platform}".encode()).hexdigest()[:12]
    home = CACHE / "loaders" / f"{name}-{key}"
    done_marker = home / ".installed"
    if done_marker.exists():
        return home
    shutil.rmtree(home, ignore_errors=True)  # a build that was interrupted
    home.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "UV_COMPILE_BYTECODE": "1"}
    if importlib.util.find_spec("uv"):  # meltano's own dependency; far faster than pip
        from uv import find_uv_bin

        uv = find_uv_bin()
        install = [
            [uv, "venv", "--quiet", "--python", sys.executable, str(home)],
            [
                uv,
                "pip",
                "install",
                "--quiet",
                "--python",
                str(home / "bin" / "python"),
                *spec.split(),
            ],
        ]
    else:
        install = [
            [sys.executable, "-m", "venv", str(home)],
            [str(home / "bin" / "python"), "-m", "pip", "install", "--quiet", *spec.split()],
        ]
    for command in install:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=600, env=env, check=False
        )
        assert done.returncode == 0, f"installing {spec} failed:\n{done.stdout}{done.stderr}"
    done_marker.touch()
    return home


def run_loader(name: str, config: dict[str, Any], singer: str, workdir: Path) -> str:
    """Pipe Singer messages into a loader; its stdout (the state it emitted)."""
    venv = loader_venv(name)
    config_path = workdir / f"{name}-config.json"
    config_path.write_text(json.dumps(config), encoding="utf-8")
    done = subprocess.run(
        [str(venv / "bin" / name), "--config", str(config_path)],
        input=singer,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=workdir,
        check=False,
    )
    assert done.returncode == 0, f"{name} failed:\n{done.stderr[-4000:]}"
    return done.stdout


# The data: a simulator with undeclared fields, times in milliseconds, and one tap run


@dataclass
class Export:
    dataset: Dataset
    singer: str  # the tap's stdout
    properties: dict[str, set[str]]  # declared fields per stream, from the SCHEMA messages

    def expected(self, stream: str) -> dict[str, dict[str, Any]]:
        """The records the simulator holds, as served, by _id, with the bot they belong to."""
        records = {}
        for bot in self.dataset.bots:
            if stream == "conversations":
                served = self.dataset.conversations(bot, time_format="millis")
            else:
                served = self.dataset.messages(bot, time_format="millis")
            for record in served:
                records[record["_id"]] = {**record, "bot_name": bot}
        return records

    def extra(self, stream: str, record: dict[str, Any]) -> dict[str, Any] | None:
        """What the tap puts in `_extra`: the fields its schema does not declare."""
        known = self.properties[stream]
        found = {key: value for key, value in record.items() if key not in known}
        return found or None


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Export:
    dataset = generate_dataset(
        seed=11, days=2, conversations_per_day=40, extra_field_rate=0.3
    )  # 2025-01-01 to 2025-01-03
    runner = TapRunner(tmp_path_factory.mktemp("tap"))
    # The extractor's config in meltano.yml (its stream maps) applies, as under Meltano.
    extractor_config = meltano_plugin("extractors", "tap-deepconverse").get("config") or {}
    with Simulator(dataset, SimulatorOptions(time_format="millis")) as sim:
        run = runner.run(
            config_for(sim, end_date="2025-01-03T00:00:00Z", **extractor_config), timeout=300
        )
    assert run.exit_code == 0, run.stderr[-4000:]
    assert sum(len(records) for records in run.records.values()) == len(dataset)
    properties = {
        message["stream"]: set(message["schema"]["properties"])
        for message in run.messages
        if message["type"] == "SCHEMA"
    }
    return Export(dataset=dataset, singer=run.stdout, properties=properties)


def test_the_simulator_sent_undeclared_fields(export: Export) -> None:
    for stream in ("conversations", "messages"):
        assert any(export.extra(stream, r) for r in export.expected(stream).values()), stream


# What landed, compared field by field


def as_time(value: object) -> dt.datetime:
    """A landed time as naive UTC (what a TIMESTAMP column holds)."""
    if isinstance(value, dt.datetime):
        moment = value if value.tzinfo is None else value.astimezone(dt.timezone.utc)
        return moment.replace(tzinfo=None)
    return parse_timestamp(value).replace(tzinfo=None)


def served_time(value: int) -> dt.datetime:
    """A time the simulator served (milliseconds), as naive UTC."""
    return parse_timestamp(value).replace(tzinfo=None)


def check_rows(
    export: Export,
    stream: str,
    rows: list[dict[str, Any]],
    decode: Callable[[str, Any], Any],
) -> None:
    """Every record landed once, with its times, its JSON values and its `_extra` intact."""
    expected = export.expected(stream)
    by_id = {row["_id"]: row for row in rows}
    assert len(rows) == len(by_id) == len(expected), f"{stream}: rows vs simulator records"
    assert set(by_id) == set(expected)
    for record_id, record in expected.items():
        row = by_id[record_id]
        assert row["bot_name"] == record["bot_name"]
        for name in TIME_FIELDS[stream]:
            assert as_time(row[name]) == served_time(record[name]), (stream, record_id, name)
        for name in OBJECT_FIELDS[stream] + ANY_JSON_FIELDS[stream]:
            want = export.extra(stream, record) if name == "_extra" else record.get(name)
            assert decode(name, row[name]) == want, (stream, record_id, name)


# DuckDB (target-duckdb, jwills)


@pytest.fixture(scope="module")
def duckdb_file(export: Export, tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("duckdb")
    path = workdir / "warehouse.duckdb"
    config = loader_config("target-duckdb", filepath=str(path))
    run_loader("target-duckdb", config, export.singer, workdir)
    return path


def duckdb_rows(path: Path, table: str) -> list[dict[str, Any]]:
    with duckdb.connect(str(path), read_only=True) as db:
        result = db.execute(f"SELECT * FROM deepconverse.{table}")
        names = [column[0] for column in result.description or []]
        return [dict(zip(names, row, strict=True)) for row in result.fetchall()]


def duckdb_types(path: Path, table: str) -> dict[str, str]:
    with duckdb.connect(str(path), read_only=True) as db:
        found = db.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'deepconverse' AND table_name = ?",
            [table],
        ).fetchall()
    return {str(name): str(kind) for name, kind in found}


def decode_duckdb(_name: str, value: Any) -> Any:
    # JSON columns, and the VARCHAR ones meltano.yml's stream maps fill, hold JSON text.
    return None if value is None else json.loads(value)


@pytest.mark.parametrize("stream", ["conversations", "messages"])
def test_duckdb_rows_and_values(export: Export, duckdb_file: Path, stream: str) -> None:
    # target-duckdb folds column names to lower case.
    rows = [
        {_original(export, stream, key): value for key, value in row.items()}
        for row in duckdb_rows(duckdb_file, stream)
    ]
    check_rows(export, stream, rows, decode_duckdb)


def _original(export: Export, stream: str, column: str) -> str:
    for name in export.properties[stream]:
        if name.lower() == column:
            return name
    return column


def test_duckdb_column_types(duckdb_file: Path) -> None:
    conversations = duckdb_types(duckdb_file, "conversations")
    messages = duckdb_types(duckdb_file, "messages")
    assert conversations["starttime"] == conversations["lastactionat"] == "TIMESTAMP"
    assert messages["time"] == "TIMESTAMP"
    assert conversations["metadata"] == conversations["tags"] == "JSON"
    assert conversations["_extra"] == messages["_extra"] == "JSON"
    assert messages["outmsg"] in ("JSON", "VARCHAR")
    assert messages["userinput"] in ("JSON", "VARCHAR")


def test_duckdb_upserts_records_sent_again(
    export: Export, duckdb_file: Path, tmp_path: Path
) -> None:
    """An incremental run re-reads its lookback window: the same records must not double."""
    copy = tmp_path / "again.duckdb"
    shutil.copy(duckdb_file, copy)
    run_loader(
        "target-duckdb", loader_config("target-duckdb", filepath=str(copy)), export.singer, tmp_path
    )
    for stream in ("conversations", "messages"):
        assert len(duckdb_rows(copy, stream)) == len(export.expected(stream))


# JSON Lines (target-jsonl, andyh1203)


def test_jsonl(export: Export, tmp_path: Path) -> None:
    config = loader_config("target-jsonl", destination_path=str(tmp_path / "out"))
    run_loader("target-jsonl", config, export.singer, tmp_path)
    extractor_config = meltano_plugin("extractors", "tap-deepconverse").get("config") or {}
    stream_maps = extractor_config.get("stream_maps") or {}
    for stream in ("conversations", "messages"):
        lines = (tmp_path / "out" / f"{stream}.jsonl").read_text(encoding="utf-8").splitlines()
        mapped = set(stream_maps.get(stream, {}))

        def decode(name: str, value: Any, mapped: set[str] = mapped) -> Any:
            return json.loads(value) if name in mapped and value is not None else value

        rows = [json.loads(line) for line in lines]
        for row in rows:  # a field the tap left out is absent, not null
            for name in OBJECT_FIELDS[stream] + ANY_JSON_FIELDS[stream]:
                row.setdefault(name, None)
        check_rows(export, stream, rows, decode)


# PostgreSQL (meltanolabs-target-postgres)


def postgres_binaries() -> Path | None:
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


@dataclass
class Postgres:
    port: int

    def config(self) -> dict[str, Any]:
        return loader_config(
            "target-postgres",
            host="127.0.0.1",
            port=self.port,
            user="postgres",
            password="unused",  # the private cluster trusts loopback
            database="postgres",
        )

    def rows(self, sql: str) -> list[dict[str, Any]]:
        """Rows of a query as JSON (json_agg), read with the loader's own psycopg."""
        script = (
            "import json, sys, psycopg\n"
            "with psycopg.connect(sys.argv[1]) as db:\n"
            "    print(json.dumps(db.execute(sys.argv[2]).fetchone()[0]))\n"
        )
        done = subprocess.run(
            [
                str(loader_venv("target-postgres") / "bin" / "python"),
                "-c",
                script,
                f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                f"SELECT coalesce(json_agg(t), '[]'::json) FROM ({sql}) AS t",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        rows: list[dict[str, Any]] = json.loads(done.stdout)
        return rows

    def types(self, table: str) -> dict[str, str]:
        found = self.rows(
            "SELECT column_name, data_type FROM information_schema.columns "
            f"WHERE table_schema = 'deepconverse' AND table_name = '{table}'"
        )
        return {row["column_name"]: row["data_type"] for row in found}


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    binaries = postgres_binaries()
    if binaries is None:
        pytest.skip("no PostgreSQL server binary (initdb) on this machine")
    as_user: dict[str, Any] = {}
    folder = Path(tempfile.mkdtemp(prefix="tap-deepconverse-pg-"))
    if os.geteuid() == 0:  # the server refuses to run as root
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
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
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
                "-D",
                str(data),
                "-l",
                str(folder / "log"),
                "-w",
                "-t",
                "60",
                "-o",
                options,
                "start",
            )
            if done.returncode == 0:
                break
        else:
            log = (folder / "log").read_text(errors="replace") if (folder / "log").exists() else ""
            pytest.fail(f"PostgreSQL did not start: {done.stderr}\n{log[-3000:]}")
        try:
            yield Postgres(port)
        finally:
            pg(str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres_loaded(
    export: Export, postgres: Postgres, tmp_path_factory: pytest.TempPathFactory
) -> Postgres:
    run_loader("target-postgres", postgres.config(), export.singer, tmp_path_factory.mktemp("pg"))
    return postgres


@pytest.mark.parametrize("stream", ["conversations", "messages"])
def test_postgres_rows_and_values(export: Export, postgres_loaded: Postgres, stream: str) -> None:
    types = postgres_loaded.types(stream)

    def decode(name: str, value: Any) -> Any:
        # json_agg nests json/jsonb columns as JSON; text columns hold JSON text.
        if value is None or types[name] in ("json", "jsonb", "ARRAY"):
            return value
        return json.loads(value)

    rows = postgres_loaded.rows(f"SELECT * FROM deepconverse.{stream}")
    check_rows(export, stream, rows, decode)


def test_postgres_column_types(postgres_loaded: Postgres) -> None:
    conversations = postgres_loaded.types("conversations")
    messages = postgres_loaded.types("messages")
    for kind in (conversations["startTime"], conversations["lastActionAt"], messages["time"]):
        assert kind.startswith("timestamp"), kind
    assert conversations["metadata"] == conversations["_extra"] == messages["_extra"] == "jsonb"
    assert conversations["tags"] in ("ARRAY", "jsonb")


def test_postgres_upserts_records_sent_again(
    export: Export, postgres_loaded: Postgres, tmp_path: Path
) -> None:
    run_loader("target-postgres", postgres_loaded.config(), export.singer, tmp_path)
    for stream in ("conversations", "messages"):
        (found,) = postgres_loaded.rows(f"SELECT count(*) AS n FROM deepconverse.{stream}")
        assert found["n"] == len(export.expected(stream)), stream
