"""End to end into real loaders: the tap's output, piped into the targets meltano.yml declares.

Each loader is installed from its pinned pip_url in meltano.yml into a venv of its own, cached
under ~/.cache/tap-deepconverse/loaders (keyed by pip_url and Python), and gets the config
meltano.yml gives it. The tap gets the config of the extractor meltano.yml runs with that
loader (the README's loader table says which settings it adds: `tap-deepconverse--duckdb`
sets json_as_text for target-duckdb, for instance). So these runs are what `meltano run
<extractor> <loader>` does in this repository's project, minus Meltano itself. What target-csv
writes is tested from a user's project (test_user_project.py); here, how it treats its files.

PostgreSQL is the session's private cluster on loopback (tests/pg_cluster.py); it is skipped
only when no PostgreSQL server binary exists.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from tap_deepconverse.simulator import Dataset, Simulator, SimulatorOptions, generate_dataset
from tests.conftest import TapRunner, config_for
from tests.landed import (
    ANY_JSON_FIELDS,
    STREAMS,
    check_rows,
    csv_rows,
    declared_names,
    duckdb_rows,
    duckdb_types,
    extra,
    postgres_decoder,
    served,
)
from tests.meltano_project import SCHEMA, readme_loaders
from tests.pg_cluster import PostgresServer

pytestmark = pytest.mark.targets

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tap-deepconverse"
POSTGRES_LOADERS = ("target-postgres", "target-postgres-transferwise")


# The project's declarations


def meltano_plugin(kind: str, name: str) -> dict[str, Any]:
    project = yaml.safe_load((ROOT / "meltano.yml").read_text(encoding="utf-8"))
    (plugin,) = [p for p in project["plugins"][kind] if p["name"] == name]
    return dict(plugin)


def loader_config(name: str, **overrides: Any) -> dict[str, Any]:
    return {**(meltano_plugin("loaders", name).get("config") or {}), **overrides}


def loader_executable(name: str) -> str:
    plugin = meltano_plugin("loaders", name)
    return str(plugin.get("executable", plugin["name"]))


def extractor_config(loader: str) -> dict[str, Any]:
    """The config meltano.yml gives the extractor it runs with `loader`, inherited included."""
    (row,) = [row for row in readme_loaders() if row.plugin == loader]
    plugin = meltano_plugin("extractors", row.extractor)
    config = dict(plugin.get("config") or {})
    if parent := plugin.get("inherit_from"):
        config = {**(meltano_plugin("extractors", parent).get("config") or {}), **config}
    return config


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
        [str(venv / "bin" / loader_executable(name)), "--config", str(config_path)],
        input=singer,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=workdir,
        check=False,
    )
    assert done.returncode == 0, f"{name} failed:\n{done.stderr[-4000:]}"
    return done.stdout


# The data: a simulator with undeclared fields and times in milliseconds; one tap run per
# extractor config


@dataclass
class Export:
    dataset: Dataset
    singer: str  # the tap's stdout

    def expected(self, stream: str) -> dict[str, dict[str, Any]]:
        return served(self.dataset, stream, time_format="millis")


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return generate_dataset(
        seed=11, days=2, conversations_per_day=40, extra_field_rate=0.3
    )  # 2025-01-01 to 2025-01-03


@pytest.fixture(scope="module")
def export_for(
    dataset: Dataset, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[str], Export]]:
    """The tap's output for a loader, with the config of the extractor run with it."""
    runner = TapRunner(tmp_path_factory.mktemp("tap"))
    done: dict[str, Export] = {}
    with Simulator(dataset, SimulatorOptions(time_format="millis")) as sim:

        def export(loader: str) -> Export:
            config = extractor_config(loader)
            key = json.dumps(config, sort_keys=True)
            if key not in done:
                run = runner.run(
                    config_for(sim, end_date="2025-01-03T00:00:00Z", **config), timeout=300
                )
                assert run.exit_code == 0, run.stderr[-4000:]
                assert sum(len(records) for records in run.records.values()) == len(dataset)
                done[key] = Export(dataset=dataset, singer=run.stdout)
            return done[key]

        yield export


def test_the_simulator_sent_undeclared_fields(dataset: Dataset) -> None:
    for stream in STREAMS:
        records = served(dataset, stream).values()
        assert any(extra(stream, record) for record in records), stream


def test_json_as_text_only_for_the_loaders_that_need_it() -> None:
    """target-postgres (meltanolabs) keeps JSONB and target-jsonl JSON values; the extractors
    run with the loaders that cannot load a JSON string as JSON set it."""
    loaders = [row.plugin for row in readme_loaders()]
    settings = {loader: extractor_config(loader).get("json_as_text") for loader in loaders}
    assert settings == {
        "target-duckdb": True,
        "target-jsonl": None,
        "target-postgres": None,
        "target-postgres-transferwise": True,
        "target-csv": True,
    }


def decode_json_text(name: str, value: Any) -> Any:
    """JSON columns and the any-JSON fields sent as JSON text (json_as_text) hold text."""
    return None if value is None else json.loads(value)


def as_sent(_name: str, value: Any) -> Any:
    return value


# DuckDB (target-duckdb, jwills), with json_as_text


@pytest.fixture(scope="module")
def duckdb_export(export_for: Callable[[str], Export]) -> Export:
    return export_for("target-duckdb")


@pytest.fixture(scope="module")
def duckdb_file(duckdb_export: Export, tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("duckdb")
    path = workdir / "warehouse.duckdb"
    config = loader_config("target-duckdb", filepath=str(path))
    run_loader("target-duckdb", config, duckdb_export.singer, workdir)
    return path


@pytest.mark.parametrize("stream", STREAMS)
def test_duckdb_rows_and_values(duckdb_export: Export, duckdb_file: Path, stream: str) -> None:
    rows = duckdb_rows(duckdb_file, SCHEMA, stream)
    check_rows(duckdb_export.expected(stream), stream, rows, decode_json_text)


def test_duckdb_column_types(duckdb_file: Path) -> None:
    conversations = duckdb_types(duckdb_file, SCHEMA, "conversations")
    messages = duckdb_types(duckdb_file, SCHEMA, "messages")
    assert conversations["startTime"] == conversations["lastActionAt"] == "TIMESTAMP"
    assert messages["time"] == "TIMESTAMP"
    assert conversations["metadata"] == conversations["tags"] == "JSON"
    assert conversations["_extra"] == messages["_extra"] == "JSON"
    assert messages["outMsg"] == messages["userInput"] == "VARCHAR"


def test_duckdb_upserts_records_sent_again(
    duckdb_export: Export, duckdb_file: Path, tmp_path: Path
) -> None:
    """An incremental run re-reads its lookback window: the same records must not double."""
    copy = tmp_path / "again.duckdb"
    shutil.copy(duckdb_file, copy)
    config = loader_config("target-duckdb", filepath=str(copy))
    run_loader("target-duckdb", config, duckdb_export.singer, tmp_path)
    for stream in STREAMS:
        assert len(duckdb_rows(copy, SCHEMA, stream)) == len(duckdb_export.expected(stream))


# JSON Lines (target-jsonl, andyh1203)


def test_jsonl(export_for: Callable[[str], Export], tmp_path: Path) -> None:
    export = export_for("target-jsonl")
    config = loader_config("target-jsonl", destination_path=str(tmp_path / "out"))
    run_loader("target-jsonl", config, export.singer, tmp_path)
    for stream in STREAMS:
        lines = (tmp_path / "out" / f"{stream}.jsonl").read_text(encoding="utf-8").splitlines()
        rows = [json.loads(line) for line in lines]
        check_rows(export.expected(stream), stream, rows, as_sent)


# CSV (meltanolabs-target-csv); what lands is tested from a user's project


def first_records(singer: str, per_stream: int) -> str:
    """The Singer messages with only the first records of each stream."""
    kept: list[str] = []
    counts: dict[str, int] = {}
    for line in singer.splitlines(keepends=True):
        message = json.loads(line)
        if message["type"] == "RECORD":
            counts[message["stream"]] = counts.get(message["stream"], 0) + 1
            if counts[message["stream"]] > per_stream:
                continue
        kept.append(line)
    return "".join(kept)


def test_csv_rewrites_a_stream_file_on_every_run(
    export_for: Callable[[str], Export], tmp_path: Path
) -> None:
    """Whatever overwrite_behavior says: so meltano.yml gives each run files of its own."""
    assert "{timestamp}" in loader_config("target-csv")["file_naming_scheme"]
    scheme = "{stream_name}.csv"
    config = loader_config(
        "target-csv",
        output_path=str(tmp_path / "out"),
        file_naming_scheme=scheme,
        overwrite_behavior="append_records",
    )
    export = export_for("target-csv")
    run_loader("target-csv", config, export.singer, tmp_path)
    second = first_records(export.singer, per_stream=5)
    run_loader("target-csv", config, second, tmp_path)
    sent = [json.loads(line) for line in second.splitlines()]
    for stream in STREAMS:
        ids = [row["_id"] for row in csv_rows(tmp_path / "out", scheme, stream)]
        assert ids == [
            m["record"]["_id"] for m in sent if m["type"] == "RECORD" and m["stream"] == stream
        ]
        assert len(ids) == 5


# PostgreSQL: target-postgres (meltanolabs), target-postgres-transferwise (pipelinewise), each
# with the extractor meltano.yml runs it with


@dataclass
class Postgres:
    server: PostgresServer
    loader: str
    database: str

    @property
    def schema(self) -> str:
        return str(loader_config(self.loader)["default_target_schema"])

    def config(self) -> dict[str, Any]:
        # meltanolabs names the database `database`, pipelinewise `dbname`.
        database_key = "dbname" if "dbname" in loader_config(self.loader) else "database"
        return loader_config(
            self.loader,
            host="127.0.0.1",
            port=self.server.port,
            user=self.server.user,
            password="unused",  # the private cluster trusts loopback
            **{database_key: self.database},
        )

    def rows(self, stream: str) -> list[dict[str, Any]]:
        found = self.server.rows(f'SELECT * FROM {self.schema}."{stream}"', self.database)
        return [declared_names(stream, row) for row in found]

    def types(self, stream: str) -> dict[str, str]:
        types = self.server.column_types(self.database, self.schema, stream)
        return declared_names(stream, types)


@pytest.fixture(scope="module", params=POSTGRES_LOADERS)
def postgres_loaded(
    request: pytest.FixtureRequest,
    export_for: Callable[[str], Export],
    postgres_server: PostgresServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Postgres:
    loader = request.param
    postgres = Postgres(postgres_server, loader, f"targets_{loader.replace('-', '_')}")
    postgres_server.create_database(postgres.database)
    singer = export_for(loader).singer
    run_loader(loader, postgres.config(), singer, tmp_path_factory.mktemp("pg"))
    return postgres


@pytest.mark.parametrize("stream", STREAMS)
def test_postgres_rows_and_values(
    export_for: Callable[[str], Export], postgres_loaded: Postgres, stream: str
) -> None:
    rows = postgres_loaded.rows(stream)
    decode = postgres_decoder(postgres_loaded.types(stream))
    check_rows(export_for(postgres_loaded.loader).expected(stream), stream, rows, decode)


def test_postgres_column_types(postgres_loaded: Postgres) -> None:
    """Times as timestamps; the JSON fields as the README's loader table says."""
    (row,) = [row for row in readme_loaders() if row.plugin == postgres_loaded.loader]
    conversations = postgres_loaded.types("conversations")
    messages = postgres_loaded.types("messages")
    for kind in (conversations["startTime"], conversations["lastActionAt"], messages["time"]):
        assert kind.startswith("timestamp"), kind
    objects = (conversations["metadata"], conversations["_extra"], messages["_extra"])
    assert set(objects) == {row.object_type}
    assert conversations["tags"] in ("ARRAY", "jsonb")
    assert {messages[name] for name in ANY_JSON_FIELDS["messages"]} == {row.any_json_type}


def test_postgres_upserts_records_sent_again(
    export_for: Callable[[str], Export], postgres_loaded: Postgres, tmp_path: Path
) -> None:
    export = export_for(postgres_loaded.loader)
    run_loader(postgres_loaded.loader, postgres_loaded.config(), export.singer, tmp_path)
    for stream in STREAMS:
        assert len(postgres_loaded.rows(stream)) == len(export.expected(stream)), stream
