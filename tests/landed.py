"""What a loader should hold after a full export of a simulator's data, and the check of
what it does hold: every record once, with its times, JSON values and `_extra` intact."""

from __future__ import annotations

import ast
import csv
import datetime as dt
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb

from tap_deepconverse.simulator import Dataset
from tap_deepconverse.streams import STREAM_TYPES
from tap_deepconverse.timestamps import parse_timestamp

STREAMS = ("conversations", "messages")
TIME_FIELDS = {"conversations": ("startTime", "lastActionAt"), "messages": ("time",)}
OBJECT_FIELDS = {"conversations": ("metadata", "tags", "_extra"), "messages": ("_extra",)}
ANY_JSON_FIELDS = {"conversations": (), "messages": ("outMsg", "userInput")}
SCHEMAS = {str(vars(kind)["name"]): vars(kind)["schema"] for kind in STREAM_TYPES}


def declared(stream: str) -> set[str]:
    """The fields the stream's schema declares."""
    return set(SCHEMAS[stream]["properties"])


def served(dataset: Dataset, stream: str, time_format: str = "seconds") -> dict[str, Any]:
    """The records the simulator holds, as it serves them, by _id, with their bot."""
    records = {}
    for bot in dataset.bots:
        if stream == "conversations":
            found = dataset.conversations(bot, time_format=time_format)
        else:
            found = dataset.messages(bot, time_format=time_format)
        for record in found:
            records[record["_id"]] = {**record, "bot_name": bot}
    return records


def extra(stream: str, record: dict[str, Any]) -> dict[str, Any] | None:
    """What the tap puts in `_extra`: the fields its schema does not declare."""
    known = declared(stream)
    found = {key: value for key, value in record.items() if key not in known}
    return found or None


def as_time(value: object) -> dt.datetime:
    """A landed time as naive UTC (what a TIMESTAMP column holds)."""
    if isinstance(value, dt.datetime):
        moment = value if value.tzinfo is None else value.astimezone(dt.timezone.utc)
        return moment.replace(tzinfo=None)
    return parse_timestamp(value).replace(tzinfo=None)


def check_rows(
    expected: dict[str, dict[str, Any]],
    stream: str,
    rows: list[dict[str, Any]],
    decode: Callable[[str, Any], Any],
) -> None:
    """Every expected record landed once, and nothing else; `decode` turns a landed JSON
    field (by its name) back into the value the API sent."""
    by_id = {row["_id"]: row for row in rows}
    assert len(rows) == len(by_id), f"{stream}: an _id landed twice"
    assert set(by_id) == set(expected), f"{stream}: landed ids differ from the simulator's"
    for record_id, record in expected.items():
        row = by_id[record_id]
        assert row["bot_name"] == record["bot_name"]
        for name in TIME_FIELDS[stream]:
            want = parse_timestamp(record[name]).replace(tzinfo=None)
            assert as_time(row[name]) == want, (stream, record_id, name)
        for name in OBJECT_FIELDS[stream] + ANY_JSON_FIELDS[stream]:
            want = extra(stream, record) if name == "_extra" else record.get(name)
            assert decode(name, row.get(name)) == want, (stream, record_id, name)


def declared_names(stream: str, columns: dict[str, Any]) -> dict[str, Any]:
    """Columns keyed by the schema's field names, for loaders that fold names to lower case
    (target-duckdb, pipelinewise-target-postgres)."""
    names = {name.lower(): name for name in declared(stream)}
    return {names.get(column, column): value for column, value in columns.items()}


# PostgreSQL tables, read with json_agg (PostgresServer.rows)


def postgres_decoder(types: dict[str, str]) -> Callable[[str, Any], Any]:
    """json_agg nests json/jsonb (and array) columns as JSON values; a text column holds JSON
    text (json_as_text)."""

    def decode(name: str, value: Any) -> Any:
        if value is None or types[name] in ("json", "jsonb", "ARRAY"):
            return value
        return json.loads(value)

    return decode


# DuckDB files


def duckdb_rows(path: Path, schema: str, stream: str) -> list[dict[str, Any]]:
    """The rows of a stream's table, keyed by the schema's field names."""
    with duckdb.connect(str(path), read_only=True) as db:
        result = db.execute(f'SELECT * FROM "{schema}"."{stream}"')
        columns = [column[0] for column in result.description or []]
        rows = [dict(zip(columns, row, strict=True)) for row in result.fetchall()]
    return [declared_names(stream, row) for row in rows]


def duckdb_types(path: Path, schema: str, stream: str) -> dict[str, str]:
    """Column types of a stream's table, keyed by the schema's field names."""
    with duckdb.connect(str(path), read_only=True) as db:
        found = db.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = ? AND table_name = ?",
            [schema, stream],
        ).fetchall()
    return declared_names(stream, {str(name): str(kind) for name, kind in found})


# CSV files (meltanolabs-target-csv)


def csv_rows(folder: Path, naming_scheme: str, stream: str) -> list[dict[str, str]]:
    """The rows of every file `naming_scheme` gives a stream in `folder` ({timestamp} and
    the like match anything)."""
    pattern = re.sub(r"\{[a-z_]+\}", "*", naming_scheme.replace("{stream_name}", stream))
    files = sorted(folder.glob(pattern))
    assert files, f"no {pattern} in {folder}"
    rows: list[dict[str, str]] = []
    for path in files:
        with path.open(encoding="utf-8", newline="") as handle:
            rows.extend(csv.DictReader(handle))
    return rows


def python_literal(text: str) -> Any:
    """A value target-csv wrote as Python writes it (str() of a dict or list: single quotes,
    True and None, fractions as Decimal('0.53')), read back; not JSON."""
    return ast.literal_eval(re.sub(r"Decimal\('([-+0-9.eE]+)'\)", r"\1", text))
