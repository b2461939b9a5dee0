"""Window arithmetic: which export windows a run asks for. Pure: no I/O, no clock.

Windows are planned one at a time, sized to the data (:class:`WindowPlanner`): they grow
while they come back light, up to ``max_window_days``, and shrink when dense, so that a busy
bot still has several windows in flight. The API's own longest window is learnt from its
answers (:class:`WindowLimit`).

A window is half-open, ``[start, end)`` in Unix seconds, and windows tile the export range
without gaps. The API does not say whether its ``start_time``/``end_time`` bounds are
inclusive or exclusive, so each request starts one second early: ``(start - 1, end)``
contains ``[start, end)`` under every reading. The overlap this adds at an edge is dropped
by id (see :class:`RecentIds`), and the bookmark after a window is its ``end``: every record
timed before it has been emitted.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

# Requests start this many seconds before the window, in case the API excludes start_time.
EDGE_OVERLAP_SECONDS = 1


@dataclass(frozen=True, order=True)
class Window:
    """The export window ``[start, end)`` in Unix seconds."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError(f"empty window [{self.start}, {self.end})")

    @property
    def length(self) -> int:
        return self.end - self.start

    @property
    def request_bounds(self) -> tuple[int, int]:
        """``start_time`` and ``end_time`` to send so that no reading of the bounds loses data."""
        return self.start - EDGE_OVERLAP_SECONDS, self.end


def resume_from(start_date: int, bookmark: int | None, lookback: int) -> int:
    """Where a run starts: ``start_date`` on a first run, else ``lookback`` seconds before the
    bookmark (to pick up records that reached the archive late), never before ``start_date``."""
    if bookmark is None:
        return start_date
    return max(start_date, bookmark - lookback)


def halves(window: Window) -> tuple[Window, Window]:
    """The two halves of a window at least two seconds long, earlier half first."""
    middle = window.start + (window.end - window.start) // 2
    return Window(window.start, middle), Window(middle, window.end)


# Adaptive lengths. A window is the unit of paging (pages of one window come one after the
# other, since each needs the previous cursor), so a dense bot needs several windows to keep
# requests in flight, while a quiet one wants the longest window: each costs a request.
PAGES_PER_WINDOW = 4  # records per window aimed at, in pages, while the cursor is followed
# ... a little under whole pages: counts vary from window to window, and a window just over
# a whole number of pages costs a request for a few records.
WHOLE_PAGES_MARGIN = 0.9
SPLIT_TARGET_FRACTION = 0.5  # ... and in pages when it is not: stay well under a full page
# A window is at most this many times longer than the last one that reported: enough for a
# first day to grow to a month at once, while a minutes-long window grows in steps.
MAX_GROWTH = 64
MIN_WINDOW_SECONDS = 60


def next_length(
    length: int,
    *,
    observed_seconds: int,
    observed_records: int,
    target_records: float,
    shortest: int,
    longest: int,
) -> int:
    """The next window's length, from how many records a finished window of
    ``observed_seconds`` held: the length that would hold ``target_records`` at that density,
    growing by at most ``MAX_GROWTH`` (a light window may be luck) and shrinking at once.
    One record is added to the count so that an empty window grows by a bounded factor."""
    density = (observed_records + 1) / max(observed_seconds, 1)
    wanted = int(target_records / density)
    return max(shortest, min(longest, wanted, length * MAX_GROWTH))


class WindowPlanner:
    """Plans one bot's windows of one stream, from ``start`` to ``stop``, one at a time.

    The first window is ``first_length`` long. Each finished window reports its record count
    (:meth:`observe`) and later windows are sized to it. A window longer than any that has
    reported, or shown to hold more than a page (:meth:`dense`), is planned only when none
    is in flight: growing is one step at a time (a guess could be far off), while shorter
    windows are planned many at once. Windows tile the
    range in order whatever order they finish in.
    """

    def __init__(self, start: int, stop: int, *, first_length: int, longest: int) -> None:
        if first_length <= 0 or longest <= 0:
            raise ValueError("window lengths must be positive")
        self.start = self.next_start = start
        self.stop = stop
        self.length = min(first_length, longest)
        self.longest = longest
        self.proven = 0  # the longest window that has reported or shown to be dense
        self.reported = False
        self.in_flight = 0

    @property
    def done(self) -> bool:
        """True once every window up to ``stop`` has been planned."""
        return self.next_start >= self.stop

    @property
    def ready(self) -> bool:
        """True when a next window can be planned now."""
        return not self.done and (self.in_flight == 0 or self.length <= self.proven)

    def next_window(self, longest: int | None = None) -> Window:
        """The next window. ``longest`` lowers the length limit (the API's own limit, once
        learnt). A window leaves no remainder shorter than half its length: the remainder is
        joined to it, so a daily run of one day plus the lookback costs one window."""
        if self.done:
            raise ValueError("no window left to plan")
        limit = min(self.longest, longest) if longest else self.longest
        length = min(self.length, limit)
        end = min(self.next_start + length, self.stop)
        if self.stop - end < length // 2 and self.stop - self.next_start <= limit:
            end = self.stop
        window = Window(self.next_start, end)
        self.next_start = end
        self.in_flight += 1
        return window

    def dense(self, window: Window) -> None:
        """A window in flight already holds more than a page: windows as long as it will not
        come back light, so they may be planned before it reports; and, until a window
        reports how many records it held (the first window's length is a guess), half as
        long, so that many pages are not left to be fetched one after the other in a few
        long windows."""
        self.proven = max(self.proven, window.length)
        if not self.reported:
            self.length = max(MIN_WINDOW_SECONDS, min(self.length, window.length // 2))

    def observe(self, window: Window, records: int, *, target_records: float) -> None:
        """A planned window finished with ``records`` records."""
        self.in_flight -= 1
        self.reported = True
        self.proven = max(self.proven, window.length)
        self.length = next_length(
            self.length,
            observed_seconds=window.end - window.start,
            observed_records=records,
            target_records=target_records,
            shortest=MIN_WINDOW_SECONDS,
            longest=self.longest,
        )


def target_records(per_page: int, *, cursor_followed: bool) -> float:
    """Records a window should hold: a few pages while the API's cursor is followed; when it
    cannot be, less than one page, so that windows need no split."""
    if cursor_followed:
        return PAGES_PER_WINDOW * per_page * WHOLE_PAGES_MARGIN
    return SPLIT_TARGET_FRACTION * per_page


class RecentIds:
    """Ids seen in the current and the previous window, each with the newest time seen, to
    keep the newest copy of a record the API sent more than once (fetched twice at a shared
    edge, or changed between two windows) while keeping memory bounded by two windows.

    Times are compared as strings: the stream's fixed-width RFC 3339 times sort as times.
    """

    FIRST = 2  # never seen: emit it
    NEWER = 1  # newer than the copy emitted before: emit it, it supersedes that one
    SAME = 0  # as old as the newest copy seen: drop it
    OLDER = -1  # older than a copy seen: drop it

    def __init__(self) -> None:
        self._previous: dict[Hashable, str] = {}
        self._current: dict[Hashable, str] = {}

    def add(self, key: Hashable, time: str) -> int:
        """Record a copy of ``key`` timed ``time``; which of FIRST, NEWER, SAME or OLDER it is.
        A copy is to be emitted when the answer is positive."""
        seen = self._current.get(key)
        if seen is None:
            seen = self._previous.get(key)
            if seen is None:
                self._current[key] = time
                return self.FIRST
        if time > seen:
            self._current[key] = time
            return self.NEWER
        return self.SAME if time == seen else self.OLDER

    def next_window(self) -> None:
        """Forget the older window's ids when a new window begins."""
        self._previous, self._current = self._current, {}


class WindowLimit:
    """The longest window the API accepts, learnt from its answers (it is not documented).

    Windows up to ``trusted`` seconds (``window_hours``) are assumed accepted: a rejection
    of one is the request's fault, not the length's. A longer window the API rejects is
    halved and asked again; the limit becomes half the shortest length rejected, which
    is what the halves then prove accepted.
    """

    def __init__(self, trusted: int) -> None:
        self.trusted = trusted
        self.longest: int | None = None  # None: no rejection seen, no limit known
        self.rejected_length: int | None = None
        self._reported = False

    def may_halve(self, length: int) -> bool:
        """Whether a rejected window of ``length`` seconds is worth halving."""
        return length > self.trusted

    def reject(self, length: int) -> None:
        """The API rejected a window of ``length`` seconds (longer than ``trusted``)."""
        if self.rejected_length is None or length < self.rejected_length:
            self.rejected_length = length
            self.longest = max(self.trusted, length // 2)

    def accept(self, length: int) -> bool:
        """The API accepted a window of ``length`` seconds. True exactly once: when a length
        at the limit learnt from a rejection is first accepted, which is worth reporting."""
        if self._reported or self.longest is None or length < self.longest:
            return False
        self._reported = True
        return True
