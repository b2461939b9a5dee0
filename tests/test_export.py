"""End to end: the tap against the simulator over real HTTP exports every record, once."""

from __future__ import annotations

import re

import pytest

from tap_deepconverse.simulator import Dataset, Simulator, SimulatorOptions
from tap_deepconverse.timestamps import normalize_timestamp
from tests.conftest import START_DATE, TapRunner, bookmark, config_for

TIME_FIELDS = {"conversations": ("startTime", "lastActionAt"), "messages": ("time",)}
STREAMS = ("conversations", "messages")

# Correctness runs go fast: the limiter has its own tests.
FAST = {"requests_per_second": 100, "page_size": 40, "window_hours": 6}


def expected_records(dataset: Dataset, stream: str) -> dict[str, dict]:
    records = dataset.conversations() if stream == "conversations" else dataset.messages()
    return {r["_id"]: r for r in records}


def assert_complete_and_exact(run, dataset: Dataset) -> None:
    assert run.exit_code == 0, run.stderr[-3000:]
    for stream in STREAMS:
        ids = run.ids(stream)
        assert len(ids) == len(set(ids)), f"{stream}: a record was emitted twice"
        expected = expected_records(dataset, stream)
        assert set(ids) == set(expected), stream
        for record in run.records[stream]:
            source = expected[record["_id"]]
            assert record["bot_name"] in dataset.bots
            for key, value in source.items():
                if key in TIME_FIELDS[stream]:
                    # The dataset lists whole seconds; other formats add the milliseconds.
                    assert record[key][:19] == normalize_timestamp(value)[:19], (stream, key)
                    assert record[key].endswith("Z")
                else:
                    assert record[key] == value, (stream, key)


@pytest.mark.parametrize("bounds", ["[)", "(]", "[]", "()"])
def test_full_export_under_every_bounds_reading(
    tap: TapRunner, fast_simulator: Simulator, bounds: str
) -> None:
    fast_simulator.options.bounds = bounds
    run = tap.run(config_for(fast_simulator, **FAST))
    assert_complete_and_exact(run, fast_simulator.dataset)


@pytest.mark.parametrize("order", ["asc", "desc", "random"])
def test_full_export_in_any_order(tap: TapRunner, fast_simulator: Simulator, order: str) -> None:
    fast_simulator.options.order = order
    fast_simulator.options.bounds = "[]"
    run = tap.run(config_for(fast_simulator, **FAST))
    assert_complete_and_exact(run, fast_simulator.dataset)


@pytest.mark.parametrize("time_format", ["seconds", "millis", "iso", "float"])
def test_full_export_in_every_time_format(
    tap: TapRunner, fast_simulator: Simulator, time_format: str
) -> None:
    fast_simulator.options.time_format = time_format
    fast_simulator.options.bounds = "()"
    run = tap.run(config_for(fast_simulator, **FAST))
    assert_complete_and_exact(run, fast_simulator.dataset)
    sample = run.records["messages"][0]["time"]
    assert sample.endswith("Z") and len(sample) == len("2025-01-01T00:00:00.000000Z")


def test_conversations_filtered_on_last_action_and_empty_pages(
    tap: TapRunner, fast_simulator: Simulator
) -> None:
    fast_simulator.options.conversation_filter = "lastActionAt"
    fast_simulator.options.empty_pages = True
    run = tap.run(config_for(fast_simulator, **FAST))
    assert_complete_and_exact(run, fast_simulator.dataset)
    # Every first page is empty: what the API serves a page shows in the pages after it.
    served = re.search(r"largest page served: (\d+)", run.stderr)
    assert served is not None
    assert int(served.group(1)) > 0


def test_final_state_has_a_bookmark_per_bot_and_stream(
    tap: TapRunner, fast_simulator: Simulator
) -> None:
    run = tap.run(config_for(fast_simulator, **FAST))
    assert run.exit_code == 0
    for stream in STREAMS:
        partitions = run.final_state["bookmarks"][stream]["partitions"]
        assert {p["context"]["bot_name"] for p in partitions} == set(fast_simulator.dataset.bots)
        for partition in partitions:
            # The bookmark, and what the run learnt for the next one: the longest window the
            # API has shown complete, how many records a day the bot's windows held, and
            # (conversations) how long conversations stay open.
            learnt = {"conversations_seen"} if stream == "conversations" else set()
            keys = {"context", "replication_key", "replication_key_value"}
            keys |= {"complete_window_seconds", "records_per_day"}
            assert set(partition) == keys | learnt
            assert partition["complete_window_seconds"] >= 24 * 3600
            # Whole numbers only: SDK targets read the state with Decimal and fail to write
            # a Decimal back out.
            assert isinstance(partition["records_per_day"], int)
            assert isinstance(partition["complete_window_seconds"], int)
            assert partition["replication_key_value"] == "2025-01-04T00:00:00.000000Z"
            assert "progress_markers" not in partition


def test_state_is_emitted_after_every_window_in_order(
    tap: TapRunner, fast_simulator: Simulator
) -> None:
    run = tap.run(config_for(fast_simulator, **FAST))
    bot = fast_simulator.dataset.bots[0]
    seen: list[str] = []
    records_before: dict[str, int] = {}
    count = 0
    for message in run.messages:
        if message["type"] == "RECORD" and message["stream"] == "messages":
            count += 1
        if message["type"] == "STATE":
            value = bookmark(message["value"], "messages", bot)
            if value and (not seen or seen[-1] != value):
                seen.append(value)
                records_before[value] = count
    # One bookmark per window, in order, each the end of a window the tap asked for.
    assert len(seen) >= 2
    assert seen == sorted(seen)
    assert seen[-1] == "2025-01-04T00:00:00.000000Z"
    ends = {
        normalize_timestamp(int(r.params["end_time"]))
        for r in fast_simulator.requests
        if r.endpoint == "messages" and r.params["bot_name"] == bot
    }
    assert set(seen) <= ends
    # Every message record timed before a bookmark was written before that bookmark.
    positions = {}
    count = 0
    for message in run.messages:
        if message["type"] == "RECORD" and message["stream"] == "messages":
            count += 1
            if message["record"]["bot_name"] == bot:
                positions[message["record"]["_id"]] = (message["record"]["time"], count)
    for value, before in records_before.items():
        late = [i for i, (t, at) in positions.items() if t < value and at > before]
        assert not late, f"records timed before {value} came after its STATE"


def test_unknown_fields_reach_the_target_in_extra(tap: TapRunner, small_dataset: Dataset) -> None:
    from tap_deepconverse.simulator import generate_dataset

    dataset = generate_dataset(seed=3, days=1, conversations_per_day=40, extra_field_rate=0.3)
    with Simulator(dataset, SimulatorOptions(rate_limit=None)) as sim:
        run = tap.run(config_for(sim, **FAST, end_date="2025-01-02T00:00:00Z"))
    assert run.exit_code == 0, run.stderr[-2000:]
    for stream in STREAMS:
        expected = expected_records(dataset, stream)
        schema = next(
            m["schema"] for m in run.messages if m["type"] == "SCHEMA" and m["stream"] == stream
        )
        declared = set(schema["properties"])
        carried = 0
        for record in run.records[stream]:
            unknown = {k: v for k, v in expected[record["_id"]].items() if k not in declared}
            assert record.get("_extra", {}) == unknown
            carried += bool(unknown)
        assert carried > 0, f"no {stream} record had an undocumented field"


def test_messages_of_chosen_conversations(tap: TapRunner, fast_simulator: Simulator) -> None:
    dataset = fast_simulator.dataset
    chosen = [c["_id"] for c in dataset.conversations()[:3]]
    run = tap.run(config_for(fast_simulator, **FAST, conversation_ids=chosen))
    assert run.exit_code == 0, run.stderr[-2000:]
    expected = {m["_id"] for m in dataset.messages() if m["conversationId"] in chosen}
    assert set(run.ids("messages")) == expected
    sent = {
        r.params.get("conversation_id") for r in fast_simulator.requests if r.endpoint == "messages"
    }
    assert sent == set(chosen)


def test_start_date_is_respected(tap: TapRunner, fast_simulator: Simulator) -> None:
    run = tap.run(config_for(fast_simulator, **FAST, start_date="2025-01-02T00:00:00Z"))
    assert run.exit_code == 0
    times = [r["time"] for r in run.records["messages"]]
    # One second of overlap before start_date is fetched in case the API excludes start_time.
    assert min(times) >= "2025-01-01T23:59:59"
    assert min(times) > START_DATE
