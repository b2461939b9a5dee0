"""Faults, rate limits, signals, bad state and secrets, against the simulator over HTTP."""

from __future__ import annotations

import json
import signal

import pytest

from tap_deepconverse.simulator import Simulator, SimulatorOptions, generate_dataset
from tests.conftest import TapRunner, bookmark, config_for

STREAMS = ("conversations", "messages")
FAST = {"requests_per_second": 100, "page_size": 25, "window_hours": 12}
SECRET = "dc-live-7f3e9a1b5c2d4e6f8a0b1c2d3e4f5a6b"


def assert_no_retries(sim: Simulator) -> None:
    """Only the first window's request per bot and endpoint, none again."""
    sent = [(r.endpoint, *sorted(r.params.items())) for r in sim.requests]
    assert 1 <= len(sent) <= 2 * len(sim.dataset.bots)
    assert len(set(sent)) == len(sent)


def assert_complete(run, dataset) -> None:
    assert run.exit_code == 0, run.stderr[-3000:]
    for stream in STREAMS:
        ids = run.ids(stream)
        assert len(ids) == len(set(ids)), f"{stream}: duplicates"
        assert set(ids) == dataset.ids(stream), stream


@pytest.mark.parametrize(
    "kind", ["500", "502", "503", "504", "reset", "timeout", "badjson", "nodata"]
)
def test_each_fault_kind_is_ridden_out(tap: TapRunner, small_dataset, kind: str) -> None:
    options = SimulatorOptions(
        rate_limit=None, fault_rate=0.15, fault_kinds=(kind,), hang_seconds=1.5, seed=4
    )
    with Simulator(small_dataset, options) as sim:
        run = tap.run(config_for(sim, **FAST, request_timeout=0.5, max_retries=8))
        faults = [r for r in sim.requests if r.fault == kind]
    assert faults, "the simulator injected no fault"
    assert_complete(run, small_dataset)
    assert "Retrying" in run.stderr


def test_mixed_faults_at_the_real_rate_limit(tap: TapRunner, small_dataset) -> None:
    options = SimulatorOptions(fault_rate=0.15, hang_seconds=1.5, seed=9)
    with Simulator(small_dataset, options) as sim:
        run = tap.run(
            config_for(sim, page_size=50, window_hours=12, request_timeout=1, max_retries=8)
        )
        statuses = [r.status for r in sim.requests]
    assert_complete(run, small_dataset)
    assert 429 not in statuses


@pytest.mark.parametrize("retry_after", ["1", None])
def test_429_storms_are_waited_out(tap: TapRunner, small_dataset, retry_after) -> None:
    # The API allows 1 request per second while the tap is told it may send 6.
    options = SimulatorOptions(rate_limit=1, retry_after=retry_after)
    with Simulator(small_dataset, options) as sim:
        run = tap.run(
            config_for(sim, requests_per_second=6, page_size=200, window_hours=24, max_retries=10)
        )
        throttled = sum(r.status == 429 for r in sim.requests)
    assert throttled > 0
    assert_complete(run, small_dataset)


def test_the_limiter_keeps_each_endpoint_at_3_per_second(tap: TapRunner, small_dataset) -> None:
    with Simulator(small_dataset, SimulatorOptions(rate_limit=3)) as sim:
        bots = [small_dataset.bots[0]]
        run = tap.run(
            config_for(sim, bot_names=bots, page_size=5, window_hours=6, max_parallel_windows=6)
        )
        per_endpoint = {e: sim.max_requests_in_any_second(e) for e in STREAMS}
        statuses = [r.status for r in sim.requests]
        counts = {e: sum(r.endpoint == e for r in sim.requests) for e in STREAMS}
    assert run.exit_code == 0
    assert 429 not in statuses
    assert min(counts.values()) >= 12, counts
    assert per_endpoint == {"conversations": 3, "messages": 3}


def test_sigterm_stops_promptly_with_state_and_a_non_zero_exit(tap: TapRunner) -> None:
    dataset = generate_dataset(seed=8, days=6, conversations_per_day=30)
    with Simulator(dataset, SimulatorOptions(rate_limit=None, latency=0.2)) as sim:
        config = config_for(sim, **FAST, end_date="2025-01-07T00:00:00Z", max_parallel_windows=2)
        stopped = tap.run_and_signal(config, after_records=40, sig=signal.SIGTERM)
        assert stopped.exit_code == 128 + signal.SIGTERM
        assert stopped.seconds < 20
        assert "Received SIGTERM" in stopped.stderr
        assert stopped.messages[-1]["type"] == "STATE"
        state = stopped.final_state
        bot = dataset.bots[0]
        done_up_to = bookmark(state, "conversations", bot)
        assert done_up_to is not None
        assert done_up_to < "2025-01-07"
        # Every conversation timed before the bookmark is out.
        emitted = {r["_id"] for r in stopped.records.get("conversations", [])}
        before = {
            c["_id"]
            for c in dataset.conversations(bot)
            if c["startTime"] < _unix(done_up_to) - 3600 and c["lastActionAt"] < _unix(done_up_to)
        }
        assert before <= emitted

        resumed = tap.run(config, state)
    assert resumed.exit_code == 0
    for stream in STREAMS:
        assert set(stopped.ids(stream)) | set(resumed.ids(stream)) == dataset.ids(stream)


def test_sigint_also_exits_non_zero(tap: TapRunner, small_dataset) -> None:
    with Simulator(small_dataset, SimulatorOptions(rate_limit=None, latency=0.05)) as sim:
        stopped = tap.run_and_signal(config_for(sim, **FAST), after_records=20, sig=signal.SIGINT)
    assert stopped.exit_code == 128 + signal.SIGINT
    assert stopped.messages[-1]["type"] == "STATE"


def test_key_refused_stops_at_once(tap: TapRunner, simulator: Simulator) -> None:
    run = tap.run(config_for(simulator, api_key="wrong-key-000"))
    assert run.exit_code == 1
    assert "refused the API key" in run.stderr
    assert "'api_key'" in run.stderr
    assert "Traceback" not in run.stderr
    assert_no_retries(simulator)


def test_unknown_bot_stops_with_the_api_message(tap: TapRunner, simulator: Simulator) -> None:
    run = tap.run(config_for(simulator, bot_names=["no-such-bot"]))
    assert run.exit_code == 1
    assert "Bot 'no-such-bot' not found" in run.stderr
    assert "conversations for bot 'no-such-bot'" in run.stderr
    assert_no_retries(simulator)


def test_rejected_window_reports_endpoint_bot_and_api_text(tap: TapRunner, small_dataset) -> None:
    options = SimulatorOptions(rate_limit=None, max_window_seconds=6 * 3600)
    with Simulator(small_dataset, options) as sim:
        run = tap.run(config_for(sim, **{**FAST, "window_hours": 24}))
    assert run.exit_code == 1
    assert "HTTP 400" in run.stderr
    assert "must not exceed" in run.stderr
    assert "for bot 'r3-218210'" in run.stderr


def test_a_repeated_cursor_stops_the_run_instead_of_looping(tap: TapRunner, small_dataset) -> None:
    options = SimulatorOptions(rate_limit=None, repeat_cursor=True)
    with Simulator(small_dataset, options) as sim:
        run = tap.run(config_for(sim, **{**FAST, "page_size": 5}), timeout=60)
        requests = len(sim.requests)
    assert run.exit_code == 1
    assert "sent the same cursor twice" in run.stderr
    assert "Traceback" not in run.stderr
    assert requests < 60  # the pieces of the first windows paged at once, then it stopped


def test_odd_records_are_reported_and_skipped(tap: TapRunner, small_dataset) -> None:
    with Simulator(small_dataset, SimulatorOptions(rate_limit=None, odd_records=True)) as sim:
        run = tap.run(config_for(sim, **FAST))
    assert_complete(run, small_dataset)
    assert "skipped" in run.stderr
    assert "without an '_id'" in run.stderr


BAD_STATES = {
    "not json": "{bookmarks: nope",
    "not an object": "[1, 2]",
    "another tap": json.dumps({"bookmarks": {"issues": {"replication_key_value": "2024-01-01"}}}),
    "not per bot": json.dumps(
        {"bookmarks": {"messages": {"replication_key": "time", "replication_key_value": "x"}}}
    ),
    "wrong key": json.dumps(
        {
            "bookmarks": {
                "messages": {
                    "partitions": [
                        {
                            "context": {"bot_name": "r3-218210"},
                            "replication_key": "updated_at",
                            "replication_key_value": "2025-01-02T00:00:00Z",
                        }
                    ]
                }
            }
        }
    ),
    "bookmark not a time": json.dumps(
        {
            "bookmarks": {
                "messages": {
                    "partitions": [
                        {
                            "context": {"bot_name": "r3-218210"},
                            "replication_key": "time",
                            "replication_key_value": "tomorrow",
                        }
                    ]
                }
            }
        }
    ),
    "what conversations showed, corrupt": json.dumps(
        {
            "bookmarks": {
                "conversations": {
                    "partitions": [
                        {
                            "context": {"bot_name": "r3-218210"},
                            "replication_key": "lastActionAt",
                            "replication_key_value": "2025-01-02T00:00:00Z",
                            "conversations_seen": {"longest_open_seconds": "3 days"},
                        }
                    ]
                }
            }
        }
    ),
}


@pytest.mark.parametrize("state", list(BAD_STATES.values()), ids=list(BAD_STATES))
def test_bad_state_is_a_clear_error(tap: TapRunner, simulator: Simulator, state: str) -> None:
    run = tap.run(config_for(simulator), state)
    assert run.exit_code == 1
    assert "state" in run.stderr.lower()
    assert "Traceback" not in run.stderr
    assert simulator.requests == []
    assert not any(m["type"] == "RECORD" for m in run.messages)


def test_the_key_never_appears_in_any_output(tap: TapRunner, small_dataset) -> None:
    outputs: list[str] = []

    def keep(run) -> None:
        outputs.extend([run.stdout, run.stderr])

    options = SimulatorOptions(api_key=SECRET, rate_limit=1, fault_rate=0.3, hang_seconds=1.2)
    with Simulator(small_dataset, options) as sim:
        base = config_for(sim, api_key=SECRET, request_timeout=0.5, max_retries=3, page_size=200)
        keep(tap.run(base, log_level="DEBUG"))  # faults, 429s, retries, success
        sim.options.fault_rate = 0
        keep(tap.run({**base, "bot_names": ["missing"]}, log_level="DEBUG"))  # 404
        sim.options.api_key = "another-key"
        keep(tap.run(base, log_level="DEBUG"))  # 401
        sim.options.fail_after = 0
        sim.options.api_key = SECRET
        keep(tap.run(base, log_level="DEBUG"))  # outage
        keep(tap.run({**base, "page_size": 5000}, log_level="DEBUG"))  # bad setting
        keep(tap.run(base, "{broken", log_level="DEBUG"))  # bad state
        keep(tap.run({**base, "api_url": "http://example.com"}, log_level="DEBUG"))
        keep(tap.run(base, extra_args=("--about", "--format=json")))
        keep(tap.run(base, extra_args=("--discover",), log_level="DEBUG"))
    assert len(outputs) == 18
    assert any("DEBUG" in text for text in outputs)
    for text in outputs:
        assert SECRET not in text
        assert SECRET[:16] not in text


def _unix(iso: str) -> int:
    from tap_deepconverse.timestamps import parse_timestamp, to_unix_seconds

    return to_unix_seconds(parse_timestamp(iso))
