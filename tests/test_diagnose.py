"""`tap-deepconverse --config CONFIG --diagnose` against the simulator under each of its
switches: the JSON on stdout, the table on stderr, the requests made, and the errors."""

from __future__ import annotations

import json
import socket
from collections import Counter
from typing import Any

import pytest

from tap_deepconverse.diagnose import MAX_REQUESTS
from tap_deepconverse.diagnose_report import (
    KEYS,
    Answer,
    Findings,
    build_report,
    find_cursor,
    time_kind,
)
from tap_deepconverse.simulator import (
    DEFAULT_API_KEY,
    Dataset,
    Simulator,
    SimulatorOptions,
    generate_dataset,
)
from tests.conftest import DAY, START, TapRun, TapRunner, iso

END = START + 40 * DAY
PAGE_SIZE = 50


@pytest.fixture(scope="module")
def forty_days() -> Dataset:
    """Forty days, some conversations lasting days, ending at END."""
    return generate_dataset(
        seed=5,
        days=40,
        conversations_per_day=30,
        long_conversation_rate=0.3,
        day_boundary_conversations=False,
    )


def diagnose_config(sim: Simulator, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "api_key": DEFAULT_API_KEY,
        "api_url": sim.url,
        "bot_names": list(sim.dataset.bots),
        "start_date": iso(START),
        "end_date": iso(END),
        "requests_per_second": 100,
        "page_size": PAGE_SIZE,
        "request_timeout": 5,
    }
    config.update(overrides)
    return config


def report_of(run: TapRun) -> dict[str, Any]:
    """The one JSON object on stdout; nothing else is there."""
    assert run.exit_code == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()
    assert len(lines) == 1, run.stdout[:2000]
    report: dict[str, Any] = json.loads(lines[0])
    assert "type" not in report  # not a Singer message
    return report


def requests_per_endpoint(sim: Simulator) -> Counter[str]:
    return Counter(r.endpoint for r in sim.requests)


# Each case combines switches; together they cover every one that the report reads.
CASES: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = {
    "the documented reading": (
        {},
        {},
        {
            "cursor_key": "cursor",
            "page_size_served": PAGE_SIZE,
            "start_time_inclusive": True,
            "end_time_inclusive": False,
            "time_format": "unix_seconds",
            "longest_window_days": 31,
            "conversations_filter": "startTime",
        },
    ),
    "(], milliseconds, lastActionAt, a nested cursor": (
        {
            "bounds": "(]",
            "time_format": "millis",
            "conversation_filter": "lastActionAt",
            "cursor_key": "pagination.cursor",
        },
        {},
        {
            "cursor_key": "pagination",
            "start_time_inclusive": False,
            "end_time_inclusive": True,
            "time_format": "unix_milliseconds",
            "conversations_filter": "lastActionAt",
        },
    ),
    "[], ISO 8601, a cursor under another name, pages capped": (
        {"bounds": "[]", "time_format": "iso", "cursor_key": "next_token", "page_cap": 20},
        {},
        {
            "cursor_key": "next_token",
            "page_size_served": 20,
            "start_time_inclusive": True,
            "end_time_inclusive": True,
            "time_format": "iso8601",
        },
    ),
    "(), float seconds, empty pages, a 400 past 10 days": (
        {
            "bounds": "()",
            "time_format": "float",
            "empty_pages": True,
            "max_window_seconds": 10 * DAY,
        },
        {},
        {
            "start_time_inclusive": False,
            "end_time_inclusive": False,
            "time_format": "unix_seconds",
            "longest_window_days": 10,
            "cursor_key": "cursor",
        },
    ),
    "no cursor, windows cut after 5 days": (
        {"cursor_key": "none", "cut_window_seconds": 5 * DAY},
        {"page_size": 1000},
        {"cursor_key": None, "longest_window_days": 5, "page_size_served": None},
    ),
    "max_window_days lower than the API's limit": (
        {},
        {"max_window_days": 8},
        {"longest_window_days": 8},
    ),
}


@pytest.mark.parametrize(("switches", "settings", "expected"), CASES.values(), ids=list(CASES))
def test_the_report_under_each_switch(
    tap: TapRunner,
    forty_days: Dataset,
    switches: dict[str, Any],
    settings: dict[str, Any],
    expected: dict[str, Any],
) -> None:
    with Simulator(forty_days, SimulatorOptions(rate_limit=None, **switches)) as sim:
        run = tap.run(diagnose_config(sim, **settings), extra_args=("--diagnose",))
        counts = requests_per_endpoint(sim)
    report = report_of(run)
    assert {key: report[key] for key in expected} == expected, report["reasons"]
    assert set(report["reasons"]) == set(KEYS)
    assert all(report["reasons"][key] for key in KEYS)
    # Bounded, on both endpoints, and the figures say so.
    assert set(counts) == {"conversations", "messages"}
    assert max(counts.values()) <= MAX_REQUESTS
    assert report["details"]["requests"] == dict(counts)
    # The table on stderr has a line per key with the same answer.
    for key in KEYS:
        line = next(line for line in run.stderr.splitlines() if line.strip().startswith(key))
        assert report["reasons"][key] in line
    if switches.get("empty_pages"):
        assert report["details"]["empty_pages_with_cursor"] is True
    if switches.get("cursor_key") == "pagination.cursor":
        assert report["details"]["cursor_path"] == "pagination.cursor"


def test_a_cut_window_is_told_from_a_refused_one(tap: TapRunner, forty_days: Dataset) -> None:
    with Simulator(
        forty_days, SimulatorOptions(rate_limit=None, cut_window_seconds=5 * DAY)
    ) as sim:
        cut = report_of(tap.run(diagnose_config(sim), extra_args=("--diagnose",)))
    with Simulator(
        forty_days, SimulatorOptions(rate_limit=None, max_window_seconds=5 * DAY)
    ) as sim:
        refused = report_of(tap.run(diagnose_config(sim), extra_args=("--diagnose",)))
    assert cut["longest_window_days"] == refused["longest_window_days"] == 5
    assert "cut short" in cut["reasons"]["longest_window_days"]
    assert "refused" in refused["reasons"]["longest_window_days"]
    assert "must not exceed" in refused["reasons"]["longest_window_days"]


def test_too_few_records_give_null_and_a_reason(tap: TapRunner) -> None:
    empty = generate_dataset(seed=2, days=40, conversations_per_bot=[0, 0])
    with Simulator(empty, SimulatorOptions(rate_limit=None)) as sim:
        run = tap.run(diagnose_config(sim), extra_args=("--diagnose",))
    report = report_of(run)
    assert {key: report[key] for key in KEYS} == dict.fromkeys(KEYS)
    reasons = report["reasons"]
    assert "no answer needed one" in reasons["cursor_key"]
    assert "no window held more than 0 records" in reasons["page_size_served"]
    assert "no record came back" in reasons["time_format"]
    assert "cannot be told" in reasons["longest_window_days"]
    assert "whole second" in reasons["start_time_inclusive"]
    assert "seconds apart" in reasons["conversations_filter"]
    assert "unknown" in run.stderr


def test_writes_no_state_and_no_records(tap: TapRunner, forty_days: Dataset) -> None:
    state = {
        "bookmarks": {
            "messages": {
                "partitions": [
                    {
                        "context": {"bot_name": forty_days.bots[0]},
                        "replication_key": "time",
                        "replication_key_value": iso(END - DAY),
                    }
                ]
            }
        }
    }
    with Simulator(forty_days, SimulatorOptions(rate_limit=None)) as sim:
        run = tap.run(diagnose_config(sim), state, extra_args=("--diagnose",))
    report_of(run)
    assert run.messages == []  # no RECORD, SCHEMA or STATE
    assert "Nothing was written" in run.stderr


def test_a_refused_key_stops_as_a_run_does(tap: TapRunner, forty_days: Dataset) -> None:
    with Simulator(forty_days, SimulatorOptions(rate_limit=None)) as sim:
        run = tap.run(diagnose_config(sim, api_key="wrong-key-000"), extra_args=("--diagnose",))
        statuses = {r.status for r in sim.requests}
    assert run.exit_code == 1
    assert run.stdout == ""
    assert "refused the API key" in run.stderr
    assert "'api_key'" in run.stderr
    assert "Traceback" not in run.stderr
    assert statuses == {401}
    assert "wrong-key-000" not in run.stderr


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_an_unreachable_api_stops_as_a_run_does(tap: TapRunner, closed_port: int) -> None:
    config = {
        "api_key": DEFAULT_API_KEY,
        "api_url": f"http://127.0.0.1:{closed_port}",
        "bot_names": ["r3-218210"],
        "start_date": iso(START),
        "max_retries": 1,
    }
    run = tap.run(config, extra_args=("--diagnose",), timeout=60)
    assert run.exit_code == 1
    assert run.stdout == ""
    errors = [line for line in run.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1, run.stderr[-2000:]
    assert "Gave up on" in errors[0]
    assert "could not connect" in errors[0]
    assert "Nothing was written" in errors[0]
    assert "Traceback" not in run.stderr


def test_bad_settings_stop_before_any_request(tap: TapRunner, forty_days: Dataset) -> None:
    with Simulator(forty_days, SimulatorOptions(rate_limit=None)) as sim:
        run = tap.run(diagnose_config(sim, bot_names=[]), extra_args=("--diagnose",))
        assert sim.requests == []
    assert run.exit_code == 1
    assert "bot_names" in run.stderr
    assert run.stdout == ""


def test_the_flag_is_in_the_help(tap: TapRunner) -> None:
    import subprocess

    done = subprocess.run(
        tap.command("--help"), capture_output=True, text=True, env=tap.env(), check=False
    )
    assert done.returncode == 0
    assert "--diagnose" in done.stdout
    assert "Writes no state and no records" in " ".join(done.stdout.split())


# The pure parts


@pytest.mark.parametrize(
    ("document", "found"),
    [
        ({"data": [], "cursor": "abc"}, (("cursor",), "abc")),
        ({"data": [], "cursor": None}, (("cursor",), None)),
        ({"data": [], "cursor": 40}, (("cursor",), "40")),
        ({"data": [], "pagination": {"total": 9, "next": "xyz"}}, (("pagination", "next"), "xyz")),
        ({"data": [], "meta": {"count": 3}, "next_token": "t"}, (("next_token",), "t")),
        ({"data": [], "links": {"self": "https://x"}}, (("links", "self"), "https://x")),
        ({"data": [], "total": 12}, None),
        ({"data": []}, None),
    ],
)
def test_find_cursor(document: dict[str, Any], found: object) -> None:
    assert find_cursor(document) == found


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (1_744_750_665, "unix_seconds"),
        (1_744_750_665.25, "unix_seconds"),
        ("1744750665", "unix_seconds"),
        (1_744_750_665_250, "unix_milliseconds"),
        ("2025-04-15T20:57:45.250Z", "iso8601"),
        ("2025-04-15 20:57:45+02:00", "iso8601"),
        (True, None),
        (None, None),
        ("soon", None),
    ],
)
def test_time_kind(value: object, kind: str | None) -> None:
    assert time_kind(value) == kind


def test_the_endpoints_are_combined() -> None:
    conversations, messages = Findings("conversations"), Findings("messages")
    conversations.start_inclusive = Answer(True, "conversations say so")
    messages.start_inclusive = Answer(False, "messages say not")
    conversations.end_inclusive = Answer(None, "no record on a whole second")
    messages.end_inclusive = Answer(False, "messages say not")
    conversations.longest_window_days = Answer(10, "ten")
    messages.longest_window_days = Answer(4, "four")
    conversations.time_kinds["startTime", "unix_seconds"] = 3
    messages.time_kinds["time", "iso8601"] = 3
    conversations.cursor_paths.add("cursor")
    messages.paged_past = True
    messages.largest_page = 250
    conversations.largest_page = 40
    report = build_report([conversations, messages], page_size=1000)
    assert report["start_time_inclusive"].value is None
    assert "differ" in report["start_time_inclusive"].reason
    assert report["end_time_inclusive"] == Answer(False, "messages say not")
    assert report["longest_window_days"] == Answer(4, "four")
    assert report["time_format"].value is None
    assert "more than one format" in report["time_format"].reason
    assert report["cursor_key"].value == "cursor"
    assert report["page_size_served"].value == 250
    assert report["conversations_filter"].value is None
