"""Conversations that change after they are exported, and how far back a run re-reads them.
Pure: no I/O, no clock.

A conversation is not final when first exported: a customer comes back, an agent takes
over, a tag is added; its ``lastActionAt`` moves and its ``tags`` change, for hours or days.
Whether a later run gets the new version depends on the field the conversations window
filters on, which is not documented:

- on ``lastActionAt``: the changed conversation falls in a later window, and the next run
  brings it like any new record. Nothing extra to read.
- on ``startTime``: it stays in the window of its start, which the next run does not read
  again. So each incremental run re-reads the conversations that started in the last
  ``open`` seconds before its bookmark (on top of the lookback), ``open`` being how long
  conversations stay open: every conversation is then read once more after its last change.

Both are learnt from the answers (:class:`Seen`): a conversation returned although it started
before its window's ``start_time`` shows the window does not filter on ``startTime``; one
returned with a ``lastActionAt`` after the window's ``end_time`` shows it does not filter on
``lastActionAt``. Strict comparisons, so that no reading of the bounds' inclusiveness can
fake either. How long conversations stay open is the longest ``lastActionAt - startTime``
seen, once the bot's conversations have been watched for ``LEARNING_DAYS``: over a shorter
history the longest seen are those still open, shorter than they will be, so until then the
re-read is the cap. Until the field is known (or when the answers contradict each other) the
tap re-reads as under ``startTime``: a few days of conversation pages, where not re-reading
would leave changed conversations stale without a word. A conversation found longer than the
re-read of the run that found it is reported: a longer one may have been missed before.

What was seen is kept per bot in the conversations stream's state, beside the bookmark and
written with it, so it never covers a record not yet emitted.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from tap_deepconverse.timestamps import (
    TimestampError,
    epoch_microseconds,
    format_timestamp,
    from_unix_seconds,
    parse_timestamp,
    to_unix_seconds,
)

# The key of a bot's conversations state that holds what its conversations showed.
STATE_KEY = "conversations_seen"
DAY_SECONDS = 86_400
# Learnt re-reads go back at most this far: beyond it, a few long conversations would cost
# every run many days of pages. conversation_reread_days overrides it.
LEARNT_REREAD_CAP_DAYS = 7
# How long a bot's conversations are watched before their longest is trusted: long enough
# for one as long as the cap to have been seen whole, started and finished.
LEARNING_DAYS = 2 * LEARNT_REREAD_CAP_DAYS

Reading = Literal["startTime", "lastActionAt"]
_MICROS = 1_000_000


@dataclass(frozen=True)
class Seen:
    """What one bot's exported conversations have shown so far."""

    # The longest lastActionAt - startTime seen, in whole seconds rounded up; None when
    # nothing is known (no conversation seen yet, or a state written before this was kept).
    longest_open_seconds: int | None = None
    # A conversation came back that started before its window: not filtered on startTime.
    started_before_window: bool = False
    # A conversation came back whose last action is after its window: not on lastActionAt.
    active_after_window: bool = False
    # The start (unix seconds) of the first window whose conversations were watched.
    observed_since: int | None = None

    def merged(self, other: Seen) -> Seen:
        return Seen(
            longest_open_seconds=_either(
                max, self.longest_open_seconds, other.longest_open_seconds
            ),
            started_before_window=self.started_before_window or other.started_before_window,
            active_after_window=self.active_after_window or other.active_after_window,
            observed_since=_either(min, self.observed_since, other.observed_since),
        )

    def to_state(self) -> dict[str, object]:
        since = self.observed_since
        return {
            "longest_open_seconds": self.longest_open_seconds,
            "started_before_window": self.started_before_window,
            "active_after_window": self.active_after_window,
            "observed_since": None if since is None else format_timestamp(from_unix_seconds(since)),
        }

    @classmethod
    def from_state(cls, value: object) -> Seen:
        """The value kept in a state (``ValueError`` if :func:`state_problem` finds one)."""
        problem = state_problem(value)
        if problem is not None:
            raise ValueError(problem)
        assert isinstance(value, dict)
        since = value.get("observed_since")
        return cls(
            longest_open_seconds=value.get("longest_open_seconds"),
            started_before_window=value.get("started_before_window", False),
            active_after_window=value.get("active_after_window", False),
            observed_since=None if since is None else to_unix_seconds(parse_timestamp(since)),
        )


def _either(pick: Callable[[int, int], int], a: int | None, b: int | None) -> int | None:
    """``pick`` of the values that are known."""
    return b if a is None else a if b is None else pick(a, b)


def state_problem(value: object) -> str | None:
    """What is wrong with a value kept under ``STATE_KEY``, or None."""
    if not isinstance(value, dict):
        return "is not an object"
    longest = value.get("longest_open_seconds")
    if longest is not None and (
        not isinstance(longest, int) or isinstance(longest, bool) or longest < 0
    ):
        return f"has a longest_open_seconds that is not whole seconds: {longest!r}"
    for name in ("started_before_window", "active_after_window"):
        flag = value.get(name, False)
        if not isinstance(flag, bool):
            return f"has a {name} that is not true or false: {flag!r}"
    since = value.get("observed_since")
    if since is not None:
        try:
            parse_timestamp(since)
        except TimestampError:
            return f"has an observed_since that is not a time: {since!r}"
    return None


def seen_in(partition_state: Mapping[str, object]) -> Seen:
    """What a bot's conversations state says was seen (nothing, if it says nothing)."""
    value = partition_state.get(STATE_KEY)
    return Seen() if value is None else Seen.from_state(value)


def filter_reading(seen: Iterable[Seen]) -> Reading | None:
    """The field the conversations window filters on, from what every bot showed; None while
    nothing tells, or when the answers showed both (no single field explains them)."""
    started_before = active_after = False
    for bot in seen:
        started_before = started_before or bot.started_before_window
        active_after = active_after or bot.active_after_window
    if started_before and not active_after:
        return "lastActionAt"
    if active_after and not started_before:
        return "startTime"
    return None


def contradictory(seen: Iterable[Seen]) -> bool:
    """Whether the answers showed both signs, which no single filter field explains."""
    bots = list(seen)
    return any(b.started_before_window for b in bots) and any(b.active_after_window for b in bots)


def reread_seconds(
    *,
    reading: Reading | None,
    longest_open_seconds: int | None,
    history_seconds: int | None,
    setting_days: int | None,
) -> int:
    """How far before the bookmark, on top of the lookback, a run re-reads a bot's
    conversations: nothing when the window filters on lastActionAt; else
    ``conversation_reread_days`` when set, or how long the bot's conversations stay open,
    at most ``LEARNT_REREAD_CAP_DAYS``: that cap while they have been watched for less than
    ``LEARNING_DAYS`` (``history_seconds``) or nothing is known."""
    if reading == "lastActionAt":
        return 0
    if setting_days is not None:
        return setting_days * DAY_SECONDS
    cap = LEARNT_REREAD_CAP_DAYS * DAY_SECONDS
    if (
        longest_open_seconds is None
        or history_seconds is None
        or history_seconds < LEARNING_DAYS * DAY_SECONDS
    ):
        return cap
    return min(longest_open_seconds, cap)


def evidence(start_micros: int | None, last_micros: int, request_bounds: tuple[int, int]) -> Seen:
    """What one conversation returned for a window asked with ``request_bounds`` (its
    ``start_time`` and ``end_time``) shows."""
    start_time, end_time = request_bounds
    open_seconds = None
    if start_micros is not None and last_micros >= start_micros:
        open_seconds = math.ceil((last_micros - start_micros) / _MICROS)
    return Seen(
        longest_open_seconds=open_seconds,
        started_before_window=start_micros is not None and start_micros < start_time * _MICROS,
        active_after_window=last_micros > end_time * _MICROS,
    )


@dataclass(frozen=True)
class Note:
    """A line for the run's log."""

    text: str
    warning: bool = False


class ConversationWatch:
    """What the conversations of each bot have shown: as the state said at the start of the
    run, and what this run's records add; and each bot's re-read planned from the former.
    Used by one thread at a time: planned before the streams' threads start, then fed by
    the conversations stream's."""

    def __init__(self, prior: Mapping[str, Seen], *, setting_days: int | None) -> None:
        self.prior = dict(prior)
        self.setting_days = setting_days
        self._seen = dict(prior)
        self._rereads: dict[str, int] = {}  # a bot's whole re-read, where one is wanted

    def observe(
        self,
        bot: str,
        request_bounds: tuple[int, int],
        start_time: object,
        last_action_at: object,
    ) -> None:
        """A conversation of ``bot`` came back for a window asked with ``request_bounds``;
        its times as the API or the tap wrote them. A time that cannot be read tells nothing."""
        try:
            last = epoch_microseconds(last_action_at)
            start = None if start_time is None else epoch_microseconds(start_time)
        except TimestampError:
            return
        found = evidence(start, last, request_bounds)
        self._seen[bot] = self._seen.get(bot, Seen()).merged(found)

    def window_done(self, bot: str, window_start: int) -> None:
        """A window of ``bot`` starting at ``window_start`` has been emitted whole."""
        self._seen[bot] = self.seen(bot).merged(Seen(observed_since=window_start))

    def seen(self, bot: str) -> Seen:
        return self._seen.get(bot, Seen())

    def reading(self, *, prior: bool = False) -> Reading | None:
        """The filter field from every bot, at the start of the run or now."""
        return filter_reading((self.prior if prior else self._seen).values())

    def plan(self, bot: str, lookback: int, bookmark: int) -> tuple[int, list[Note]]:
        """How far before its ``bookmark`` this run re-reads the conversations of ``bot``
        (``lookback`` included), from what the state said at the start, and why."""
        reading = self.reading(prior=True)
        prior = self.prior.get(bot, Seen())
        longest = prior.longest_open_seconds
        history = None if prior.observed_since is None else bookmark - prior.observed_since
        extra = reread_seconds(
            reading=reading,
            longest_open_seconds=longest,
            history_seconds=history,
            setting_days=self.setting_days,
        )
        if reading == "lastActionAt":
            why = "the API filters conversations on lastActionAt, so changed ones come back"
        elif self.setting_days is not None:
            why = "conversation_reread_days"
        else:
            field = "on startTime" if reading else "on a field not known yet"
            if longest is None:
                lasting = "how long they last is not known yet"
            elif history is None or history < LEARNING_DAYS * DAY_SECONDS:
                watched = "for an unknown time" if history is None else duration_text(history)
                lasting = (
                    f"the longest seen lasted {duration_text(longest)}, but they have been "
                    f"watched {watched}, not the {LEARNING_DAYS} days that tell"
                )
            else:
                lasting = f"the longest seen lasted {duration_text(longest)}"
            why = f"the API filters conversations {field}; {lasting}"
        notes = [
            Note(
                f"conversations for bot '{bot}': re-reading "
                f"{duration_text(extra) if extra else 'nothing'} before the bookmark besides "
                f"the lookback, for conversations changed since they were exported ({why})."
            )
        ]
        if reading != "lastActionAt" and self.setting_days is None and (longest or 0) > extra:
            notes.append(
                Note(
                    f"conversations for bot '{bot}': some last {duration_text(longest or 0)}, "
                    f"longer than the {duration_text(extra)} re-read at most unless "
                    "conversation_reread_days says otherwise; changes to the longest ones "
                    "after their export can be missed. Set conversation_reread_days to decide.",
                    warning=True,
                )
            )
        if self.setting_days != 0:
            self._rereads[bot] = lookback + extra
        return lookback + extra, notes

    def notes(self) -> list[Note]:
        """What this run learnt that the operator should know, for the end of the run."""
        notes = []
        reading = self.reading()
        if reading is not None and reading != self.reading(prior=True):
            later = (
                "only the lookback"
                if reading == "lastActionAt"
                else "the conversations that may have changed since their export"
            )
            notes.append(
                Note(
                    f"conversations: the API's answers show that it filters conversations on "
                    f"{reading}; later runs re-read {later}."
                )
            )
        for bot, reread in self._rereads.items():
            longest = self._outlasted(bot, reread)
            if longest is not None:
                notes.append(
                    Note(
                        f"conversations for bot '{bot}': one lasted {duration_text(longest)}, "
                        f"longer than the {duration_text(reread)} this run re-read: one as "
                        "long that changed after an earlier run may be stale in the target. "
                        "Later runs re-read longer; to bring earlier ones up to date, run "
                        "once with conversation_reread_days set to "
                        f"{math.ceil(longest / DAY_SECONDS) + 1}.",
                        warning=True,
                    )
                )
        if contradictory(self._seen.values()) and not contradictory(self.prior.values()):
            notes.append(
                Note(
                    "conversations: the API returned conversations that started before their "
                    "window and others last active after it; no single field explains both, "
                    "so incremental runs keep re-reading recent conversations. Please report "
                    "it.",
                    warning=True,
                )
            )
        return notes

    def _outlasted(self, bot: str, reread: int) -> int | None:
        """The longest conversation of ``bot``, if this run found one longer than any before
        and than ``reread`` seconds (its whole re-read, lookback included) under a reading
        that needs a re-read: one as long that changed after an earlier run's export may
        have been missed. Learnt durations grow with the data, so a short history can fall
        short."""
        if self.reading(prior=True) == "lastActionAt":
            return None
        longest = self.seen(bot).longest_open_seconds
        before = self.prior.get(bot, Seen()).longest_open_seconds
        if longest is None or longest <= reread or (before is not None and longest <= before):
            return None
        return longest


def duration_text(seconds: int) -> str:
    """A duration for people: days, hours or minutes."""
    if seconds >= DAY_SECONDS:
        return f"{seconds / DAY_SECONDS:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} hours"
    return f"{math.ceil(seconds / 60)} minutes"
