"""The pure logic of conversations that change after they are exported: what an answer
shows, the filter field, how far back a run re-reads, and what is kept in the state."""

from __future__ import annotations

import pytest

from tap_deepconverse.conversation_changes import (
    DAY_SECONDS,
    LEARNING_DAYS,
    LEARNT_REREAD_CAP_DAYS,
    ConversationWatch,
    Seen,
    contradictory,
    evidence,
    filter_reading,
    reread_seconds,
    seen_in,
    state_problem,
)

S = 1_000_000  # microseconds per second
BOUNDS = (1_000, 2_000)  # start_time and end_time as asked
CAP = LEARNT_REREAD_CAP_DAYS * DAY_SECONDS
BOOKMARK = 1_736_100_000  # watched since 1970 unless said otherwise


@pytest.mark.parametrize(
    ("start", "last", "before", "after"),
    [
        (1_500, 1_600, False, False),  # inside the window
        (1_000, 1_600, False, False),  # on start_time: true under an inclusive start
        (999, 1_600, True, False),  # started before: not filtered on startTime
        (1_500, 2_000, False, False),  # on end_time: true under an inclusive end
        (1_500, 2_001, False, True),  # active after: not filtered on lastActionAt
        (900, 2_100, True, True),  # both: no single field explains it
    ],
)
def test_evidence_is_strict_about_the_bounds(start: int, last: int, before: bool, after: bool):
    seen = evidence(start * S, last * S, BOUNDS)
    assert (seen.started_before_window, seen.active_after_window) == (before, after)
    assert seen.longest_open_seconds == last - start


def test_evidence_rounds_durations_up_and_ignores_what_it_cannot_measure():
    assert evidence(1_500 * S, 1_500 * S + 1, BOUNDS).longest_open_seconds == 1
    assert evidence(1_500 * S, 1_500 * S, BOUNDS).longest_open_seconds == 0
    # No startTime, or a last action before the start: no duration, no sign of startTime.
    assert evidence(None, 1_600 * S, BOUNDS) == Seen()
    assert evidence(1_600 * S, 1_500 * S, BOUNDS).longest_open_seconds is None


@pytest.mark.parametrize(
    ("signs", "reading"),
    [
        ([], None),
        ([(False, False)], None),
        ([(True, False)], "lastActionAt"),
        ([(False, True)], "startTime"),
        ([(False, True), (False, False)], "startTime"),  # one bot tells for the API
        ([(True, False), (False, True)], None),  # contradictory across bots
        ([(True, True)], None),
    ],
)
def test_filter_reading_from_every_bot(signs: list[tuple[bool, bool]], reading: str | None):
    seen = [Seen(started_before_window=b, active_after_window=a) for b, a in signs]
    assert filter_reading(seen) == reading
    assert contradictory(seen) == (any(b for b, _ in signs) and any(a for _, a in signs))


LONG_ENOUGH = LEARNING_DAYS * DAY_SECONDS


@pytest.mark.parametrize(
    ("reading", "longest", "history", "setting", "expected"),
    [
        ("lastActionAt", 3 * DAY_SECONDS, LONG_ENOUGH, None, 0),
        ("lastActionAt", None, None, 5, 0),  # nothing to re-read whatever the setting
        ("startTime", 3 * DAY_SECONDS + 7, LONG_ENOUGH, None, 3 * DAY_SECONDS + 7),
        ("startTime", 30 * DAY_SECONDS, LONG_ENOUGH, None, CAP),  # learnt, but bounded
        ("startTime", None, LONG_ENOUGH, None, CAP),  # nothing known yet: the bound
        ("startTime", 3 * DAY_SECONDS, LONG_ENOUGH - 1, None, CAP),  # not watched long enough
        ("startTime", 3 * DAY_SECONDS, None, None, CAP),  # a state from before it was kept
        ("startTime", 0, LONG_ENOUGH, None, 0),
        ("startTime", 3 * DAY_SECONDS, LONG_ENOUGH, 2, 2 * DAY_SECONDS),  # the setting wins
        ("startTime", 3 * DAY_SECONDS, None, 30, 30 * DAY_SECONDS),
        ("startTime", 3 * DAY_SECONDS, LONG_ENOUGH, 0, 0),  # off
        (None, 3 * DAY_SECONDS, LONG_ENOUGH, None, 3 * DAY_SECONDS),  # unknown: as startTime
        (None, None, None, None, CAP),
        (None, None, None, 1, DAY_SECONDS),
    ],
)
def test_reread_seconds(reading, longest, history, setting, expected: int):
    found = reread_seconds(
        reading=reading,
        longest_open_seconds=longest,
        history_seconds=history,
        setting_days=setting,
    )
    assert found == expected


def test_seen_merges_and_round_trips_through_the_state():
    a = Seen(longest_open_seconds=None, started_before_window=True, observed_since=2_000)
    b = Seen(longest_open_seconds=3600, active_after_window=True, observed_since=1_000)
    merged = a.merged(b)
    assert merged == Seen(
        3600, started_before_window=True, active_after_window=True, observed_since=1_000
    )
    assert merged.to_state()["observed_since"] == "1970-01-01T00:16:40.000000Z"
    assert b.merged(Seen(longest_open_seconds=0)).longest_open_seconds == 3600
    assert Seen().merged(Seen(longest_open_seconds=0)).longest_open_seconds == 0
    assert Seen.from_state(merged.to_state()) == merged
    assert seen_in({"replication_key_value": "2025-01-01T00:00:00Z"}) == Seen()
    assert seen_in({"conversations_seen": b.to_state()}) == b


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ([], "is not an object"),
        ({"longest_open_seconds": "3 days"}, "longest_open_seconds"),
        ({"longest_open_seconds": -1}, "longest_open_seconds"),
        ({"longest_open_seconds": 1.5}, "longest_open_seconds"),
        ({"longest_open_seconds": True}, "longest_open_seconds"),
        ({"started_before_window": "yes"}, "started_before_window"),
        ({"active_after_window": 1}, "active_after_window"),
        ({"observed_since": "last week"}, "observed_since"),
        ({"observed_since": True}, "observed_since"),
    ],
)
def test_state_problems_are_named(value: object, problem: str):
    found = state_problem(value)
    assert found is not None
    assert problem in found
    with pytest.raises(ValueError, match=problem):
        Seen.from_state(value)


def test_a_state_without_flags_is_read_as_nothing_seen():
    assert state_problem({}) is None
    assert Seen.from_state({}) == Seen()


def test_the_watch_plans_from_the_prior_state_and_keeps_what_the_run_adds():
    prior = {"a": Seen(2 * 3600, active_after_window=True, observed_since=0)}
    watch = ConversationWatch(prior, setting_days=None)
    assert watch.reading(prior=True) == "startTime"
    assert watch.plan("a", 600, BOOKMARK)[0] == 600 + 2 * 3600
    assert watch.plan("b", 600, BOOKMARK)[0] == 600 + CAP  # a bot with nothing known
    assert ConversationWatch(prior, setting_days=1).plan("a", 600, BOOKMARK)[0] == (
        600 + DAY_SECONDS
    )

    # Times as the tap writes them, RFC 3339.
    bounds = (1_736_000_000, 1_736_086_400)
    watch.observe("a", bounds, "2025-01-04T14:13:20Z", "2025-01-07T00:00Z")
    watch.observe("b", bounds, "2025-01-04T14:13:19Z", "2025-01-04T15:00Z")
    watch.observe("b", bounds, "someday", "2025-01-04T15:00Z")  # tells nothing
    assert watch.seen("a") == Seen(
        longest_open_seconds=208_000,
        started_before_window=False,
        active_after_window=True,
        observed_since=0,
    )
    assert watch.seen("b") == Seen(
        longest_open_seconds=2_801, started_before_window=True, active_after_window=False
    )
    watch.window_done("a", 1_736_000_000)
    assert watch.seen("a").observed_since == 0
    watch.window_done("b", 1_736_000_000)
    assert watch.seen("b").observed_since == 1_736_000_000
    # The run's own plan does not move; what it saw is for the next run.
    assert watch.plan("a", 600, BOOKMARK)[0] == 600 + 2 * 3600
    assert watch.reading() is None
    assert watch.reading(prior=True) == "startTime"


def test_plan_notes_say_why():
    learnt = ConversationWatch(
        {"a": Seen(90_000, active_after_window=True, observed_since=0)}, setting_days=None
    )
    reread, notes = learnt.plan("a", 3600, BOOKMARK)
    assert reread == 3600 + 90_000
    assert [n.warning for n in notes] == [False]
    assert "re-reading 1.0 days" in notes[0].text
    assert "on startTime; the longest seen lasted 1.0 days)" in notes[0].text

    short = ConversationWatch(
        {"a": Seen(90_000, active_after_window=True, observed_since=BOOKMARK - 3 * DAY_SECONDS)},
        setting_days=None,
    )
    reread, notes = short.plan("a", 3600, BOOKMARK)
    assert reread == 3600 + CAP
    assert "watched 3.0 days, not the 14 days that tell" in notes[0].text

    unknown = ConversationWatch({}, setting_days=None)
    assert "on a field not known yet; how long they last is not known yet" in (
        unknown.plan("a", 3600, BOOKMARK)[1][0].text
    )
    last_action = ConversationWatch({"a": Seen(3600, started_before_window=True)}, setting_days=3)
    reread, notes = last_action.plan("a", 3600, BOOKMARK)
    assert reread == 3600
    assert "re-reading nothing" in notes[0].text

    # Longer than the learnt cap: a warning every run until the setting decides.
    weeks = ConversationWatch(
        {"a": Seen(20 * DAY_SECONDS, active_after_window=True, observed_since=0)},
        setting_days=None,
    )
    reread, notes = weeks.plan("a", 3600, BOOKMARK)
    assert reread == 3600 + CAP
    assert [n.warning for n in notes] == [False, True]
    assert "some last 20.0 days" in notes[1].text
    decided = ConversationWatch(weeks.prior, setting_days=7)
    assert [n.warning for n in decided.plan("a", 3600, BOOKMARK)[1]] == [False]


def test_end_of_run_notes():
    start_bounds = (1_736_000_000, 1_736_086_400)
    watch = ConversationWatch(
        {"a": Seen(3600, active_after_window=True, observed_since=0)}, setting_days=None
    )
    watch.plan("a", 600, BOOKMARK)  # re-reads 70 minutes
    assert watch.notes() == []
    # A conversation of an hour and a half: longer than the re-read and than any before.
    watch.observe("a", start_bounds, 1_736_000_000, 1_736_005_400)
    (note,) = watch.notes()
    assert note.warning
    assert "one lasted 1.5 hours, longer than the 1.2 hours this run re-read" in note.text
    assert "Later runs re-read longer" in note.text
    assert "conversation_reread_days set to 2" in note.text

    # The field learnt this run is said once; contradictory answers are a warning.
    fresh = ConversationWatch({}, setting_days=None)
    fresh.observe("a", start_bounds, 1_736_000_000, 1_736_086_401)
    (learnt,) = fresh.notes()
    assert "filters conversations on startTime" in learnt.text
    fresh.observe("b", start_bounds, 1_735_999_999, 1_736_000_100)
    (contradiction,) = fresh.notes()
    assert contradiction.warning
    assert "no single field explains both" in contradiction.text

    # Under lastActionAt, or with the re-read off, nothing to warn about.
    for prior, setting in (
        ({"a": Seen(3600, started_before_window=True)}, None),
        ({"a": Seen(3600, active_after_window=True)}, 0),
    ):
        quiet = ConversationWatch(prior, setting_days=setting)
        quiet.plan("a", 600, BOOKMARK)
        quiet.observe("a", start_bounds, 1_736_000_000, 1_736_040_000)
        assert not any(n.warning for n in quiet.notes())
