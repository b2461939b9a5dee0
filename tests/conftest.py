"""Shared fixtures: a simulator of the Export API on loopback and a way to run the tap.

The tap runs as a real process (``python -m tap_deepconverse``) against the simulator over
HTTP, exactly as Meltano runs it; its Singer messages are read back from stdout.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tap_deepconverse.simulator import (
    DEFAULT_API_KEY,
    Dataset,
    Simulator,
    SimulatorOptions,
    generate_dataset,
)
from tests.meltano_project import SCHEMA, MeltanoProject, build_user_project
from tests.pg_cluster import PostgresServer, private_cluster, server_binaries

DAY = 86_400
START = 1_735_689_600  # 2025-01-01T00:00:00Z, where generated data begins
START_DATE = "2025-01-01T00:00:00Z"


@dataclass
class TapRun:
    """What one tap process wrote."""

    exit_code: int
    messages: list[dict[str, Any]]
    stderr: str
    stdout: str
    seconds: float
    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for message in self.messages:
            if message["type"] == "RECORD":
                self.records.setdefault(message["stream"], []).append(message["record"])

    def ids(self, stream: str) -> list[str]:
        return [record["_id"] for record in self.records.get(stream, [])]

    def streams_that_logged(self, text: str) -> list[str]:
        """The stream of each log line holding ``text``, from its logger's name, in order."""
        lines = (line.split(" | ") for line in self.stderr.splitlines() if text in line)
        return [parts[2].strip().rsplit(".", 1)[-1] for parts in lines if len(parts) > 3]

    @property
    def states(self) -> list[dict[str, Any]]:
        return [m["value"] for m in self.messages if m["type"] == "STATE"]

    @property
    def final_state(self) -> dict[str, Any]:
        return self.states[-1]


def assert_windows_cover(pages: list[dict[str, str]], start: int, end: int) -> None:
    """The windows asked (first pages), each one second early, cover ``start`` to ``end``
    without a gap. They may overlap: a dense window is asked again as pieces, and a long one
    is checked by asking its last part on its own."""
    assert pages, "no request"
    bounds = sorted((int(p["start_time"]) + 1, int(p["end_time"])) for p in pages)
    assert bounds[0][0] == start
    reached = bounds[0][1]
    for piece_start, piece_end in bounds[1:]:
        assert piece_start <= reached, (piece_start, reached)
        reached = max(reached, piece_end)
    assert reached == end


def bookmark(state: dict[str, Any], stream: str, bot: str) -> str | None:
    """The bookmark of one bot and stream in a state, or None."""
    for partition in state.get("bookmarks", {}).get(stream, {}).get("partitions", []):
        if partition["context"] == {"bot_name": bot}:
            value = partition.get("replication_key_value")
            return str(value) if value is not None else None
    return None


def conversations_seen(state: dict[str, Any], bot: str) -> dict[str, Any]:
    """What the state says one bot's conversations showed (conversation_changes.Seen)."""
    for partition in state["bookmarks"]["conversations"]["partitions"]:
        if partition["context"] == {"bot_name": bot}:
            seen: dict[str, Any] = partition["conversations_seen"]
            return seen
    raise KeyError(bot)


def parse_messages(stdout: str) -> list[dict[str, Any]]:
    """Singer messages, one per line; other output (--about, --discover) is skipped."""
    return [json.loads(line) for line in stdout.splitlines() if line.startswith('{"type":')]


class TapRunner:
    """Writes config and state files and runs the tap in a subprocess."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.count = 0

    def _files(self, config: dict[str, Any], state: dict[str, Any] | str | None) -> list[str]:
        self.count += 1
        config_path = self.workdir / f"config-{self.count}.json"
        config_path.write_text(json.dumps(config))
        args = ["--config", str(config_path)]
        if state is not None:
            state_path = self.workdir / f"state-{self.count}.json"
            state_path.write_text(state if isinstance(state, str) else json.dumps(state))
            args += ["--state", str(state_path)]
        return args

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "tap_deepconverse", *args]

    def env(self, log_level: str = "INFO") -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TAP_DEEPCONVERSE_")}
        env["TAP_DEEPCONVERSE_LOGLEVEL"] = log_level
        return env

    def run(
        self,
        config: dict[str, Any],
        state: dict[str, Any] | str | None = None,
        *,
        extra_args: tuple[str, ...] = (),
        timeout: float = 120,
        log_level: str = "INFO",
    ) -> TapRun:
        started = time.monotonic()
        done = subprocess.run(
            self.command(*self._files(config, state), *extra_args),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env(log_level),
            check=False,
        )
        return TapRun(
            exit_code=done.returncode,
            messages=parse_messages(done.stdout),
            stderr=done.stderr,
            stdout=done.stdout,
            seconds=time.monotonic() - started,
        )

    def run_and_signal(
        self, config: dict[str, Any], *, after_records: int, sig: int = signal.SIGTERM
    ) -> TapRun:
        """Start the tap, send it a signal once it has written some records, collect the rest."""
        started = time.monotonic()
        process = subprocess.Popen(
            self.command(*self._files(config, None)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env(),
        )
        assert process.stdout is not None
        assert process.stderr is not None
        # stderr is drained aside, and stdout read to its end through the same buffered
        # reader: communicate() would read the pipe past what the reader has buffered.
        errors: list[str] = []
        drain = threading.Thread(target=lambda: errors.append(process.stderr.read()))
        drain.start()
        lines: list[str] = []
        records = 0
        signalled = False
        for line in process.stdout:
            lines.append(line)
            records += '"type":"RECORD"' in line
            if records >= after_records and not signalled:
                process.send_signal(sig)
                signalled = True
        process.wait(timeout=60)
        drain.join(timeout=60)
        process.stdout.close()
        process.stderr.close()
        err = "".join(errors)
        stdout = "".join(lines)
        return TapRun(
            exit_code=process.returncode,
            messages=parse_messages(stdout),
            stderr=err,
            stdout=stdout,
            seconds=time.monotonic() - started,
        )


@pytest.fixture
def tap(tmp_path: Path) -> TapRunner:
    return TapRunner(tmp_path)


@pytest.fixture(scope="session")
def small_dataset() -> Dataset:
    return generate_dataset(seed=7, days=3, conversations_per_day=30)


@pytest.fixture
def simulator(small_dataset: Dataset) -> Iterator[Simulator]:
    with Simulator(small_dataset, SimulatorOptions()) as sim:
        yield sim


@pytest.fixture
def fast_simulator(small_dataset: Dataset) -> Iterator[Simulator]:
    """No rate limit: correctness runs go fast (the limiter has its own tests)."""
    with Simulator(small_dataset, SimulatorOptions(rate_limit=None)) as sim:
        yield sim


def config_for(sim: Simulator, **overrides: Any) -> dict[str, Any]:
    """A tap config aimed at the simulator, covering its whole dataset in daily windows."""
    config: dict[str, Any] = {
        "api_key": DEFAULT_API_KEY,
        "api_url": sim.url,
        "bot_names": list(sim.dataset.bots),
        "start_date": START_DATE,
        "end_date": "2025-01-04T00:00:00Z",
        "window_hours": 24,
        "request_timeout": 5,
        "max_retries": 6,
    }
    config.update(overrides)
    return config


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One private PostgreSQL cluster for the session; each user makes its own database."""
    binaries = server_binaries()
    if binaries is None:
        pytest.skip("no PostgreSQL server binary (initdb) on this machine")
    with private_cluster(binaries) as server:
        yield server


def iso(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture(scope="session")
def recent_dataset() -> Dataset:
    """Two days of data up to the last whole hour, so that a run without end_date, as a
    user's runs are, exports all of it in a few windows."""
    end = int(time.time()) // 3600 * 3600
    return generate_dataset(
        seed=31, start=end - 2 * DAY, days=2, conversations_per_day=40, extra_field_rate=0.3
    )


@pytest.fixture(scope="session")
def user_simulator(recent_dataset: Dataset) -> Iterator[Simulator]:
    with Simulator(recent_dataset, SimulatorOptions()) as sim:
        yield sim


USER_DATABASE = "user_project"


@pytest.fixture(scope="session")
def user_project(
    tmp_path_factory: pytest.TempPathFactory,
    user_simulator: Simulator,
    postgres_server: PostgresServer,
) -> MeltanoProject:
    """A user's own Meltano project (tests/meltano_project.py), installed once a session."""
    postgres_server.create_database(USER_DATABASE)
    loader_config: dict[str, dict[str, Any]] = {
        "target-duckdb": {"filepath": "output/warehouse.duckdb", "default_target_schema": SCHEMA},
        "target-jsonl": {"destination_path": "output", "do_timestamp_file": False},
        "target-postgres": {
            "host": "127.0.0.1",
            "port": postgres_server.port,
            "user": postgres_server.user,
            "password": "unused",  # the private cluster trusts loopback
            "database": USER_DATABASE,
            "default_target_schema": SCHEMA,
        },
        "target-postgres-transferwise": {
            "host": "127.0.0.1",
            "port": postgres_server.port,
            "user": postgres_server.user,
            "password": "unused",
            "dbname": USER_DATABASE,
            "default_target_schema": f"{SCHEMA}_transferwise",  # apart from target-postgres
        },
        "target-csv": {
            "output_path": "output/csv",
            "file_naming_scheme": "{stream_name}-{timestamp}.csv",
        },
    }
    project = build_user_project(
        tmp_path_factory.mktemp("user") / "my-project",
        api_url=user_simulator.url,
        start_date=iso(user_simulator.dataset.start),
        loader_config=loader_config,
    )
    # The key comes from the environment, as the README says.
    project.env["TAP_DEEPCONVERSE_API_KEY"] = DEFAULT_API_KEY
    return project
