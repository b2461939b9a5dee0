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

import itertools
import math
from collections.abc import Hashable, Sequence
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
# A window is at most this many times longer than the last one that reported: records give
# a density to go by (a window that turns out dense costs one request: it is cut into
# pieces), while an empty window says little about the range after it, so growth after one
# is earned step by step (a day, then 8 days, then a month).
MAX_GROWTH = 64
MAX_GROWTH_EMPTY = 8
# A window at most this much longer than the longest shown complete is cut to that length.
NEAR_COMPLETE = 0.9
MIN_WINDOW_SECONDS = 60
RECENT_WEIGHT = 0.5  # the density is a sum of recent windows' counts, each earlier one halved
# Pages one window may fetch one after the other (each needs the previous cursor); a window
# found to hold more is fetched as shorter windows in parallel instead.
MAX_CHAINED_PAGES = 4.5
# Pieces a dense window is cut into when nothing tells how dense it is (the API's order is
# not by time and no earlier window of the bot reported a count): pieces dense again are cut
# again, so a window of any size ends in pieces of a few pages.
BLIND_PIECES = 4
MAX_PIECES = 64


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
    growing by at most ``MAX_GROWTH`` (``MAX_GROWTH_EMPTY`` after an empty window) and
    shrinking at once.
    One record is added to the count so that an empty window grows by a bounded factor."""
    density = (observed_records + 1) / max(observed_seconds, 1)
    wanted = int(target_records / density)
    growth = MAX_GROWTH if observed_records else MAX_GROWTH_EMPTY
    return max(shortest, min(longest, wanted, length * growth))


class WindowPlanner:
    """Plans one bot's windows of one stream, from ``start`` to ``stop``, one at a time.

    The first window is ``first_length`` long. Each finished window reports its record count
    (:meth:`observe`) and later windows are sized to it. A window longer than any that has
    reported, or shown to hold more than a page (:meth:`dense`), is planned only when none
    is in flight: growing is one step at a time (a guess could be far off), while shorter
    windows are planned many at once. Windows tile the
    range in order whatever order they finish in.
    """

    def __init__(
        self,
        start: int,
        stop: int,
        *,
        first_length: int,
        longest: int,
        density: float | None = None,
    ) -> None:
        if first_length <= 0 or longest <= 0:
            raise ValueError("window lengths must be positive")
        self.start = self.next_start = start
        self.stop = stop
        self.length = min(first_length, longest)
        self.longest = longest
        self.proven = 0  # the longest window that has reported or shown to be dense
        self.reported = False
        self.in_flight = 0  # planned windows not yet finished or replaced by pieces
        # Records a second in the last windows reported (or in an earlier run's).
        self.density = density
        self._records = 0.0
        self._seconds = 0.0

    @property
    def all_planned(self) -> bool:
        """True once every window up to ``stop`` has been planned."""
        return self.next_start >= self.stop

    @property
    def ready(self) -> bool:
        """True when a next window can be planned now."""
        return not self.all_planned and (self.in_flight == 0 or self.length <= self.proven)

    def next_window(self, longest: int | None = None, *, complete: int = 0) -> Window:
        """The next window. ``longest`` lowers the length limit (the API's own limit, once
        learnt). A window little longer than ``complete`` (the longest the API has shown to
        answer completely) is shortened to it, as a longer one costs a check. A window
        leaves no remainder shorter than half its length: the remainder is joined to it, so
        a daily run of one day plus the lookback costs one window."""
        if self.all_planned:
            raise ValueError("no window left to plan")
        limit = min(self.longest, longest) if longest else self.longest
        length = min(self.length, limit)
        if complete < length <= complete / NEAR_COMPLETE:
            length = complete
        end = min(self.next_start + length, self.stop)
        if self.stop - end < length // 2 and self.stop - self.next_start <= limit:
            end = self.stop
        window = Window(self.next_start, end)
        self.next_start = end
        self.in_flight += 1
        return window

    def note_dense(self, window: Window) -> None:
        """A window in flight already holds more than a page: windows as long as it will not
        come back light, so they may be planned before it reports; and, until a window
        reports how many records it held (the first window's length is a guess), half as
        long, so that many pages are not left to be fetched one after the other in a few
        long windows."""
        self.proven = max(self.proven, window.length)
        if not self.reported:
            self.length = max(MIN_WINDOW_SECONDS, min(self.length, window.length // 2))

    def replaced(self, window: Window) -> None:
        """A planned window is fetched as pieces instead (each reports as it finishes)."""
        self.in_flight -= 1
        self.note_dense(window)

    def observe(
        self, window: Window, records: int, *, target_records: float, planned: bool = True
    ) -> None:
        """A window finished with ``records`` records: one this planner planned, or a piece
        of one (``planned`` False), which was never counted in flight."""
        if planned:
            self.in_flight -= 1
        self.reported = True
        # Recent windows weigh more, but not one alone: pieces cut at a sample's quantiles
        # vary in density by design.
        self._records = self._records * RECENT_WEIGHT + records
        self._seconds = self._seconds * RECENT_WEIGHT + window.length
        self.density = self._records / self._seconds
        self.proven = max(self.proven, window.length)
        self.length = next_length(
            self.length,
            observed_seconds=round(self._seconds),
            observed_records=round(self._records),
            target_records=target_records,
            shortest=MIN_WINDOW_SECONDS,
            longest=self.longest,
        )


def dense_pieces(
    window: Window,
    sample: Sequence[int],
    *,
    per_page: int,
    prior_density: float | None,
) -> list[Window] | None:
    """The pieces to fetch in parallel instead of a window whose first page (``sample``: its
    records' times in the order served, Unix seconds) came with a cursor; None when the
    window holds few enough pages to follow its cursor.

    How many records the window holds is estimated from what tells: the page itself when
    the API serves in time order (its span covers a known share of the window), else the
    bot's last reported density, else nothing (:data:`BLIND_PIECES`). Pieces are cut at the
    sample's quantiles when it is a sample of the whole window, so that each holds about as
    many records wherever in the window they are; evenly over the part the records are in
    when it is in time order."""
    inside = sorted(t for t in sample if window.start - EDGE_OVERLAP_SECONDS <= t <= window.end)
    if len(inside) < 2:
        return None  # no times to go by: the cursor still gets every record
    first_time, last_time = inside[0], inside[-1]
    ascending = list(sample) == inside
    descending = list(sample) == inside[::-1]
    if ascending or descending:
        covered = max(last_time - first_time, 1)
        rest = window.end - first_time if ascending else last_time + 1 - window.start
        records = len(sample) * max(rest, covered) / covered
    elif prior_density:
        records = prior_density * window.length
    else:
        records = BLIND_PIECES * PAGES_PER_WINDOW * WHOLE_PAGES_MARGIN * per_page
    pages = max(records / per_page, 2.0)  # a cursor came: more than one page
    if pages <= MAX_CHAINED_PAGES:
        return None
    count = min(MAX_PIECES, math.ceil(pages / (PAGES_PER_WINDOW * WHOLE_PAGES_MARGIN)))
    if ascending:
        cuts = _even_cuts(max(first_time, window.start), window.end, count)
    elif descending:
        cuts = _even_cuts(window.start, min(last_time + 1, window.end), count)
    else:
        cuts = [inside[len(inside) * i // count] for i in range(1, count)]
    return _tile(window, cuts) or _even(window, 2)


def chain_rest(
    window: Window, times: Sequence[int], *, per_page: int
) -> tuple[int, list[Window]] | None:
    """A window whose cursor chain has gone :data:`MAX_CHAINED_PAGES` pages and goes on: when
    the API serves it in time order (``times``: the records' times as served), the part not
    yet served is a range of its own, fetched as pieces instead. Returns the time up to which
    the window's records are all out, and the pieces; None when the order is not by time.
    The density seen so far sizes the pieces."""
    if len(times) < 2:
        return None
    ordered = sorted(times)
    if list(times) == ordered:
        done, rest = times[-1], Window(max(times[-1], window.start), window.end)
    elif list(times) == ordered[::-1]:
        done, rest = window.start, Window(window.start, min(times[-1] + 1, window.end))
    else:
        return None
    if rest.length < 2:
        return None
    density = len(times) / max(ordered[-1] - ordered[0], 1)
    pages = density * rest.length / per_page
    count = min(MAX_PIECES, max(2, math.ceil(pages / (PAGES_PER_WINDOW * WHOLE_PAGES_MARGIN))))
    return max(done, window.start), _even(rest, count) or [rest]


def _even_cuts(start: int, end: int, count: int) -> list[int]:
    return [start + (end - start) * i // count for i in range(1, count)]


def _even(window: Window, count: int) -> list[Window]:
    return _tile(window, _even_cuts(window.start, window.end, count))


def _tile(window: Window, cuts: Sequence[int]) -> list[Window]:
    """The pieces of ``window`` between the cut points strictly inside it (duplicates
    dropped); empty when there is none."""
    points = sorted({c for c in cuts if window.start < c < window.end})
    if not points:
        return []
    edges = [window.start, *points, window.end]
    return [Window(a, b) for a, b in itertools.pairwise(edges)]


def pieces_within(window: Window, longest: int) -> list[Window]:
    """Equal pieces of ``window``, each at most ``longest`` seconds long."""
    count = math.ceil(window.length / max(longest, 1))
    return _even(window, count) if count > 1 else [window]


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
        self._held: dict[Hashable, str] = {}

    def add(self, key: Hashable, time: str) -> int:
        """Record a copy of ``key`` timed ``time``; which of FIRST, NEWER, SAME or OLDER it is.
        A copy is to be emitted when the answer is positive."""
        seen = self._current.get(key)
        if seen is None:
            seen = self._previous.get(key, self._held.get(key))
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

    def hold(self) -> None:
        """Keep the current window's ids until :meth:`release`: the pieces that fetch the
        rest of it may meet its records at their far end, several windows later."""
        self._held.update(self._current)

    def release(self) -> None:
        self._held = {}


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
