"""Fetching a window completely and quickly, whatever the API does with its cursor, its
page sizes and long windows.

A window's first answer decides how it is fetched:
- **Dense** (its first page has a cursor and the window holds more than a few pages, by the
  estimate of :func:`~tap_deepconverse.windows.dense_pieces`): the window is replaced by
  shorter pieces, fetched in parallel like any window; the first page is dropped (its
  records come again in the pieces). When nothing tells its count, the pieces are a
  :class:`~tap_deepconverse.windows.Scout` and its rest, which waits for the scout's count.
  A chain that goes on anyway is cut (:func:`~tap_deepconverse.windows.chain_rest`).
- **Dense before the bot's first record** (every window of the bot so far came back empty):
  the bot's windows start over from its start, sized as from its first record, counted
  from the earliest time its first page shows (:meth:`WindowPlanner.records_begin`).
- **Empty, the bot's first** (a ``start_date`` before its first record): once a run per
  endpoint, a look at the rest of the bot's range (:meth:`WindowFetcher.look_ahead`) may
  show long windows complete and where the records begin, so that the windows start over
  there at once (:meth:`WindowPlanner.records_ahead`).
- **Full with no cursor to follow**: the cursor may be under a key the tap does not know,
  so the window is replaced by its halves, recursively, until each fits a page. A page is
  full when it holds ``page_size`` records, or as many as the largest page the API has
  served while no cursor was seen (it may serve fewer than asked).
- **Rejected with HTTP 400** while longer than ``window_hours``: halved, and the length
  accepted becomes the limit for the run.
- **Longer than any window shown complete**: after its pages, the part of the window after
  its last record is asked on its own, in pieces no longer than what is known complete (a
  longer check could be cut as well). A long part is first met by a probe: the first page
  of the rest of the bot's range, whose records far into it show long windows complete
  for the run (an empty lead-in proves nothing by itself). A record that the long answer
  lacked shows that the API cuts long windows short with status 200: the length it
  answered completely becomes the limit, and what was cut is fetched again as pieces.
A window replaced by pieces ends with a :class:`WindowSplit`; the stream then writes no
bookmark for the part the pieces cover until they are written.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from http import HTTPStatus

import msgspec

from tap_deepconverse.client import CURSOR_KEY, ExportClient, Page, Query, WindowQueries
from tap_deepconverse.errors import IncompleteWindowError, RequestRejectedError
from tap_deepconverse.prefetch import Replaced
from tap_deepconverse.readings import ApiReadings, length_text
from tap_deepconverse.timestamps import epoch_microseconds
from tap_deepconverse.windows import (
    MAX_CHAINED_PAGES,
    MAX_UNORDERED_CHAIN,
    Scout,
    Window,
    WindowPlanner,
    chain_rest,
    dense_pieces,
    halves,
    pieces_within,
    target_records,
)

_MICROS = 1_000_000
# Longest a scout's rest waits for the scout's count (a few answers of a slow API); past it,
# the rest is scouted again itself.
SCOUT_WAIT_SECONDS = 60.0
# A window longer than any shown complete is asked past its end for about this many
# records at the density near it, and at most this share of its length further.
OVERHANG_RECORDS = 3
OVERHANG_SHARE = 1 / 8


@dataclasses.dataclass(frozen=True, order=True)
class WindowJob:
    """One window to fetch for one bot: planned by its planner, or a piece of one."""

    bot: str
    window: Window
    planned: bool = True


@dataclasses.dataclass(frozen=True)
class WindowSplit(Replaced[WindowJob]):
    """The rest of a window is fetched as ``jobs``: its records before ``done_until`` are
    out (none when it equals the window's start)."""

    done_until: int = 0


class WindowSource:
    """Plans the next window to fetch across bots: the first bot, in the order they are
    written, whose planner can plan one now."""

    def __init__(
        self, planners: dict[str, WindowPlanner], readings: ApiReadings, endpoint: str
    ) -> None:
        self.planners = planners
        self.readings = readings
        self.endpoint = endpoint
        # Also signalled when a window reports or is replaced: a scout's rest waits for it.
        self._lock = threading.Condition()
        self._unblocked = False

    def next_job(self, only: str | None = None) -> WindowJob | None:
        longest = self.readings.longest(self.endpoint)
        complete = self.readings.complete_length(self.endpoint)
        with self._lock:
            for bot, planner in self.planners.items():
                if (only is None or bot == only) and planner.ready:
                    window = planner.next_window(longest, complete=complete)
                    return WindowJob(bot, window)
            return None

    def all_planned(self, key: str) -> bool:
        with self._lock:
            return self.planners[key].all_planned

    def note_dense(self, job: WindowJob) -> None:
        with self._lock:
            planner = self.planners[job.bot]
            ready = planner.ready
            planner.note_dense(job.window)
            # Windows as long need not wait for this one to end.
            self._unblocked = self._unblocked or (planner.ready and not ready)

    def unblocked(self) -> bool:
        with self._lock:
            unblocked, self._unblocked = self._unblocked, False
            return unblocked

    def replaced(self, job: WindowJob) -> None:
        with self._lock:
            self.planners[job.bot].replaced(job.window, planned=job.planned)
            self._lock.notify_all()

    def await_scout(self, job: WindowJob, timeout: float) -> None:
        """Wait until the scout of ``job``'s window (if it is one's rest) has reported or
        was cut, at most ``timeout`` seconds (then the window goes by what else tells). The
        scout comes first in the pipeline, so it is fetched or queued ahead of its rest."""
        planner = self.planners[job.bot]
        with self._lock:
            self._lock.wait_for(lambda: not planner.scout_pending(job.window), timeout)

    def known_pieces(self, job: WindowJob, per_page: int) -> list[Window] | None:
        if job.planned:
            return None
        with self._lock:
            return self.planners[job.bot].known_pieces(job.window, per_page)

    def density(self, bot: str, window: Window) -> float | None:
        with self._lock:
            return self.planners[bot].density_near(window)

    def expected_records(self, bot: str, window: Window) -> float | None:
        with self._lock:
            return self.planners[bot].expected_records(window)

    def note_scout(self, bot: str, scout: Scout) -> None:
        with self._lock:
            self.planners[bot].note_scout(scout)

    def records_begin(self, bot: str, window: Window, sample: Sequence[int]) -> int | None:
        with self._lock:
            return self.planners[bot].records_begin(window, sample)

    def records_ahead(self, job: WindowJob, sample: Sequence[int]) -> None:
        with self._lock:
            self.planners[job.bot].records_ahead(job.window, sample)

    def may_begin_in(self, bot: str, window: Window) -> bool:
        with self._lock:
            return self.planners[bot].may_begin_in(window)

    def may_hold_first_record(self, job: WindowJob) -> bool:
        with self._lock:
            return self.planners[job.bot].may_hold_first_record(job.window)

    def rest_of_lead_in(self, job: WindowJob) -> Window | None:
        """The rest of the bot's range after ``job``'s window, while every window of the bot
        has come back empty (a lead-in); else None."""
        with self._lock:
            planner = self.planners[job.bot]
            if not planner.before_first_records or job.window.end >= planner.stop:
                return None
            return Window(job.window.end, planner.stop)

    def observe(
        self, job: WindowJob, records: int, target: float, first_record: int | None = None
    ) -> None:
        with self._lock:
            self.planners[job.bot].observe(
                job.window,
                records,
                target_records=target,
                planned=job.planned,
                first_record=first_record,
            )
            self._lock.notify_all()


class ChainTimes:
    """A cursor chain's records' times as served (the earliest of each record's), while it
    may yet be cut; and the latest of the last one's, since the window may filter on any."""

    def __init__(self) -> None:
        self.times: list[int] = []
        self.last_latest: int | None = None

    def add(self, times: list[int], last_record: list[int]) -> None:
        self.times.extend(times)
        if last_record:
            self.last_latest = max(last_record)


class AnswerReach:
    """The ids of a window's records and the latest of their times: how far into the window
    the answer demonstrably went."""

    def __init__(self, record_time: Callable[[dict[str, object]], int | None]) -> None:
        self.record_time = record_time
        self.ids: set[str] = set()
        self.latest: int | None = None

    def add(self, records: Iterable[object]) -> None:
        for record in records:
            if not isinstance(record, dict):
                continue
            if isinstance(record.get("_id"), str):
                self.ids.add(record["_id"])
            moment = self.record_time(record)
            if moment is not None and (self.latest is None or moment > self.latest):
                self.latest = moment

    def span(self, window: Window) -> int:
        """Seconds of ``window`` the answer showed records for, from its start."""
        return 0 if self.latest is None else max(0, self.latest + 1 - window.start)


def before(
    end: int,
    page: Page,
    keys: list[dict[str, object]],
    record_time: Callable[[dict[str, object]], int | None],
) -> tuple[Page, list[dict[str, object]]]:
    """``page`` and its records' ``keys`` without the records whose every time is at or
    after ``end``: what a request asked past its window's end brought from the next one,
    whose answer holds them whatever time the API filters on. Every record is kept when
    the keys were not read one to one."""
    if len(keys) != page.count:
        return page, keys
    kept = [i for i, key in enumerate(keys) if (moment := record_time(key)) is None or moment < end]
    if len(kept) == page.count:
        return page, keys
    return dataclasses.replace(page, data=[page.data[i] for i in kept]), [keys[i] for i in kept]


class WindowFetcher:
    """Fetches the pages of one endpoint's windows, replacing windows by pieces as needed."""

    def __init__(
        self,
        *,
        client: ExportClient,
        queries: WindowQueries,
        source: WindowSource,
        readings: ApiReadings,
        time_fields: Sequence[str],
        logger: logging.Logger,
    ) -> None:
        self.stream_name = queries.endpoint
        self.client = client
        self.queries = queries
        self.source = source
        self.readings = readings
        self.time_fields = tuple(time_fields)
        keys = msgspec.defstruct(
            "RecordKeys",
            [(field, object, None) for field in ("_id", *self.time_fields)],
        )
        self._keys_decoder = msgspec.json.Decoder(list[keys])  # type: ignore[valid-type]
        self.per_page = queries.per_page
        self.counters = client.counters
        self.logger = logger
        self.proofs_tell = True  # until a probe of a window's length proves nothing

    def window_pages(self, job: WindowJob) -> Iterator[Page | WindowSplit]:
        """Every page of one window, or a split into pieces; tells the planner what it held."""
        window = job.window
        known = self.known_dense(job)
        if known is not None:
            yield known
            return
        complete = self.readings.complete_length(self.stream_name)
        overhang = self.overhang(job) if window.length > complete else 0
        queries = self.queries.of(job.bot, window, overhang=overhang)
        pages = self.answer(job, queries)
        if isinstance(pages, WindowSplit):
            yield pages
            return
        # Read again: other windows may have shown this length complete meanwhile.
        complete = self.readings.complete_length(self.stream_name)
        reach = AnswerReach(self.record_time) if window.length > complete else None
        records = 0
        dense = False
        target = target_records(self.per_page, cursor_followed=self.readings.paging_trusted)
        served = ChainTimes() if len(queries) == 1 else None
        # Where a bot's records begin: for the density (a lead-in's windows are empty), and
        # so that no window before them is cut by the density after them.
        first_record: int | None = None
        finds_first = self.source.may_hold_first_record(job)
        number = 0
        for number, answered in enumerate(pages, start=1):
            self.counters.add(pages=1)
            if answered.cursor is not None and not dense:
                # More than a page: windows this long need not wait for this one's count.
                dense = True
                self.source.note_dense(job)
            chain = served if served is not None and answered.cursor is not None else None
            page, times = (
                self.read_times(job, answered, reach, overhang=overhang, chain=chain)
                if reach is not None
                or overhang
                or chain is not None
                or (finds_first and answered.count)
                else (answered, [])
            )
            if finds_first and times:
                first_record = min(times if first_record is None else [*times, first_record])
            records += page.count
            yield page
            if served is not None and page.cursor is not None and number >= MAX_CHAINED_PAGES:
                split = self.cut_chain(
                    job, served, reach, page_count=page.count, pages=number, target=target
                )
                if split is not None:
                    yield split
                    return
                if number >= MAX_UNORDERED_CHAIN:
                    # Nothing placed a cut this far in (records at one second, or the end
                    # reached): the chain goes on, and its times need not grow with it.
                    served = None
        if not records and job.planned:
            self.look_ahead(job)
        if reach is not None:
            split = self.check_tail(job, reach, one_page=number <= 1)
            if split is not None:
                self.source.replaced(job)
                yield split
                return
        self.source.observe(job, records, target, first_record)

    def overhang(self, job: WindowJob) -> int:
        """Seconds past its end a window longer than any shown complete is asked for, so
        that its own answer may show it complete: a record after its end shows the API
        answered its whole length (an API that cuts keeps a window's first days). Long
        enough for a few records at the density near it (none while nothing tells it), at
        most an eighth of the window, never past the bot's range nor longer than a window
        may be. What it brings from past the end is left to the next window."""
        window = job.window
        density = self.source.density(job.bot, window)
        if not density:
            return 0
        planner = self.source.planners[job.bot]
        longest = min(planner.longest, self.readings.longest(self.stream_name) or planner.longest)
        room = min(
            planner.stop - window.end,
            longest - window.length,
            int(window.length * OVERHANG_SHARE),
        )
        return max(0, min(room, math.ceil(OVERHANG_RECORDS / density)))

    def read_times(
        self,
        job: WindowJob,
        page: Page,
        reach: AnswerReach | None,
        *,
        overhang: int,
        chain: ChainTimes | None,
    ) -> tuple[Page, list[int]]:
        """A page's records' times in the order served, their keys read once for every use:
        how far the answer reached, the page less what an overhang brought from past the
        window, the chain's times."""
        keys = self.page_keys(page)
        if reach is not None:
            reach.add(keys)
        if overhang:
            page, keys = before(job.window.end, page, keys, self.record_time)
        times = self.times_of(keys)
        if chain is not None:
            chain.add(times, self.record_times(keys[-1]) if keys else [])
        return page, times

    def answer(self, job: WindowJob, queries: Sequence[Query]) -> Iterable[Page] | WindowSplit:
        """The pages of a window's queries; or, when its first answer shows it dense or
        too full to trust, what replaces it."""
        if len(queries) != 1:
            return itertools.chain.from_iterable(self.query_pages(q) for q in queries)
        opened = self.open_query(queries[0], replaceable=True)
        if isinstance(opened, list):
            self.source.replaced(job)
            return WindowSplit(self.pieces(job, opened), done_until=job.window.start)
        return itertools.chain([opened[0]], opened[1])

    def cut_chain(
        self,
        job: WindowJob,
        served: ChainTimes,
        reach: AnswerReach | None,
        *,
        page_count: int,
        pages: int,
        target: float,
    ) -> WindowSplit | None:
        """What replaces a window whose cursor chain has gone ``pages`` pages (``served``:
        its records' times as served; ``reach``: what its answer showed, for a window longer
        than any shown complete; ``target``: the records a window is sized to hold); None
        while the chain goes on."""
        window = job.window
        rest = chain_rest(
            window,
            served.times,
            per_page=max(page_count, 1),
            pages=pages,
            last_latest=served.last_latest,
        )
        if isinstance(rest, Scout):
            # Denser than planned, and no telling how much: fetched again, sized by a scout
            # (the records written so far are not written twice).
            self.source.note_scout(job.bot, rest)
            self.source.replaced(job)
            return WindowSplit(self.pieces(job, rest.pieces), done_until=window.start)
        if rest is None:
            return None
        # Denser than planned: what is left goes on as pieces in parallel, and the bot's
        # next windows are sized to what the chain showed.
        pieces = list(rest.pieces)
        if reach is not None and reach.latest is not None and pieces[-1].end < window.end:
            # Served newest first, the chain's pages stand for the window's end only if the
            # API answered the window whole: what lies after its newest record is asked on
            # its own (a window like any other, checked in turn if long).
            after = max(pieces[-1].end, reach.latest + 1)
            if after < window.end:
                pieces.append(Window(after, window.end))
        self.source.replaced(job)
        self.source.observe(WindowJob(job.bot, window, planned=False), round(rest.records), target)
        return WindowSplit(self.pieces(job, pieces), done_until=rest.done_until)

    def known_dense(self, job: WindowJob) -> WindowSplit | None:
        """The pieces of a window known dense before it is asked, with no request spent on
        it: a scout's rest whose count the scout showed dense (the scout's count is waited
        for), or a piece that the windows reported since it was cut show dense (see
        :meth:`WindowPlanner.known_pieces`). None for any other window."""
        self.source.await_scout(job, SCOUT_WAIT_SECONDS)
        served = self.readings.page_size_served
        pieces = self.source.known_pieces(job, min(served, self.per_page) or self.per_page)
        if pieces is None:
            return None
        self.source.replaced(job)
        return WindowSplit(self.pieces(job, pieces), done_until=job.window.start)

    def pieces(self, job: WindowJob, windows: Iterable[Window]) -> tuple[WindowJob, ...]:
        return tuple(WindowJob(job.bot, piece, planned=False) for piece in windows)

    def query_pages(self, query: Query) -> Iterator[Page]:
        """Every page of a query, one piece after the other (for windows of several queries,
        and for the checks of long windows)."""
        pending = [query]
        while pending:
            piece = pending.pop()
            opened = self.open_query(piece, replaceable=False)
            if isinstance(opened, list):
                pending.extend(reversed([piece.over(window) for window in opened]))
                continue
            yield opened[0]
            yield from opened[1]

    def open_query(
        self, query: Query, *, replaceable: bool
    ) -> tuple[Page, Iterator[Page]] | list[Window]:
        """The first page of a query and the iterator of the rest; or the pieces to ask for
        instead. Dense pieces only when the query is a window of its own (``replaceable``):
        one after the other they would only cost requests."""
        window = query.window
        longest = self.readings.longest(self.stream_name)
        if longest is not None and window.length > longest:
            return pieces_within(window, longest)  # no need to ask to know the answer
        pages = self.client.pages(query)
        try:
            first = next(pages)
        except RequestRejectedError as exc:
            if exc.status != HTTPStatus.BAD_REQUEST or not self.readings.rejected(
                self.stream_name, window.length
            ):
                raise
            self.logger.warning(
                "%s: the Export API rejected a window of %s (%s); halving it.",
                self.stream_name,
                length_text(window.length),
                exc,
            )
            return list(halves(window))
        self.readings.saw_page(
            first.count, cursor_key=first.cursor_key, cursor=first.cursor is not None
        )
        if self.readings.accepted(self.stream_name, window.length):
            self.logger.warning(
                "%s: the Export API accepts windows of %s; windows are at most that long "
                "for the rest of the run.",
                self.stream_name,
                length_text(window.length),
            )
        if first.cursor is None and self.may_have_more(first):
            self.report_unfollowed_cursor(query, first)
            return list(halves(window))
        if first.cursor is None and first.count == 0 and first.unexplained_keys:
            raise IncompleteWindowError(
                f"The Export API answered {query.describe()} with an empty page, no "
                f"'{CURSOR_KEY}' and other fields ({', '.join(first.unexplained_keys)}): "
                "it may carry the cursor elsewhere, so the tap cannot tell whether the "
                "window holds more records. Stopping rather than skipping them; please "
                "report the answer's shape."
            )
        if replaceable and first.cursor is not None:
            sample = self.times_of(self.page_keys(first))
            begin = self.source.records_begin(query.bot_name, window, sample)
            if begin is not None:
                return [Window(window.start, begin)] if begin > window.start else []
            pieces = dense_pieces(
                window,
                sample,
                per_page=max(first.count, 1),
                prior_records=self.source.expected_records(query.bot_name, window),
                records_may_begin=self.source.may_begin_in(query.bot_name, window),
            )
            if isinstance(pieces, Scout):
                self.source.note_scout(query.bot_name, pieces)
                return pieces.pieces
            if pieces is not None:
                return pieces
        return first, self.noted(pages)

    def noted(self, pages: Iterator[Page]) -> Iterator[Page]:
        """A query's pages after its first, noted in the readings as its first is (a first
        page may be empty while the cursor goes on)."""
        for page in pages:
            self.readings.saw_page(
                page.count, cursor_key=page.cursor_key, cursor=page.cursor is not None
            )
            yield page

    def check_tail(
        self, job: WindowJob, reach: AnswerReach, *, one_page: bool
    ) -> WindowSplit | None:
        """A window longer than any shown complete: ask the part after its last record on
        its own. Records there that the window's answer lacks mean the API cut it. A check
        is itself a window: it is only trusted as long as what is known complete, so a long
        tail is first met by a probe that looks for records far into the bot's range, and
        a short one after an answer of one page by a probe that may prove the length."""
        window = job.window
        if reach.latest is not None:
            self.readings.shown_complete(reach.span(window))
        covered = self.covered(window, reach)
        if covered >= window.length:
            return None
        missing = 0
        if window.length - covered > covered:
            missing = self.probe_reach(job, reach)
            covered = self.covered(window, reach)
        elif one_page and reach.latest is not None:
            self.prove_length(job, reach)
            covered = self.covered(window, reach)
        if not missing and covered < window.length:
            tail = Window(window.start + covered, window.end)
            for piece in pieces_within(tail, covered):
                for query in self.queries.of(job.bot, piece):
                    for page in self.query_pages(query):
                        ids = (key.get("_id") for key in self.page_keys(page))
                        missing += sum(
                            1 for rid in ids if isinstance(rid, str) and rid not in reach.ids
                        )
        if not missing:
            return None
        cut = covered
        self.readings.found_cut(cut)
        if self.readings.first_time(f"cut:{self.stream_name}"):
            self.logger.warning(
                "%s: the Export API answered a window of %s only in part (status 200): %d "
                "record(s) after its first %s were missing. Windows are at most %s for the "
                "rest of the run, and what was cut is fetched again.",
                self.stream_name,
                length_text(window.length),
                missing,
                length_text(cut),
                length_text(cut),
            )
        rest = Window(window.start + cut, window.end)
        return WindowSplit(self.pieces(job, pieces_within(rest, cut)), done_until=rest.start)

    def look_ahead(self, job: WindowJob) -> None:
        """A bot's first window came back empty (a start_date before its first record): one
        probe, the first page of the rest of its range, may show windows that long complete
        for the run, so that the lead-in's next window reaches as far at once, not 8 times
        further than this one (then a check). Its records, more than a page of them, show
        where the bot's records begin, and its windows start over from there at once (see
        :meth:`WindowPlanner.records_ahead`). Made once a run per endpoint: a probe that
        finds nothing (a bot with no records, or an API that cuts long windows) leaves the
        lead-in to grow step by step, as it otherwise does."""
        rest = self.source.rest_of_lead_in(job)
        if rest is None or self.readings.longest(self.stream_name) is not None:
            return
        if self.readings.complete_length(self.stream_name) >= rest.length:
            return  # the lead-in's next window reaches as far: nothing to gain
        if not self.readings.first_time(f"look-ahead:{self.stream_name}"):
            return
        # From the empty window's start: a record near the range's end then shows the whole
        # rest complete, not all but its last hours.
        probe = Window(job.window.start, rest.end)
        first = self.probe_page(job.bot, probe)
        if first is None:
            return
        keys = self.page_keys(first)
        self.probe_reach_of(probe, keys, job.window, AnswerReach(self.record_time))
        if first.cursor is not None:
            self.source.records_ahead(job, self.times_of(keys))

    def prove_length(self, job: WindowJob, reach: AnswerReach) -> None:
        """One request that may show windows as long as ``job``'s answered completely for
        the run, so that the windows of that length checked after it need no check: the
        window as long that ends just after the last record of its answer. That record in
        the first page shows that the API kept a window's last second. Its answer was one
        page, so the window so placed (a few seconds earlier) likely is too. Probes are made
        one at a time, so that windows checked at once go by the first one's finding. After
        one that proved nothing (the record left out: the API may filter on a later time of
        it), the run's windows check their own tails. A probe that would reach before the
        run's range (a bot's first window) is not made."""
        window = job.window
        with self.readings.probing:
            if not self.proofs_tell or reach.latest is None:
                return
            if self.covered(window, reach) >= window.length:
                return
            end = reach.latest + 1
            if end - window.length < self.source.planners[job.bot].start:
                return  # a probe stays within the run's range
            probe = Window(end - window.length, end)
            tail = Window(window.start + self.covered(window, reach), window.end)
            self.probe_records(job.bot, probe, tail, reach)
            self.proofs_tell = self.covered(window, reach) >= window.length

    def covered(self, window: Window, reach: AnswerReach) -> int:
        """Seconds from the window's start its answer is known to hold completely: what the
        API has shown to answer completely, or as far as the answer reached."""
        return max(self.readings.complete_length(self.stream_name), reach.span(window))

    def probe_reach(self, job: WindowJob, reach: AnswerReach) -> int:
        """One request or two for the first page of a long range after what the window is
        known to hold: from there to the end of the bot's range, then the window's length
        before that end (where a bot's records are likely, should the API cut the first).
        A record far into a probe shows that the API answers that long a window completely
        (the check then costs nothing more, for this window and the ones after); a record
        the window's answer lacks shows it was cut. Probes are made one at a time, so that
        windows checked at once go by the first probe's finding. None once the API has
        shown a limit. Returns the records found missing."""
        window = job.window
        stop = max(self.source.planners[job.bot].stop, window.end)
        missing = 0
        with self.readings.probing:
            # The rest of the range from the tail on, then the window's length before stop.
            for start in (window.start, stop - window.length):
                covered = self.covered(window, reach)
                # Once the API has shown a limit, a longer probe would be refused or cut.
                limited = self.readings.longest(self.stream_name) is not None
                if missing or covered >= window.length or limited:
                    break
                tail = Window(window.start + covered, window.end)
                probe = Window(max(tail.start, start), stop)
                missing += self.probe_records(job.bot, probe, tail, reach)
        return missing

    def probe_records(self, bot: str, probe: Window, tail: Window, reach: AnswerReach) -> int:
        """The first page of ``probe``: what it shows complete is noted; the records it
        holds wholly inside ``tail`` that the window's answer lacks are counted."""
        first = self.probe_page(bot, probe)
        if first is None:
            return 0  # a range too long for the API proves nothing; the check goes on without
        return self.probe_reach_of(probe, self.page_keys(first), tail, reach)

    def probe_page(self, bot: str, probe: Window) -> Page | None:
        """The first page of ``probe`` (the cursor is not followed); None when the API
        rejects so long a range."""
        try:
            return next(self.client.pages(self.queries.of(bot, probe)[0]))
        except RequestRejectedError as exc:
            if exc.status != HTTPStatus.BAD_REQUEST:
                raise
            return None

    def probe_reach_of(
        self, probe: Window, keys: list[dict[str, object]], tail: Window, reach: AnswerReach
    ) -> int:
        """What a probe's first page (its records' ``keys``) shows complete is noted; returns
        how many of its records lie wholly inside ``tail`` and are not in ``reach``."""
        latest: int | None = None
        missing = 0
        for key in keys:
            times = self.record_times(key)
            if not times:
                continue
            latest = max(min(times), latest if latest is not None else min(times))
            rid = key.get("_id")
            # Only a record whose every time is in the tail surely belongs to the window,
            # whichever time the API filters on.
            inside = tail.start <= min(times) and max(times) < tail.end
            if inside and isinstance(rid, str) and rid not in reach.ids:
                missing += 1
        if latest is not None:
            self.readings.shown_complete(min(probe.length, max(0, latest + 1 - probe.start)))
        return missing

    def times_of(self, keys: Iterable[dict[str, object]]) -> list[int]:
        """The times of a page's records (from :meth:`page_keys`), in the order served."""
        times = (self.record_time(r) for r in keys)
        return [t for t in times if t is not None]

    def page_keys(self, page: Page) -> list[dict[str, object]]:
        """Each record's ``_id`` and times, and nothing else: long texts are skipped, not
        made into Python strings (this runs in the fetching threads, for many pages)."""
        try:
            keys = self._keys_decoder.decode(b"[" + b",".join(page.data) + b"]")
        except (msgspec.DecodeError, msgspec.ValidationError):
            return [r for r in self.client.records(page).items if isinstance(r, dict)]
        return [msgspec.structs.asdict(key) for key in keys]

    def record_time(self, record: dict[str, object]) -> int | None:
        """The earliest of a record's times in Unix seconds (never later than the one the
        window filters on, whichever that is), or None."""
        moments = self.record_times(record)
        return min(moments) if moments else None

    def record_times(self, record: dict[str, object]) -> list[int]:
        """A record's readable times in Unix seconds."""
        moments = []
        for name in self.time_fields:
            value = record.get(name)
            if value is not None:
                try:
                    moments.append(epoch_microseconds(value) // _MICROS)
                except ValueError:
                    continue
        return moments

    def may_have_more(self, page: Page) -> bool:
        """Whether a page with no cursor to follow may not be the window's last: it is full
        (:meth:`ApiReadings.is_full`), counting a small page as full when another field of
        the answer holds a value, as a cursor under another name would."""
        if self.readings.is_full(page.count, self.per_page):
            return True
        # Only then is the answer read for other fields.
        return self.readings.is_full(page.count, self.per_page, cursor_sign=True) and bool(
            page.unexplained_keys
        )

    def report_unfollowed_cursor(self, query: Query, page: Page) -> None:
        """A page that may not be the last came without a cursor to follow: split, or stop
        if nothing is left to split. Warn once per run, naming the answer's keys for the
        operator to report."""
        self.readings.note_split()
        if query.window.length <= 1:
            raise IncompleteWindowError(
                f"The Export API answered {query.describe()} with a page of {page.count} "
                f"records that may not be the last (full, or with other fields that hold a "
                f"value) and no '{CURSOR_KEY}' to follow (top-level keys: "
                f"{', '.join(page.keys)}). One second cannot be split further, so records "
                "would be left behind; stopping. Please report the answer's shape."
            )
        if self.readings.first_time("unfollowed-cursor"):
            self.logger.warning(
                "The Export API answered a page of %d records that may not be the last (full, "
                "or with other fields that hold a value) with no cursor to follow under '%s'; "
                "its top-level keys are: %s. Such windows are split in two until every piece "
                "comes back whole, so no record is lost, at the cost of more requests. Please "
                "report this answer's shape.",
                page.count,
                CURSOR_KEY,
                ", ".join(page.keys),
            )
