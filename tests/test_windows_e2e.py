"""End to end: windows sized to the data, complete whatever the cursor's key, and the
API's longest window learnt from its answers."""

from __future__ import annotations

import re
import subprocess

import pytest

from tap_deepconverse.simulator import Simulator, SimulatorOptions, generate_dataset
from tap_deepconverse.windows import MAX_UNORDERED_CHAIN
from tests.conftest import DAY, START, TapRunner, bookmark, config_for
from tests.test_earned_windows import pages_in_a_row
from tests.test_export import assert_complete_and_exact

FAST = {"requests_per_second": 200, "page_size": 40, "window_hours": 6}
STREAMS = ("conversations", "messages")


def spans(sim: Simulator, endpoint: str, status: int = 200) -> list[int]:
    """Lengths of the windows asked for (first pages only), in seconds."""
    return [
        int(r.params["end_time"]) - int(r.params["start_time"])
        for r in sim.requests
        if r.endpoint == endpoint and r.status == status and "cursor" not in r.params
    ]


def bots_asked(sim: Simulator, endpoint: str) -> list[str]:
    """The bot of each first page counted by :func:`spans`."""
    return [
        r.params["bot_name"]
        for r in sim.requests
        if r.endpoint == endpoint and r.status == 200 and "cursor" not in r.params
    ]


@pytest.mark.parametrize("cursor_key", ["next_cursor", "pagination.cursor", "none"])
def test_complete_whatever_the_cursor_key(
    tap: TapRunner, fast_simulator: Simulator, cursor_key: str
) -> None:
    fast_simulator.options.cursor_key = cursor_key
    fast_simulator.options.bounds = "[]"
    run = tap.run(config_for(fast_simulator, **FAST))
    assert_complete_and_exact(run, fast_simulator.dataset)
    # One warning for the run, naming the answer's top-level keys.
    warnings = [line for line in run.stderr.splitlines() if "no cursor to follow" in line]
    assert len(warnings) == 1, warnings
    top_level = cursor_key.split(".", maxsplit=1)[0]
    expected_keys = "data" if cursor_key == "none" else f"data, {top_level}"
    assert f"its top-level keys are: {expected_keys}." in warnings[0]
    # Windows learn to stay under a page, so splits do not go on all run long: the
    # requests stay within a few times the records' pages.
    requests = sum(1 for r in fast_simulator.requests if r.status == 200)
    assert requests < 4 * len(fast_simulator.dataset) / 40


def test_the_natural_cursor_is_followed_without_warning(
    tap: TapRunner, fast_simulator: Simulator
) -> None:
    run = tap.run(config_for(fast_simulator, **FAST))
    assert_complete_and_exact(run, fast_simulator.dataset)
    assert "no cursor to follow" not in run.stderr
    assert any("cursor" in r.params for r in fast_simulator.requests)


def test_a_full_second_without_a_cursor_stops_the_run(
    tap: TapRunner, fast_simulator: Simulator
) -> None:
    fast_simulator.options.cursor_key = "none"
    run = tap.run(config_for(fast_simulator, **{**FAST, "page_size": 1}))
    assert run.exit_code == 1
    assert "One second cannot be split further" in run.stderr
    assert "Traceback" not in run.stderr
    # No window was complete, so no STATE claims one.
    bots = fast_simulator.dataset.bots
    assert all(
        bookmark(state, stream, bot) is None
        for state in run.states
        for stream in STREAMS
        for bot in bots
    )


def test_an_empty_page_with_a_cursor_elsewhere_stops_the_run(
    tap: TapRunner, fast_simulator: Simulator
) -> None:
    # Every query's first page is empty and its cursor is where the tap does not look: it
    # cannot tell an empty window from one with more to come, so it must not go on.
    fast_simulator.options.cursor_key = "next_cursor"
    fast_simulator.options.empty_pages = True
    run = tap.run(config_for(fast_simulator, **FAST))
    assert run.exit_code == 1
    assert "may carry the cursor elsewhere" in run.stderr
    assert "next_cursor" in run.stderr
    assert not run.records


def test_quiet_bots_get_long_windows(tap: TapRunner) -> None:
    # About two conversations a day across two bots, over 90 days.
    dataset = generate_dataset(seed=5, days=90, conversations_per_day=2)
    with Simulator(dataset, SimulatorOptions(rate_limit=None)) as sim:
        config = config_for(sim, requests_per_second=200, end_date="2025-04-01T00:00:00Z")
        run = tap.run(config)
        assert_complete_and_exact(run, dataset)
        for endpoint in STREAMS:
            lengths = spans(sim, endpoint)
            # Per bot: one day, then the other 89 days in one window, as they hold less than
            # a window aims at: 2 windows for 90 days, where 24-hour windows took 90 and
            # month-long ones 4; and a check or two of the part after a long window's last
            # record while no answer has shown so long a window complete.
            for bot in dataset.bots:
                asked = [
                    n for n, b in zip(lengths, bots_asked(sim, endpoint), strict=True) if b == bot
                ]
                assert asked[0] == DAY + 1, asked
                assert asked[1] == 89 * DAY + 1, asked  # past max_window_days (31)
                assert 2 <= len(asked) <= 4, asked
            assert max(lengths) == 89 * DAY + 1
            assert len([r for r in sim.requests if r.endpoint == endpoint]) == len(lengths)


def test_dense_bots_get_short_windows(tap: TapRunner) -> None:
    dataset = generate_dataset(seed=7, days=8, conversations_per_day=30)
    with Simulator(dataset, SimulatorOptions(rate_limit=None)) as sim:
        config = config_for(
            sim,
            requests_per_second=200,
            page_size=10,
            max_parallel_windows=2,
            end_date="2025-01-09T00:00:00Z",
        )
        run = tap.run(config)
        messages = [r for r in sim.requests if r.endpoint == "messages"]
        lengths = spans(sim, "messages")
        longest_chain = pages_in_a_row(sim, "messages")
    assert_complete_and_exact(run, dataset)
    # After the first days (24 hours each), windows sized to about 4 pages: some 8 hours.
    assert lengths[0] == DAY + 1
    assert min(lengths) < DAY / 2, lengths
    # Requests stay close to the floor: the records in pages of 10. Records come in no time
    # order, so a window that turns out three times denser than its neighbours is followed
    # for up to 12 pages, then fetched again in pieces: which windows do depends on the
    # order in which the two in flight report (1.2 to 1.45 times the floor in many runs).
    floor = sum(-(-dataset.count("messages", bot) // 10) for bot in dataset.bots)
    assert len(messages) <= 1.6 * floor, (len(messages), floor)
    assert longest_chain <= MAX_UNORDERED_CHAIN


def test_a_daily_run_costs_one_request_per_bot_and_stream(
    tap: TapRunner, fast_simulator: Simulator
) -> None:
    # Re-reading changed conversations adds its own cost: see test_conversation_changes_e2e.
    # A day of messages is about 4 pages at FAST's 40, where a window may count as dense and
    # be fetched as pieces (a few requests more, by design); at 100 it is 2 pages.
    daily_config = {**FAST, "page_size": 100, "window_hours": 24, "conversation_reread_days": 0}
    first = tap.run(config_for(fast_simulator, **daily_config, end_date="2025-01-03T00:00:00Z"))
    assert first.exit_code == 0
    fast_simulator.reset_log()
    daily = tap.run(config_for(fast_simulator, **daily_config), first.final_state)
    assert daily.exit_code == 0
    requests = [r for r in fast_simulator.requests if r.endpoint in STREAMS]
    # One day plus the hour of lookback is one window: one request per bot and endpoint
    # (plus the pages a day of this data needs).
    first_pages = [r for r in requests if "cursor" not in r.params]
    assert len(first_pages) == 2 * len(fast_simulator.dataset.bots)
    assert {int(r.params["start_time"]) for r in first_pages} == {START + 2 * DAY - 3600 - 1}


def test_a_window_the_api_finds_too_long_is_halved_and_the_limit_kept(tap: TapRunner) -> None:
    dataset = generate_dataset(seed=5, days=90, conversations_per_day=2)
    limit = 5 * DAY
    options = SimulatorOptions(rate_limit=None, max_window_seconds=limit)
    with Simulator(dataset, options) as sim:
        config = config_for(sim, requests_per_second=200, end_date="2025-04-01T00:00:00Z")
        run = tap.run(config)
        assert_complete_and_exact(run, dataset)
        for endpoint in STREAMS:
            assert max(spans(sim, endpoint)) <= limit
            rejected = spans(sim, endpoint, status=400)
            assert rejected, "the tap never tried a longer window"
            # Learnt once per run: a few rejections a halving while windows in flight learn
            # (a quiet bot's rest of 89 days takes five to be under 5 days), not one per
            # window.
            assert len(rejected) <= 20, rejected
    learnt = [line for line in run.stderr.splitlines() if "accepts windows of" in line]
    # At most once per endpoint. An endpoint whose windows after a refusal are all shorter
    # than the limit it learnt (sized to its records) never asks a window at that limit,
    # and has nothing to report beyond its refusals.
    streams = run.streams_that_logged("accepts windows of")
    assert 1 <= len(learnt) <= 2, learnt
    assert len(set(streams)) == len(streams) == len(learnt), learnt
    # A month (the second window) was refused, and halved until accepted: a length between
    # half the API's limit and the limit (3.88 days from 31, 3.75 from 30).
    for line in learnt:
        found = re.search(r"accepts windows of ([0-9.]+) days", line)
        assert found is not None, line
        assert 2.5 <= float(found.group(1)) <= 5, line


def test_a_rejected_window_of_window_hours_stays_fatal(
    tap: TapRunner, fast_simulator: Simulator
) -> None:
    fast_simulator.options.max_window_seconds = 3600
    run = tap.run(config_for(fast_simulator, **FAST))
    assert run.exit_code == 1
    assert "rejected the request" in run.stderr
    assert "HTTP 400" in run.stderr
    assert "Traceback" not in run.stderr


def test_a_target_that_stops_reading_gets_one_clear_line(
    tap: TapRunner, fast_simulator: Simulator
) -> None:
    config_args = tap._files(config_for(fast_simulator, **{**FAST, "page_size": 5}), None)
    process = subprocess.Popen(
        tap.command(*config_args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=tap.env(),
    )
    assert process.stdout is not None
    process.stdout.readline()
    process.stdout.close()  # the target goes away
    _, stderr_bytes = process.communicate(timeout=60)
    stderr = stderr_bytes.decode()
    assert process.returncode != 0
    lines = [line for line in stderr.splitlines() if "broken pipe" in line]
    assert len(lines) == 1, stderr[-3000:]
    assert "The target closed its input" in lines[0]
    assert "Traceback" not in stderr
    assert "unhandled error" not in stderr
