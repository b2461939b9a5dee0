"""The setting json_as_text: `outMsg` and `userInput` typed as string and sent as compact JSON
text, in discovery, in the SCHEMA messages and in the records; every other field as without
it. The tap runs against the simulator over HTTP, with the setting on and off."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tap_deepconverse.simulator import Dataset, Simulator, SimulatorOptions, generate_dataset
from tests.conftest import TapRun, TapRunner, config_for

TEXT_FIELDS = ("outMsg", "userInput")
ANY_JSON = ["object", "array", "string", "number", "boolean", "null"]
# Correctness runs go fast: the limiter has its own tests.
FAST = {"requests_per_second": 100, "page_size": 50}


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return generate_dataset(seed=23, days=2, conversations_per_day=40, extra_field_rate=0.3)


@pytest.fixture(scope="module")
def simulator(dataset: Dataset) -> Iterator[Simulator]:
    with Simulator(dataset, SimulatorOptions(rate_limit=None)) as sim:
        yield sim


@pytest.fixture(scope="module")
def runs(simulator: Simulator, tmp_path_factory: pytest.TempPathFactory) -> dict[bool, TapRun]:
    runner = TapRunner(tmp_path_factory.mktemp("json-as-text"))
    found = {}
    for setting in (True, False):
        config = config_for(
            simulator, end_date="2025-01-03T00:00:00Z", **FAST, json_as_text=setting
        )
        run = runner.run(config)
        assert run.exit_code == 0, run.stderr[-3000:]
        found[setting] = run
    return found


def schemas(run: TapRun) -> dict[str, dict[str, Any]]:
    return {m["stream"]: m["schema"] for m in run.messages if m["type"] == "SCHEMA"}


def served_messages(dataset: Dataset) -> dict[str, dict[str, Any]]:
    return {record["_id"]: record for record in dataset.messages()}


def compact(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def test_schema_messages_type_the_fields_as_text_only_with_the_setting(
    runs: dict[bool, TapRun],
) -> None:
    on, off = schemas(runs[True]), schemas(runs[False])
    for name in TEXT_FIELDS:
        assert on["messages"]["properties"][name]["type"] == ["string", "null"]
        assert off["messages"]["properties"][name]["type"] == ANY_JSON
    # Everything else is the same schema.
    for stream in ("conversations", "messages"):
        others_on = {k: v for k, v in on[stream]["properties"].items() if k not in TEXT_FIELDS}
        others_off = {k: v for k, v in off[stream]["properties"].items() if k not in TEXT_FIELDS}
        assert others_on == others_off, stream
    assert on["conversations"]["properties"]["metadata"]["type"] == ["object", "null"]


def test_records_carry_json_text_that_reads_back_as_sent(
    runs: dict[bool, TapRun], dataset: Dataset
) -> None:
    served = served_messages(dataset)
    records = runs[True].records["messages"]
    assert len(records) == len(served)
    kinds = set()
    for record in records:
        source = served[record["_id"]]
        for name in TEXT_FIELDS:
            if name not in source:
                assert name not in record
            elif source[name] is None:
                assert record[name] is None  # null stays null, not the text "null"
            else:
                assert isinstance(record[name], str), (record["_id"], name)
                assert json.loads(record[name]) == source[name], (record["_id"], name)
                assert record[name] == compact(source[name]), (record["_id"], name)
                kinds.add(type(source[name]).__name__)
    # The data held strings and objects in these fields: both became text.
    assert {"str", "dict"} <= kinds


def test_without_the_setting_the_values_are_as_sent(
    runs: dict[bool, TapRun], dataset: Dataset
) -> None:
    served = served_messages(dataset)
    for record in runs[False].records["messages"]:
        for name in TEXT_FIELDS:
            assert record.get(name) == served[record["_id"]].get(name)


def test_other_fields_are_the_same_either_way(runs: dict[bool, TapRun]) -> None:
    """Objects such as metadata and _extra stay objects; nothing else changes."""
    for stream in ("conversations", "messages"):
        on = {r["_id"]: r for r in runs[True].records[stream]}
        off = {r["_id"]: r for r in runs[False].records[stream]}
        assert on.keys() == off.keys()
        drop = set(TEXT_FIELDS)
        for record_id, record in on.items():
            assert {k: v for k, v in record.items() if k not in drop} == {
                k: v for k, v in off[record_id].items() if k not in drop
            }
        assert any(isinstance(r.get("_extra"), dict) for r in on.values()), stream
    assert all(isinstance(r["metadata"], dict) for r in runs[True].records["conversations"])


def discovered(tap: TapRunner, config: dict[str, Any]) -> dict[str, Any]:
    done = tap.run(config, extra_args=("--discover",))
    assert done.exit_code == 0, done.stderr[-3000:]
    catalog: dict[str, Any] = json.loads(done.stdout)
    return catalog


def properties(catalog: dict[str, Any], stream: str) -> dict[str, Any]:
    (entry,) = [s for s in catalog["streams"] if s["tap_stream_id"] == stream]
    found: dict[str, Any] = entry["schema"]["properties"]
    return found


@pytest.mark.parametrize("setting", [True, False])
def test_discovery_follows_the_setting(tap: TapRunner, simulator: Simulator, setting: bool) -> None:
    catalog = discovered(tap, config_for(simulator, json_as_text=setting))
    for name in TEXT_FIELDS:
        kind = properties(catalog, "messages")[name]["type"]
        assert kind == (["string", "null"] if setting else ANY_JSON)


def test_a_discovered_catalog_keeps_the_text_typing(
    tap: TapRunner, simulator: Simulator, dataset: Dataset
) -> None:
    """As under Meltano: discovery with the setting on, then a run with that catalog."""
    config = config_for(simulator, end_date="2025-01-02T00:00:00Z", **FAST, json_as_text=True)
    catalog = discovered(tap, config)
    for entry in catalog["streams"]:  # select everything, as `meltano select` would
        for item in entry["metadata"]:
            if item["breadcrumb"] == []:
                item["metadata"]["selected"] = True
    path = tap.workdir / "catalog.json"
    path.write_text(json.dumps(catalog))
    run = tap.run(config, extra_args=("--catalog", str(path)))
    assert run.exit_code == 0, run.stderr[-3000:]
    for name in TEXT_FIELDS:
        assert schemas(run)["messages"]["properties"][name]["type"] == ["string", "null"]
    texts = [r["outMsg"] for r in run.records["messages"] if r.get("outMsg") is not None]
    assert texts
    assert all(isinstance(text, str) for text in texts)


def test_about_lists_the_setting(tap: TapRunner) -> None:
    done = tap.run({}, extra_args=("--about", "--format=json"))
    settings = json.loads(done.stdout)["settings"]["properties"]
    assert settings["json_as_text"]["type"] == ["boolean", "null"]
    assert settings["json_as_text"]["default"] is False
