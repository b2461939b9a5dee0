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
seen. Until the field is known (or when the answers contradict each other) the tap re-reads
as under ``startTime``: a few days of conversation pages, where not re-reading would leave
changed conversations stale without a word.

What was seen is kept per bot in the conversations stream's state, beside the bookmark and
written with it, so it never covers a record not yet emitted.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from tap_deepconverse.timestamps import TimestampError, epoch_microseconds

# The key of a bot's conversations state that holds what its conversations showed.
STATE_KEY = "conversations_seen"
DAY_SECONDS = 86_400
# Learnt re-reads go back at most this far: beyond it, a few long conversations would cost
# every run many days of pages. conversation_reread_days overrides it.
LEARNT_REREAD_CAP_DAYS = 7

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

    def merged(self, other: Seen) -> Seen:
        known = [
            v for v in (self.longest_open_seconds, other.longest_open_seconds) if v is not None
        ]
        return Seen(
            longest_open_seconds=max(known) if known else None,
            started_before_window=self.started_before_window or other.started_before_window,
            active_after_window=self.active_after_window or other.active_after_window,
        )

    def to_state(self) -> dict[str, object]:
        return {
            "longest_open_seconds": self.longest_open_seconds,
            "started_before_window": self.started_before_window,
            "active_after_window": self.active_after_window,
        }

    @classmethod
    def from_state(cls, value: object) -> Seen:
        """The value kept in a state (``ValueError`` if :func:`state_problem` finds one)."""
        problem = state_problem(value)
        if problem is not None:
            raise ValueError(problem)
        assert isinstance(value, dict)
        return cls(
            longest_open_seconds=value.get("longest_open_seconds"),
            started_before_window=value.get("started_before_window", False),
            active_after_window=value.get("active_after_window", False),
        )


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
    *, reading: Reading | None, longest_open_seconds: int | None, setting_days: int | None
) -> int:
    """How far before the bookmark, on top of the lookback, a run re-reads a bot's
    conversations: nothing when the window filters on lastActionAt; else
    ``conversation_reread_days`` when set, or how long the bot's conversations stay open,
    at most ``LEARNT_REREAD_CAP_DAYS`` (that cap while nothing is known)."""
    if reading == "lastActionAt":
        return 0
    if setting_days is not None:
        return setting_days * DAY_SECONDS
    cap = LEARNT_REREAD_CAP_DAYS * DAY_SECONDS
    return cap if longest_open_seconds is None else min(longest_open_seconds, cap)


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


class ConversationWatch:
    """What the conversations of each bot have shown: as the state said at the start of the
    run, and what this run's records add. Used from the conversations stream's thread."""

    def __init__(self, prior: Mapping[str, Seen]) -> None:
        self.prior = dict(prior)
        self._seen = dict(prior)

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

    def seen(self, bot: str) -> Seen:
        return self._seen.get(bot, Seen())

    def reading(self, *, prior: bool = False) -> Reading | None:
        """The filter field from every bot, at the start of the run or now."""
        return filter_reading((self.prior if prior else self._seen).values())

    def contradictory(self) -> bool:
        return contradictory(self._seen.values())

    def reread_seconds(self, bot: str, setting_days: int | None) -> int:
        """This run's re-read for ``bot``, from what the state said at the start of the run."""
        return reread_seconds(
            reading=self.reading(prior=True),
            longest_open_seconds=self.prior.get(bot, Seen()).longest_open_seconds,
            setting_days=setting_days,
        )
