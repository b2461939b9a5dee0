"""Window arithmetic: which export windows a run asks for. Pure: no I/O, no clock.

Windows are planned one at a time, sized to the data (:class:`WindowPlanner`): they grow
while they come back light, up to ``max_window_days``, and shrink when dense, so that a busy
bot still has several windows in flight. Before a bot's first record (a ``start_date`` set
long before it), windows grow up to the length the API has shown to answer completely, and
where the records begin the windows start over as from the first record. A bot's rest of the
range that its windows show to hold less than a window aims at is one window, however long.
The API's own longest window is learnt from its answers (:class:`WindowLimit`).

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
from collections import deque
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
# A density is the records a second of the reported windows nearest in time to where it is
# wanted, as many as span a day: traffic has busy hours and quiet ones, and pieces cut at a
# sample's quantiles vary in density by design.
DENSITY_SPAN_SECONDS = 86_400
RECENT_OBSERVATIONS = 32
# Pages one window may fetch one after the other (each needs the previous cursor); a window
# found to hold more is fetched as shorter windows in parallel instead.
MAX_CHAINED_PAGES = 4.5
# A dense window whose count nothing tells (records in no time order, no window of the bot
# reported yet) is cut in two: a scout, from its start to the time before which its first
# page holds this share of its records, and the rest. The rest is not asked before the
# scout has reported: as many records as the scout, times the ratio of their shares in the
# page (a random sample of the window), whatever their times.
SCOUT_SHARE = 1 / 16
MAX_PIECES = 64
# A piece cut at a sample's quantiles holds its share of the records give or take about
# 1/sqrt of the sample's times in it. With fewer than this many times a piece, pieces aim
# at fewer pages, so that one holding twice its share is still a short chain.
MIN_SAMPLE_PER_PIECE = 8
SAMPLED_PAGES_PER_WINDOW = 3
# Pages a chain in no time order goes before its window is fetched again around a scout:
# windows are sized to hold fewer, and those served in no order vary.
MAX_UNORDERED_CHAIN = 12


def padded_density(records: float, seconds: int) -> float:
    """Records a second, one record added to the count: a few records, or none, must not
    promise an empty range (a window sized by it grows by a bounded factor)."""
    return (records + 1) / max(seconds, 1)


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
    shrinking at once (the density is padded: see :func:`padded_density`)."""
    density = padded_density(observed_records, observed_seconds)
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
        self.first_length = first_length
        self.length = min(first_length, longest)
        self.longest = longest
        self.proven = 0  # the longest window that has reported or shown to be dense
        self.reported = False
        self.dense_seen = False  # a window held more than a page (the lead-in is over)
        self.started_over: Window | None = None  # the lead-in window they started over in
        self.newest_first = False  # ... whose first page was served newest first
        self.restarted_at: int | None = None  # ... and where they started over
        # ... and the earliest time its window's first page held: a window's length counts
        # from there (the range before it holds no more than the sample missed).
        self.records_from: int | None = None
        self.in_flight = 0  # planned windows not yet finished or replaced by pieces
        self._target = 0.0  # the records a window aims at, as the last report was given
        self._prior_density = density  # an earlier run's, until this run's windows report
        self._observed: deque[tuple[Window, float]] = deque(maxlen=RECENT_OBSERVATIONS)
        self._scouted: set[Window] = set()  # observed windows whose count a scout estimated
        self._first_record: int | None = None  # the earliest record time reported yet
        # Scouts by their own window and by their rest's; a scout's count once it reported
        # (None when it was cut into pieces that tell nothing); and the scout a scout's
        # window was itself scouted for, whose count follows from it.
        self._scouts: dict[Window, Scout] = {}
        self._rests: dict[Window, Scout] = {}
        self._scout_counts: dict[Window, float | None] = {}
        self._scouted_for: dict[Window, Scout] = {}

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
        if self.in_lead_in:
            # Nothing is paged in an empty range: a window as long as the API has shown to
            # answer completely costs one request, whatever it spans.
            reach = min(complete, longest) if longest else complete
            if reach > length:
                length = limit = reach
        elif self._rest_is_light(longest):
            length = limit = self.stop - self.next_start
        end = min(max(self.next_start, self.records_from or 0) + length, self.stop)
        if self.stop - end < length // 2 and self.stop - self.next_start <= limit:
            end = self.stop
        window = Window(self.next_start, end)
        self.next_start = end
        self.in_flight += 1
        return window

    def _rest_is_light(self, longest: int | None) -> bool:
        """True when the rest of the range, from where the next window starts, is expected to
        hold no more records than a window aims at: it is then asked as one window, however
        long, as windows of ``longest`` would cost a request each for a few records. The
        density is padded as for a window's length. The API's own limit, once learnt, still
        holds; a length not yet shown complete is checked like any other."""
        rest = self.stop - self.next_start
        near = self._near(self._frontier)
        if self.before_first_records or not near or (longest and rest > longest):
            return False
        records = sum(count for _, count in near)
        return padded_density(records, sum(w.length for w, _ in near)) * rest <= self._target

    def note_dense(self, window: Window) -> None:
        """A window in flight already holds more than a page: windows as long as it will not
        come back light, so they may be planned before it reports; and, until a window
        reports how many records it held (the first window's length is a guess), half as
        long, so that many pages are not left to be fetched one after the other in a few
        long windows."""
        if self._before_restart(window):
            return
        self.proven = max(self.proven, self._span(window))
        self.dense_seen = True
        if not self.reported:
            self.length = max(MIN_WINDOW_SECONDS, min(self.length, self._span(window) // 2))

    def _span(self, window: Window) -> int:
        """A window's length from where the bot's records begin, if it starts before."""
        return window.end - max(window.start, self.records_from or 0)

    def replaced(self, window: Window, *, planned: bool = True) -> None:
        """A window is fetched as pieces instead (each reports as it finishes)."""
        if window not in {outer.window for outer in self._scouted_for.values()}:
            self._settle_scout(window, None)
        if planned:
            self.in_flight -= 1
            if window != self.started_over and not self._before_restart(window):
                self.note_dense(window)

    def may_hold_first_record(self, window: Window) -> bool:
        """True when ``window`` starts before the earliest record reported yet (or none has
        been): its records' times may show where the bot's records begin."""
        return self._first_record is None or window.start < self._first_record

    def records_begin(self, window: Window, sample: Sequence[int]) -> int | None:
        """A window planned in the lead-in came back with a cursor (``sample``: its first
        page's times in the order served): the bot's records begin in it. This planner's
        windows start over from the window's start, as a run that starts at the bot's first
        record: sized as they report, not cut by one page's sample, their lengths counted
        from the earliest time on the page (the empty range before it costs nothing, and
        the records a page in no order missed before it are in the first window). Served
        newest first, the page tells nothing of where the records begin: the lead-in goes on
        in windows of ``longest`` from the window's start, and the part before that is
        fetched as a window of its own. Returns where that part ends (the window's start
        when there is none); None when this does not apply."""
        if not (self.in_lead_in and self.in_flight == 1 and window.end == self.next_start):
            return None
        served = [t for t in sample if window.start <= t < window.end]
        inside = sorted(served)
        if len(inside) < 2:
            return None
        self.dense_seen = True  # the lead-in is over: no window after this one is as long
        if not _newest_first(served, inside):
            self.started_over = window
            self._start_over(window.start, inside[0])
            return window.start
        begin = window.start + self.longest
        if begin >= window.end:
            return None
        self.length = self.proven = self.longest
        self.newest_first = True
        self.started_over = window
        self.next_start = self.restarted_at = begin
        return begin

    def may_begin_in(self, window: Window) -> bool:
        """True when the bot's records may begin inside ``window`` (it starts before the
        earliest record reported yet) where the lead-in showed them served newest first:
        its first page then shows where they end, not where they begin."""
        return self.newest_first and self.may_hold_first_record(window)

    def records_ahead(self, window: Window, sample: Sequence[int]) -> None:
        """``window``, the lead-in's last, came back empty, and a probe of the rest of the
        range found more than a page (``sample``: its first page's times in the order
        served): the windows start over after ``window`` as from the bot's first record,
        as :meth:`records_begin` does for a window of the lead-in that holds them, without
        asking the rest as a window first. Served newest first, the page tells nothing of
        where the records begin, and the lead-in goes on."""
        if not (
            self.before_first_records
            and not self.dense_seen
            and self.in_flight == 1
            and window.end == self.next_start
        ):
            return
        served = [t for t in sample if window.end <= t < self.stop]
        inside = sorted(served)
        if len(inside) < 2 or _newest_first(served, inside):
            return
        self.dense_seen = True
        self._start_over(window.end, inside[0])

    def _start_over(self, begin: int, records_from: int) -> None:
        """The windows start over at ``begin`` as from the bot's first record, sized as
        they report, their lengths counted from ``records_from`` (the earliest time a page
        showed)."""
        self.length = min(self.first_length, self.longest)
        self.records_from = records_from
        self.proven = 0
        self.reported = False
        self._observed.clear()
        self.next_start = self.restarted_at = begin

    def _before_restart(self, window: Window) -> bool:
        """True for a window of the lead-in, before where the windows started over."""
        return self.restarted_at is not None and window.start < self.restarted_at

    @property
    def in_lead_in(self) -> bool:
        """True while every window reported so far came back empty and none held more than
        a page: the range so far lies before the bot's first record."""
        return self.reported and not self.dense_seen and self.before_first_records

    @property
    def before_first_records(self) -> bool:
        """True until a window with records has reported: the range so far is a lead-in."""
        return not any(count for _, count in self._observed)

    def observe(
        self,
        window: Window,
        records: int,
        *,
        target_records: float,
        planned: bool = True,
        first_record: int | None = None,
    ) -> None:
        """A window finished with ``records`` records: one this planner planned, or a piece
        of one (``planned`` False), which was never counted in flight. ``first_record``:
        the earliest time among them, if known."""
        if planned:
            self.in_flight -= 1
        if self._before_restart(window):
            # The range before where the windows started over tells nothing of the records
            # after it; a scout's count there still tells its rest's, which waits for it.
            self._settle_scout(window, records)
            return
        self.reported = True
        self._target = target_records
        if first_record is not None and records:
            known = self._first_record
            self._first_record = first_record if known is None else min(known, first_record)
        whole = self._settle_scout(window, records)
        seen = whole or (window, records)
        if seen[1] and self.before_first_records:
            # The first records: the empty range before them (a start_date set before the
            # bot's first record) says nothing of the density from here on, and neither
            # does the empty part of the window that holds them.
            self._observed.clear()
            seen_window = seen[0]
            if first_record is not None and seen_window.start < first_record < seen_window.end:
                seen = (Window(first_record, seen_window.end), seen[1])
        self._observed.append(seen)
        if whole is not None:
            self._scouted.add(seen[0])
        self._scouted &= {w for w, _ in self._observed}
        self.proven = max(self.proven, self._span(window))
        near = self._near(self._frontier)
        self.length = next_length(
            self.length,
            observed_seconds=sum(w.length for w, _ in near),
            observed_records=round(sum(count for _, count in near)),
            target_records=target_records,
            shortest=MIN_WINDOW_SECONDS,
            longest=self.longest,
        )

    def note_scout(self, scout: Scout) -> None:
        """A window was cut around a scout: its count will tell the rest's."""
        self._scouts[scout.window] = scout
        self._rests[scout.rest] = scout
        outer = self._scouts.get(Window(scout.window.start, scout.rest.end))
        if outer is not None and outer.window not in self._scout_counts:
            self._scouted_for[scout.window] = outer  # a scout itself too dense to tell

    def scout_pending(self, window: Window) -> bool:
        """True while ``window`` is the rest of a scout that has not yet reported."""
        scout = self._rests.get(window)
        return scout is not None and scout.window not in self._scout_counts

    def known_pieces(self, window: Window, per_page: int) -> list[Window] | None:
        """The pieces to fetch ``window`` as before asking it anything: it is the rest of a
        scout whose count shows it dense, or a piece of a window that the windows reported
        since it was cut show to hold more than a chain's worth (a piece is sized by an
        estimate, which they correct). None otherwise: a window this planner planned is
        sized by the same densities, and a scout is asked for its count."""
        scout = self._rests.get(window)
        if scout is not None:
            count = self._scout_counts.get(scout.window)
            return None if count is None else scout.rest_pieces(count, per_page)
        if window in self._scouts:
            return None
        # Before the bot's earliest record yet seen, the windows after it say nothing (the
        # range before a bot's first record is empty).
        first = self._first_record
        start = window.start if first is None else max(window.start, first)
        density = self.density_near(window)
        if density is None or start >= window.end:
            return None
        pages = density * (window.end - start) / per_page
        if pages <= MAX_CHAINED_PAGES:
            return None
        return _tile(window, _even_cuts(start, window.end, _piece_count(pages))) or None

    def expected_records(self, window: Window) -> float | None:
        """How many records ``window`` holds, as far as other windows tell: its scout's
        count times the ratio of their shares (None if the scout was cut), else the density
        of its neighbours; None when nothing has reported."""
        scout = self._rests.get(window)
        if scout is not None:
            # A scout cut into pieces tells nothing: the rest is scouted in turn.
            count = self._scout_counts.get(scout.window)
            return None if count is None else count * scout.ratio
        density = self.density_near(window)
        return None if density is None else density * window.length

    def _settle_scout(self, window: Window, records: float | None) -> tuple[Window, float] | None:
        """Note a scout's count (None: it tells nothing). Returns the window it was cut from
        with the count that window is estimated to hold, for the density: the scout alone
        spans too few hours to tell it."""
        scout = self._scouts.get(window)
        if scout is None:
            return None
        self._scout_counts[window] = records
        whole = None
        if records is not None:
            whole = Window(scout.window.start, scout.rest.end), records * (1 + scout.ratio)
        outer = self._scouted_for.pop(window, None)
        if outer is not None:  # the window it was the scout of holds its count and its rest's
            return self._settle_scout(outer.window, None if whole is None else whole[1])
        return whole

    @property
    def density(self) -> float | None:
        """Records a second where the next window starts."""
        return self.density_near(self._frontier)

    def density_near(self, window: Window) -> float | None:
        """Records a second in the reported windows nearest ``window`` in time (densities
        change over a bot's history; a window's neighbours tell most of it), or an earlier
        run's density while none has reported."""
        near = self._near(window)
        if not near:
            return self._prior_density
        return sum(count for _, count in near) / sum(w.length for w, _ in near)

    @property
    def _frontier(self) -> Window:
        return Window(self.next_start - 1, self.next_start)

    def _near(self, window: Window) -> list[tuple[Window, float]]:
        """The reported windows nearest ``window`` in time, enough of them to span a day."""

        def distance(seen: tuple[Window, float]) -> int:
            gap = max(0, seen[0].start - window.end, window.start - seen[0].end)
            # A count a scout estimated (from a few records of a sample) counts as far again
            # as its window is long: the counts of its pieces supersede it as they report.
            return gap + (seen[0].length if seen[0] in self._scouted else 0)

        near: list[tuple[Window, float]] = []
        for seen in sorted(self._observed, key=distance):
            near.append(seen)
            if sum(w.length for w, _ in near) >= DENSITY_SPAN_SECONDS:
                break
        return near


@dataclass(frozen=True)
class Scout:
    """A dense window nothing told the count of, cut in two: ``window``, the scout, holds a
    share of its first page's records that tells the count of ``rest``: ``ratio`` times
    the scout's (the shares of a random sample are those of the whole)."""

    window: Window
    rest: Window
    ratio: float
    rest_sample: tuple[int, ...]  # the sample's times in the rest, sorted: where to cut it

    @property
    def pieces(self) -> list[Window]:
        return [self.window, self.rest]

    def rest_pieces(self, scout_count: float, per_page: int) -> list[Window] | None:
        """The pieces to fetch the rest as, before asking it anything, once the scout has
        counted ``scout_count`` records; None when it holds few enough pages to page."""
        pages = scout_count * self.ratio / per_page
        if pages <= MAX_CHAINED_PAGES:
            return None
        return _tile(self.rest, _quantile_cuts(self.rest_sample, pages)) or None


def dense_pieces(
    window: Window,
    sample: Sequence[int],
    *,
    per_page: int,
    prior_records: float | None,
    records_may_begin: bool = False,
) -> list[Window] | Scout | None:
    """The pieces to fetch in parallel instead of a window whose first page (``sample``: its
    records' times in the order served, Unix seconds) came with a cursor; None when the
    window holds few enough pages to follow its cursor.

    How many records the window holds is estimated from what tells. Served in time order:
    the page for its own span, and ``prior_records`` (from the bot's reported windows) for
    the rest, or while there is none, the page's density. In no order: ``prior_records``;
    when nothing tells (nothing reported yet, or a prior of less than half a page, which
    the cursor belies), a :class:`Scout` is cut off its start (see :data:`SCOUT_SHARE`).
    Pieces are cut at the sample's quantiles when it is a sample of the whole window, so
    that each holds about as many records wherever in the window they are; evenly over the
    part the records are in when it is in time order."""
    if window.length < 2:
        return None  # nothing to cut: the cursor still gets every record
    # Times past the window (a request asked past its end) are left out, order and all.
    served = [t for t in sample if window.start - EDGE_OVERLAP_SECONDS <= t <= window.end]
    inside = sorted(served)
    if len(inside) < 2:
        return None  # no times to go by: the cursor still gets every record
    first_time, last_time = inside[0], inside[-1]
    # Records all at one second show no order.
    ascending = first_time < last_time and served == inside
    descending = _newest_first(served, inside)
    # A prior of less than half a page is belied by the cursor: it is stale.
    prior = prior_records if prior_records is not None and prior_records >= per_page / 2 else None
    if (ascending or descending) and prior is not None:
        # The page holds its own span; the part it has not reached holds what the bot's
        # windows tell. One page's span is a poor guide to a window of a day (traffic
        # follows the hour), and a chain that outgrows this is cut where it stands.
        unseen = window.end - last_time if ascending else first_time - window.start
        records = len(served) + prior * max(unseen, 0) / window.length
    elif ascending or descending:
        covered = max(last_time - first_time, 1)
        rest = window.end - first_time if ascending else last_time + 1 - window.start
        records = len(served) * max(rest, covered) / covered
    elif prior is not None:
        records = prior
    else:  # nothing told, or what told is stale: the page already holds far more
        return scout_of(window, inside) or list(halves(window))
    pages = max(records / per_page, 2.0)  # a cursor came: more than one page
    if pages <= MAX_CHAINED_PAGES:
        return None
    if ascending:
        cuts = _even_cuts(max(first_time, window.start), window.end, _piece_count(pages))
    elif descending and records_may_begin:
        # Served newest first, where the records begin (``records_may_begin``) is not known:
        # pieces double in length back from the newest, so that an empty range before them
        # costs a few pieces, not one per piece's length.
        newest = min(last_time + 1, window.end)
        cuts = _doubling_cuts(window.start, newest, (newest - window.start) // _piece_count(pages))
    elif descending:
        cuts = _even_cuts(window.start, min(last_time + 1, window.end), _piece_count(pages))
    else:
        cuts = _quantile_cuts(inside, pages)
    return _tile(window, cuts) or _even(window, 2)


def scout_of(window: Window, ordered: Sequence[int]) -> Scout | None:
    """The :class:`Scout` of ``window`` by a sample of its records' times (sorted, all in
    the window); None when the sample cannot place one."""
    share = max(2, round(len(ordered) * SCOUT_SHARE))
    if share >= len(ordered) or not window.start < ordered[share] < window.end:
        return None
    end = ordered[share]
    ratio = (len(ordered) - share) / share
    return Scout(Window(window.start, end), Window(end, window.end), ratio, tuple(ordered[share:]))


@dataclass(frozen=True)
class ChainRest:
    """What replaces a window whose cursor chain went on too long: its records before
    ``done_until`` are out (none when it is the window's start), ``pieces`` fetch the rest,
    and the window is estimated to hold ``records`` in all."""

    done_until: int
    pieces: list[Window]
    records: float


def chain_rest(
    window: Window,
    times: Sequence[int],
    *,
    per_page: int,
    pages: int,
    last_latest: int | None = None,
) -> ChainRest | Scout | None:
    """A window whose cursor chain has gone :data:`MAX_CHAINED_PAGES` pages and goes on is
    fetched as pieces instead (``times``: its records' times as served, the earliest of
    each record's; ``last_latest``: the latest of the last record's, as the window may
    filter on any). Served in time
    order, the part not yet served is a range of its own, sized by the density seen so far.
    Served in no order, the pages so far are a sample of the whole window that says nothing
    of its count: past :data:`MAX_UNORDERED_CHAIN` pages the whole window is fetched again,
    around a :class:`Scout` placed by that sample. None when the chain goes on."""
    inside = sorted(t for t in times if window.start <= t < window.end)
    if len(inside) < 2:
        return None
    ordered = sorted(times)  # once: the chain's times grow with every page it goes on
    # Records all at one second show no order (served newest first, older ones may follow).
    spread = ordered[0] < ordered[-1]
    if spread and list(times) == ordered:
        done = min(max(times[-1], window.start), window.end)
        rest = (done, window.end)
    elif spread and list(times) == ordered[::-1]:
        done = window.start
        # Records yet to come are filtered in at no later time than the last one served.
        last = max(times[-1], last_latest if last_latest is not None else times[-1])
        rest = (window.start, min(max(last + 1, window.start), window.end))
    elif pages < MAX_UNORDERED_CHAIN:
        return None
    else:
        return scout_of(window, inside)
    if rest[1] - rest[0] < 2:
        return None  # nothing left worth cutting: the chain goes on
    density = len(inside) / max(inside[-1] - inside[0], 1)
    left = Window(*rest)
    pieces = _even(left, max(2, _piece_count(density * left.length / per_page))) or [left]
    return ChainRest(done, pieces, len(times) + density * left.length)


def _piece_count(pages: float) -> int:
    """Pieces to cut ``pages`` into, each of about :data:`PAGES_PER_WINDOW` pages."""
    return min(MAX_PIECES, math.ceil(pages / (PAGES_PER_WINDOW * WHOLE_PAGES_MARGIN)))


def _quantile_cuts(ordered: Sequence[int], pages: float) -> list[int]:
    """The points that cut a sorted sample of times into parts of equal counts, for pieces
    of a window of ``pages`` pages: as many as for any window, or more when that would leave
    each few of the sample's times (see :data:`MIN_SAMPLE_PER_PIECE`)."""
    count = _piece_count(pages)
    if len(ordered) < count * MIN_SAMPLE_PER_PIECE:
        count = min(MAX_PIECES, math.ceil(pages / SAMPLED_PAGES_PER_WINDOW))
    return [ordered[len(ordered) * i // count] for i in range(1, count)]


def _even_cuts(start: int, end: int, count: int) -> list[int]:
    return [start + (end - start) * i // count for i in range(1, count)]


def _newest_first(served: Sequence[int], inside: Sequence[int]) -> bool:
    """True when times as ``served`` (``inside``: the same, sorted) come newest first;
    times all at one second show no order."""
    return inside[0] < inside[-1] and list(served) == list(inside[::-1])


def _doubling_cuts(start: int, end: int, first: int) -> list[int]:
    """Cut points back from ``end`` to ``start``: a piece ``first`` seconds long, then each
    twice as long as the one after it; the oldest takes what is left (at least as long as
    the one after it, so no sliver is asked on its own)."""
    cuts: list[int] = []
    length = max(first, 1)
    edge = end
    while edge - length - start >= length:
        edge -= length
        cuts.append(edge)
        length *= 2
    return cuts


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
            # Known to this window either way: the next one may meet it again at their edge,
            # after what held it is released.
            self._current[key] = time if seen is None else max(seen, time)
            if seen is None:
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
        rest of it may meet its records at their far end, several windows later; and the
        previous window's, which its first piece borders."""
        self._held.update(self._previous)
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
