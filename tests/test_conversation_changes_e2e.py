"""Conversations that change after they are exported, end to end: a backfill then daily runs,
each from the last one's state, against a simulator whose archive moves on between runs
(`as_of`), with conversations that last hours to days, under both readings of the
conversations window. A target that keeps the latest copy of each `_id` must end with every
conversation as it is at the last run, and the requests must be exactly the planned ones."""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tap_deepconverse.conversation_changes import LEARNT_REREAD_CAP_DAYS
from tap_deepconverse.simulator import Dataset, Simulator, SimulatorOptions, generate_dataset
from tap_deepconverse.timestamps import parse_timestamp
from tests.conftest import (
    DAY,
    START,
    TapRun,
    TapRunner,
    assert_windows_cover,
    config_for,
    conversations_seen,
    iso,
)

HOUR = 3600
LOOKBACK = HOUR  # the default lookback_minutes
FAST = {"requests_per_second": 200, "page_size": 40}
BACKFILL_DAYS = 15
DAILY_RUNS = 5
READINGS = ("startTime", "lastActionAt")


@pytest.fixture(scope="module")
def lasting() -> Dataset:
    """660 conversations over 20 days, 30% of them pausing 1 to 72 hours: some last three
    days. The first 15 days are the backfill, from which the tap learns how long they last."""
    return generate_dataset(
        seed=21,
        days=BACKFILL_DAYS + DAILY_RUNS,
        conversations_per_day=33,
        long_conversation_rate=0.3,
        long_conversation_hours=(1, 72),
        day_boundary_conversations=False,
    )


@dataclass
class Target:
    """Keeps the latest copy of each record, as a merge on the primary key does."""

    latest: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    def load(self, run: TapRun) -> None:
        for message in run.messages:
            if message["type"] == "RECORD":
                record = message["record"]
                self.latest.setdefault(message["stream"], {})[record["_id"]] = record


@dataclass
class Daily:
    """One run of the series: where it ended, what it wrote, what the simulator saw."""

    end: int
    run: TapRun
    requests: list[tuple[str, dict[str, str]]]

    def first_pages(self, endpoint: str, bot: str) -> list[dict[str, str]]:
        """The first page of each window asked, in time order."""
        pages = [
            params
            for where, params in self.requests
            if where == endpoint and params["bot_name"] == bot and "cursor" not in params
        ]
        return sorted(pages, key=lambda p: int(p["start_time"]))


def run_daily(
    tap: TapRunner,
    dataset: Dataset,
    reading: str,
    backfill_days: int = BACKFILL_DAYS,
    **settings: Any,
) -> tuple[Target, list[Daily]]:
    """A backfill of the first days, then one run a day, each from the last one's state,
    while the archive moves on; the simulator filters conversations on `reading`."""
    target = Target()
    series: list[Daily] = []
    options = SimulatorOptions(rate_limit=None, conversation_filter=reading)
    with Simulator(dataset, options) as sim:
        state = None
        for day in range(backfill_days, backfill_days + DAILY_RUNS + 1):
            end = START + day * DAY
            sim.options.as_of = end
            sim.reset_log()
            config = config_for(sim, **FAST, **settings, end_date=iso(end))
            run = tap.run(config, state)
            assert run.exit_code == 0, run.stderr[-3000:]
            target.load(run)
            series.append(Daily(end, run, [(r.endpoint, r.params) for r in sim.requests]))
            state = run.final_state
    return target, series


def open_seconds(records: list[dict[str, Any]]) -> int:
    """The longest lastActionAt - startTime among conversation records, whole seconds up."""
    return max(
        math.ceil(
            (parse_timestamp(r["lastActionAt"]) - parse_timestamp(r["startTime"])).total_seconds()
        )
        for r in records
    )


def assert_windows_tile(pages: list[dict[str, str]], start: int, end: int) -> None:
    """Windows from `start` to `end` without a gap, each asked one second early."""
    assert_windows_cover(pages, start, end)
    assert {p["per_page"] for p in pages} == {str(FAST["page_size"])}


def stale(target: Target, dataset: Dataset, moment: int) -> list[str]:
    """Conversations the target holds in another version than the archive's at `moment`;
    every conversation of then must be there."""
    now = {c["_id"]: c for c in dataset.conversations(as_of=moment)}
    held = target.latest["conversations"]
    assert set(held) == set(now)
    return sorted(
        i
        for i, c in now.items()
        if parse_timestamp(held[i]["lastActionAt"]) != parse_timestamp(c["lastActionAt"])
        or held[i]["tags"] != c["tags"]
    )


@pytest.mark.parametrize("reading", READINGS)
def test_daily_runs_leave_no_stale_conversation(
    tap: TapRunner, lasting: Dataset, reading: str
) -> None:
    target, series = run_daily(tap, lasting, reading)
    backfill, daily = series[0], series[1:]

    # The backfill learnt which field the window filters on, from conversations that
    # straddle its windows' edges.
    seen = [conversations_seen(backfill.run.final_state, bot) for bot in lasting.bots]
    if reading == "startTime":
        assert any(s["active_after_window"] for s in seen)
        assert not any(s["started_before_window"] for s in seen)
    else:
        assert any(s["started_before_window"] for s in seen)
        assert not any(s["active_after_window"] for s in seen)

    emitted: dict[str, list[dict[str, Any]]] = {bot: [] for bot in lasting.bots}
    for before, now in zip(series, daily, strict=False):
        for record in before.run.records["conversations"]:
            emitted[record["bot_name"]].append(record)
        bookmark = before.end
        for bot in lasting.bots:
            # Messages: the lookback only, as ever.
            assert_windows_tile(now.first_pages("messages", bot), bookmark - LOOKBACK, now.end)
            # Conversations: under startTime, as far back again as the longest conversation
            # every earlier run emitted (15 days of them: enough to learn from); under
            # lastActionAt, nothing more.
            longest = open_seconds(emitted[bot])
            assert longest > DAY
            seen = conversations_seen(before.run.final_state, bot)
            assert seen["longest_open_seconds"] == longest
            assert parse_timestamp(seen["observed_since"]) == parse_timestamp(iso(START))
            extra = min(longest, LEARNT_REREAD_CAP_DAYS * DAY) if reading == "startTime" else 0
            start = bookmark - LOOKBACK - extra
            assert_windows_tile(now.first_pages("conversations", bot), start, now.end)
        assert "may be stale" not in now.run.stderr

    final = series[-1].end
    assert stale(target, lasting, final) == []
    assert set(target.latest["messages"]) == {m["_id"] for m in lasting.messages(as_of=final)}


def test_without_the_reread_conversations_end_stale(tap: TapRunner, lasting: Dataset) -> None:
    """The check above can fail: with the re-read off, the startTime reading leaves the
    conversations that changed after their export in their old version."""
    target, series = run_daily(tap, lasting, "startTime", conversation_reread_days=0)
    for before, now in itertools.pairwise(series):
        for bot in lasting.bots:
            pages = now.first_pages("conversations", bot)
            assert_windows_tile(pages, before.end - LOOKBACK, now.end)
    assert len(stale(target, lasting, series[-1].end)) >= 5


def test_a_short_history_rereads_the_cap(tap: TapRunner, lasting: Dataset) -> None:
    """After three days of backfill, the longest conversations seen are shorter than the
    longest to come (some are still open): until two weeks have been watched, runs re-read
    the cap, and none goes stale."""
    target, series = run_daily(tap, lasting, "startTime", backfill_days=3)
    for before, now in itertools.pairwise(series):
        for bot in lasting.bots:
            start = max(START, before.end - LOOKBACK - LEARNT_REREAD_CAP_DAYS * DAY)
            assert_windows_tile(now.first_pages("conversations", bot), start, now.end)
        assert "may be stale" not in now.run.stderr
    assert stale(target, lasting, series[-1].end) == []


def test_a_conversation_longer_than_the_reread_is_reported(
    tap: TapRunner, lasting: Dataset
) -> None:
    """A state that learnt conversations last an hour meets ones lasting longer: the run
    says earlier ones may be stale, and how far back one run should re-read."""
    bookmark, end = START + 19 * DAY, START + 20 * DAY
    seen = {
        "longest_open_seconds": HOUR,
        "active_after_window": True,
        "observed_since": iso(START),
    }
    state = seeded_state(lasting.bots, bookmark, dict.fromkeys(lasting.bots, seen))
    with Simulator(lasting, SimulatorOptions(rate_limit=None, as_of=end)) as sim:
        run = tap.run(config_for(sim, **FAST, end_date=iso(end)), state)
    assert run.exit_code == 0, run.stderr[-3000:]
    for bot in lasting.bots:
        longest = conversations_seen(run.final_state, bot)["longest_open_seconds"]
        assert longest > 2 * HOUR
        advice = re.search(
            rf"bot '{bot}': one lasted .* may be stale .* conversation_reread_days set to (\d+)",
            run.stderr,
        )
        assert advice is not None, run.stderr[-3000:]
        assert int(advice.group(1)) == math.ceil(longest / DAY) + 1


def seeded_state(
    bots: tuple[str, ...], bookmark: int, seen: dict[str, dict[str, Any] | None]
) -> dict[str, Any]:
    """Both streams bookmarked at `bookmark` for every bot; the conversations state of a bot
    says what `seen` gives for it, if anything."""
    partitions: dict[str, list[dict[str, Any]]] = {"conversations": [], "messages": []}
    for bot in bots:
        for stream, key in (("conversations", "lastActionAt"), ("messages", "time")):
            partition = {
                "context": {"bot_name": bot},
                "replication_key": key,
                "replication_key_value": iso(bookmark),
            }
            if stream == "conversations" and seen.get(bot) is not None:
                partition["conversations_seen"] = seen[bot]
            partitions[stream].append(partition)
    return {"bookmarks": {stream: {"partitions": p} for stream, p in partitions.items()}}


# One run from a seeded state: where conversations start, by what the state says was seen
# and by the setting. Messages always start at the bookmark less the lookback.
BOOKMARK = START + 9 * DAY
LONG_AGO = "2024-12-01T00:00:00Z"  # watched long enough to trust what was learnt
CASES: dict[str, tuple[dict[str, Any] | None, dict[str, Any] | None, dict[str, Any], int]] = {
    "a state from before anything was learnt": (None, None, {}, LEARNT_REREAD_CAP_DAYS * DAY),
    "startTime, conversations open up to 5 hours": (
        {"longest_open_seconds": 5 * HOUR, "active_after_window": True, "observed_since": LONG_AGO},
        None,
        {},
        5 * HOUR,
    ),
    "startTime, watched for 9 days only": (
        {
            "longest_open_seconds": 5 * HOUR,
            "active_after_window": True,
            "observed_since": iso(START),
        },
        None,
        {},
        LEARNT_REREAD_CAP_DAYS * DAY,
    ),
    "startTime, a conversation open for weeks": (
        {"longest_open_seconds": 30 * DAY, "active_after_window": True, "observed_since": LONG_AGO},
        None,
        {},
        LEARNT_REREAD_CAP_DAYS * DAY,
    ),
    "startTime, the setting overrides": (
        {"longest_open_seconds": 5 * HOUR, "active_after_window": True, "observed_since": LONG_AGO},
        None,
        {"conversation_reread_days": 2},
        2 * DAY,
    ),
    "startTime, the setting turns it off": (
        {"longest_open_seconds": 5 * HOUR, "active_after_window": True},
        None,
        {"conversation_reread_days": 0},
        0,
    ),
    "lastActionAt: nothing, whatever the setting": (
        {"longest_open_seconds": 5 * HOUR, "started_before_window": True},
        None,
        {"conversation_reread_days": 2},
        0,
    ),
    "lastActionAt, learnt from another bot": (
        {"longest_open_seconds": 5 * HOUR, "observed_since": LONG_AGO},
        {"started_before_window": True},
        {},
        0,
    ),
    "contradictory answers: as if unknown": (
        {
            "longest_open_seconds": 5 * HOUR,
            "started_before_window": True,
            "observed_since": LONG_AGO,
        },
        {"active_after_window": True},
        {},
        5 * HOUR,
    ),
}


@pytest.fixture(scope="module")
def ten_days() -> Iterator[Simulator]:
    dataset = generate_dataset(seed=9, days=10, conversations_per_day=10)
    with Simulator(dataset, SimulatorOptions(rate_limit=None)) as sim:
        yield sim


@pytest.mark.parametrize(
    ("seen", "other_seen", "settings", "extra"), list(CASES.values()), ids=list(CASES)
)
def test_where_conversations_start(
    tap: TapRunner,
    ten_days: Simulator,
    seen: dict[str, Any] | None,
    other_seen: dict[str, Any] | None,
    settings: dict[str, Any],
    extra: int,
) -> None:
    bot, other = ten_days.dataset.bots
    state = seeded_state(ten_days.dataset.bots, BOOKMARK, {bot: seen, other: other_seen})
    ten_days.reset_log()
    run = tap.run(config_for(ten_days, **FAST, **settings, end_date=iso(BOOKMARK + DAY)), state)
    assert run.exit_code == 0, run.stderr[-3000:]
    series = Daily(BOOKMARK + DAY, run, [(r.endpoint, r.params) for r in ten_days.requests])
    assert_windows_tile(series.first_pages("messages", bot), BOOKMARK - LOOKBACK, BOOKMARK + DAY)
    pages = series.first_pages("conversations", bot)
    assert_windows_tile(pages, BOOKMARK - LOOKBACK - extra, BOOKMARK + DAY)
    assert f"conversations for bot '{bot}': re-reading" in run.stderr
