"""State: exact request parameters from seeded state, incremental runs, late data, resume."""

from __future__ import annotations

from typing import Any

from tap_deepconverse.simulator import Simulator, SimulatorOptions, generate_dataset
from tests.conftest import DAY, START, TapRunner, assert_windows_cover, bookmark, config_for

FAST = {"requests_per_second": 100, "page_size": 40}
HOUR = 3600


def seeded_state(bot_bookmarks: dict[str, str]) -> dict[str, Any]:
    return {
        "bookmarks": {
            stream: {
                "partitions": [
                    {
                        "context": {"bot_name": bot},
                        "replication_key": key,
                        "replication_key_value": value,
                    }
                    for bot, value in bot_bookmarks.items()
                ]
            }
            for stream, key in (("conversations", "lastActionAt"), ("messages", "time"))
        }
    }


def requests_of(sim: Simulator, endpoint: str, bot: str) -> list[dict[str, str]]:
    return [
        r.params for r in sim.requests if r.endpoint == endpoint and r.params["bot_name"] == bot
    ]


def test_seeded_state_gives_the_exact_request_parameters(
    tap: TapRunner, fast_simulator: Simulator
) -> None:
    bot_a, bot_b = fast_simulator.dataset.bots
    state = seeded_state({bot_a: "2025-01-02T12:00:00Z"})
    config = config_for(fast_simulator, **FAST, window_hours=12, lookback_minutes=30)
    run = tap.run(config, state)
    assert run.exit_code == 0, run.stderr[-2000:]

    resume = START + DAY + 12 * HOUR - 30 * 60  # bookmark minus the lookback
    # Windows are fetched several at a time, so they reach the server in any order.
    first_pages = sorted(
        (p for p in requests_of(fast_simulator, "messages", bot_a) if "cursor" not in p),
        key=lambda p: int(p["start_time"]),
    )
    assert first_pages[0] == {
        "bot_name": bot_a,
        "start_time": str(resume - 1),
        "end_time": str(resume + 12 * HOUR),
        "per_page": "40",
    }
    # Later windows are sized to the data (a dense one is asked again as pieces); together
    # they cover the rest of the range without a gap.
    assert_windows_cover(first_pages, resume, START + 3 * DAY)
    # The bot without a bookmark starts at start_date.
    starts_b = [int(p["start_time"]) for p in requests_of(fast_simulator, "messages", bot_b)]
    assert min(starts_b) == START - 1
    # Records come only from the re-read span onwards.
    times = [r["time"] for r in run.records["messages"] if r["bot_name"] == bot_a]
    assert min(times) >= "2025-01-02T11:29:59"


def test_cursor_requests_repeat_the_window_parameters(
    tap: TapRunner, fast_simulator: Simulator
) -> None:
    run = tap.run(config_for(fast_simulator, **{**FAST, "page_size": 5}))
    assert run.exit_code == 0
    by_window: dict[tuple[str, ...], list[dict[str, str]]] = {}
    for request in fast_simulator.requests:
        p = request.params
        key = (request.endpoint, p["bot_name"], p["start_time"], p["end_time"])
        by_window.setdefault(key, []).append(p)
    assert any(len(pages) > 1 for pages in by_window.values())
    for pages in by_window.values():
        assert {p["per_page"] for p in pages} == {"5"}
        cursors = [p.get("cursor") for p in pages]
        assert cursors[0] is None and None not in cursors[1:]
        assert len(set(cursors)) == len(cursors)


def test_incremental_run_fetches_only_new_windows_plus_lookback(
    tap: TapRunner, fast_simulator: Simulator
) -> None:
    # Only the lookback: re-reading changed conversations has its own tests.
    config = config_for(
        fast_simulator, **FAST, end_date="2025-01-03T00:00:00Z", conversation_reread_days=0
    )
    first = tap.run(config)
    assert first.exit_code == 0
    full_requests = len(fast_simulator.requests)
    fast_simulator.reset_log()

    second = tap.run({**config, "end_date": "2025-01-04T00:00:00Z"}, first.final_state)
    assert second.exit_code == 0, second.stderr[-2000:]
    starts = {int(r.params["start_time"]) for r in fast_simulator.requests}
    assert min(starts) == START + 2 * DAY - HOUR - 1
    assert len(fast_simulator.requests) < full_requests
    dataset = fast_simulator.dataset
    for stream, everything in (
        ("conversations", dataset.ids("conversations")),
        ("messages", dataset.ids("messages")),
    ):
        assert set(first.ids(stream)) | set(second.ids(stream)) == everything

    # A third run with nothing new re-reads only the lookback.
    fast_simulator.reset_log()
    third = tap.run({**config, "end_date": "2025-01-04T00:00:00Z"}, second.final_state)
    assert third.exit_code == 0
    assert {r.params["start_time"] for r in fast_simulator.requests} == {
        str(START + 3 * DAY - HOUR - 1)
    }


def test_late_records_within_the_lookback_are_picked_up(tap: TapRunner) -> None:
    dataset = generate_dataset(seed=11, days=2, conversations_per_day=20)
    with Simulator(dataset, SimulatorOptions(rate_limit=None)) as sim:
        config = config_for(sim, **FAST, end_date="2025-01-02T12:00:00Z", lookback_minutes=60)
        first = tap.run(config)
        assert first.exit_code == 0
        bot = dataset.bots[0]
        late_time = START + DAY + 12 * HOUR - 40 * 60  # 40 minutes before the bookmark
        conversation, messages = dataset.add_conversation(bot, late_time, n_messages=2)
        assert conversation["_id"] not in first.ids("conversations")

        second = tap.run({**config, "end_date": "2025-01-03T00:00:00Z"}, first.final_state)
    assert second.exit_code == 0
    assert conversation["_id"] in second.ids("conversations")
    assert {m["_id"] for m in messages} <= set(second.ids("messages"))


def test_interrupted_backfill_resumes_from_the_last_finished_window(tap: TapRunner) -> None:
    dataset = generate_dataset(seed=5, days=6, conversations_per_day=20)
    # The API fails for good after half the requests of the export (28): windows fetched in
    # parallel may all be unfinished after fewer, and the resume then rightly starts over.
    options = SimulatorOptions(rate_limit=None, fail_after=14)
    with Simulator(dataset, options) as sim:
        config = config_for(
            sim, **FAST, end_date="2025-01-07T00:00:00Z", window_hours=12, max_retries=2
        )
        broken = tap.run(config)
        assert broken.exit_code != 0
        assert "Gave up on" in broken.stderr
        assert broken.states, "no state was emitted before the outage"
        assert "Traceback" not in broken.stderr

        sim.options.fail_after = None
        sim.reset_log()
        resumed = tap.run(config, broken.final_state)
        assert resumed.exit_code == 0, resumed.stderr[-2000:]

        sim.reset_log()
        scratch = tap.run(config)
        assert scratch.exit_code == 0

    # The resumed run exported less than a run from scratch: it went on from the state.
    resumed_records = sum(len(resumed.ids(s)) for s in ("conversations", "messages"))
    scratch_records = sum(len(scratch.ids(s)) for s in ("conversations", "messages"))
    assert resumed_records < scratch_records
    for stream in ("conversations", "messages"):
        assert set(broken.ids(stream)) | set(resumed.ids(stream)) == dataset.ids(stream)
    # The resumed run did not go back to start_date for the bot that had progressed.
    bot = dataset.bots[0]
    assert bookmark(broken.final_state, "conversations", bot) is not None
