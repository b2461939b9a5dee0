"""A user's own Meltano project loads into every loader the README lists.

The project is made as the README's "Add it to an existing Meltano project" section says
(tests/meltano_project.py: from the Hub definition, not from this repository's meltano.yml).
For each row of the README's loader table, `meltano run <extractor> <loader>` exports the
simulator's data (over HTTP on loopback, no end_date), and every record is read back from
where it landed: once, with its values, and with the column types the table gives.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tap_deepconverse.simulator import Simulator
from tests.conftest import USER_DATABASE
from tests.landed import (
    ANY_JSON_FIELDS,
    STREAMS,
    check_rows,
    csv_rows,
    declared_names,
    duckdb_rows,
    duckdb_types,
    postgres_decoder,
    python_literal,
    served,
)
from tests.meltano_project import SCHEMA, LoaderRow, MeltanoProject, readme_loaders
from tests.pg_cluster import PostgresServer

pytestmark = pytest.mark.targets

ROWS = {row.plugin: row for row in readme_loaders()}


def test_the_readme_lists_the_loaders_tested_here() -> None:
    assert sorted(ROWS) == sorted(READERS)


# Readers: (rows of a stream, column types or None where the destination has none, decode),
# from where the loader's config in the project says it writes

Landed = tuple[list[dict[str, Any]], dict[str, str] | None, Callable[[str, Any], Any]]
Reader = Callable[[MeltanoProject, PostgresServer, str, str], Landed]


def from_duckdb(
    project: MeltanoProject, _postgres: PostgresServer, plugin: str, stream: str
) -> Landed:
    config = project.loader_config(plugin)
    path = project.root / config["filepath"]
    schema = config["default_target_schema"]

    def decode(_name: str, value: Any) -> Any:
        # DuckDB hands JSON columns over as text, and the VARCHAR ones hold JSON text.
        return None if value is None else json.loads(value)

    return duckdb_rows(path, schema, stream), duckdb_types(path, schema, stream), decode


def from_postgres(
    project: MeltanoProject, postgres: PostgresServer, plugin: str, stream: str
) -> Landed:
    config = project.loader_config(plugin)
    database = config.get("database") or config["dbname"]  # meltanolabs, pipelinewise
    schema = config["default_target_schema"]
    found = postgres.rows(f'SELECT * FROM {schema}."{stream}"', database)
    types = declared_names(stream, postgres.column_types(database, schema, stream))
    return [declared_names(stream, row) for row in found], types, postgres_decoder(types)


def from_jsonl(
    project: MeltanoProject, _postgres: PostgresServer, plugin: str, stream: str
) -> Landed:
    folder = project.root / project.loader_config(plugin)["destination_path"]
    lines = (folder / f"{stream}.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in lines.splitlines()], None, lambda _name, value: value


def from_csv(
    project: MeltanoProject, _postgres: PostgresServer, plugin: str, stream: str
) -> Landed:
    config = project.loader_config(plugin)
    rows = csv_rows(project.root / config["output_path"], config["file_naming_scheme"], stream)

    def decode(name: str, value: str) -> Any:
        """An empty cell is null; outMsg and userInput are JSON text (json_as_text), the
        objects are what str() makes of them."""
        if value == "":
            return None
        return json.loads(value) if name in ANY_JSON_FIELDS[stream] else python_literal(value)

    return rows, None, decode


READERS: dict[str, Reader] = {
    "target-duckdb": from_duckdb,
    "target-postgres": from_postgres,
    "target-postgres-transferwise": from_postgres,
    "target-jsonl": from_jsonl,
    "target-csv": from_csv,
}


def check_types(row: LoaderRow, stream: str, types: dict[str, str] | None) -> None:
    """The column types the README's table gives for this loader."""
    if types is None:
        assert row.any_json_type is None, f"{row.plugin} has no column types"
        return
    for name in ANY_JSON_FIELDS[stream]:
        assert types[name] == row.any_json_type, (row.plugin, stream, name)
    assert types["_extra"] == row.object_type, (row.plugin, stream)
    if stream == "conversations":
        assert types["metadata"] == row.object_type, row.plugin


@pytest.fixture(scope="module")
def loaded(user_project: MeltanoProject) -> Callable[[str], None]:
    """`meltano run` into a loader, once a module."""
    done: set[str] = set()

    def load(loader: str) -> None:
        if loader not in done:
            user_project.meltano("run", ROWS[loader].extractor, loader)
            done.add(loader)

    return load


@pytest.mark.parametrize("loader", sorted(READERS))
def test_a_user_project_loads_every_record_once(
    user_project: MeltanoProject,
    user_simulator: Simulator,
    postgres_server: PostgresServer,
    loaded: Callable[[str], None],
    loader: str,
) -> None:
    row = ROWS[loader]
    loaded(loader)
    for stream in STREAMS:
        rows, types, decode = READERS[loader](user_project, postgres_server, loader, stream)
        check_types(row, stream, types)
        check_rows(served(user_simulator.dataset, stream), stream, rows, decode)


def test_outmsg_is_jsonb_in_postgres(
    postgres_server: PostgresServer, loaded: Callable[[str], None]
) -> None:
    """JSON functions work on it, for object and string values alike."""
    loaded("target-postgres")
    found = postgres_server.rows(
        f"""SELECT jsonb_typeof("outMsg") AS kind, count(*) AS n FROM {SCHEMA}.messages
        WHERE "outMsg" IS NOT NULL GROUP BY 1""",
        USER_DATABASE,
    )
    kinds = {item["kind"]: item["n"] for item in found}
    assert kinds.keys() >= {"object", "string"}, kinds


def test_the_project_was_made_from_the_hub_definition(user_project: MeltanoProject) -> None:
    """Not from this repository's meltano.yml: the extractor carries the Hub's variant and
    label, and the checkout as pip_url."""
    (extractor, *inherited) = user_project.definition["plugins"]["extractors"]
    assert extractor["variant"] == "tap-deepconverse"
    assert extractor["label"] == "DeepConverse"
    assert Path(extractor["pip_url"]) == Path(__file__).resolve().parent.parent
    assert all(plugin["inherit_from"] == extractor["name"] for plugin in inherited)
    for plugin in (extractor, *inherited):  # no stream map does the loaders' work
        assert "stream_maps" not in plugin.get("config", {})
