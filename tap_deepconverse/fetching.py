"""Fetching a window completely, whatever the API does with its cursor and window lengths.

Two things the contract leaves open are learnt here, from the API's answers:
- **The cursor's key.** The tap follows a top-level ``cursor`` (the natural reading), but
  completeness does not rest on it: a first page that comes back full with no cursor to
  follow is not taken as the end. The window is split in two and each half asked again,
  recursively, until every piece fits one page. A full page for one second stops the run.
- **The longest window accepted.** A window longer than ``window_hours`` that the API
  answers with HTTP 400 is halved and asked again; the length it then accepts is the limit
  for the rest of the run (:class:`~tap_deepconverse.windows.WindowLimit`).
Pieces of a window come out in time order; the window's bookmark is written only after all
of them, by the stream.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from http import HTTPStatus

from tap_deepconverse.client import CURSOR_KEY, Counters, ExportClient, Page, Query
from tap_deepconverse.errors import IncompleteWindowError, RequestRejectedError
from tap_deepconverse.prefetch import ByteBudget
from tap_deepconverse.windows import Window, WindowLimit, WindowPlanner, halves, target_records

DAY_SECONDS = 86_400
# Fetched pages waiting to be written, across both streams: the tap's memory beyond this is
# about one page per window in flight.
BUFFER_BUDGET_BYTES = 16 * 1024 * 1024


class AnswerShape:
    """What the run has learnt about the shape of the API's answers (one API, both endpoints)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.cursor_seen = False
        self.split_seen = False
        self._warned = False

    @property
    def paging_trusted(self) -> bool:
        """False once a full page came with nothing to follow and no cursor ever came."""
        return self.cursor_seen or not self.split_seen

    def warn_once(self) -> bool:
        with self._lock:
            first, self._warned = not self._warned, True
            return first


ANSWER_SHAPE = AnswerShape()
# The run's one budget of page bytes, shared by the streams fetching at once.
BUFFER_BUDGET = ByteBudget(BUFFER_BUDGET_BYTES)


class WindowSource:
    """Plans the next window to fetch across bots: the first bot, in the order they are
    written, whose planner can plan one now."""

    def __init__(self, planners: dict[str, WindowPlanner], limit: WindowLimit) -> None:
        self.planners = planners
        self.limit = limit
        self._lock = threading.Lock()

    def next_job(self, only: str | None = None) -> tuple[str, tuple[str, Window]] | None:
        with self._lock:
            for bot, planner in self.planners.items():
                if (only is None or bot == only) and planner.ready:
                    return bot, (bot, planner.next_window(self.limit.longest))
            return None

    def exhausted(self, key: str) -> bool:
        with self._lock:
            return self.planners[key].done

    def dense(self, bot: str, window: Window) -> None:
        with self._lock:
            self.planners[bot].dense(window)

    def observe(self, bot: str, window: Window, records: int, target: float) -> None:
        with self._lock:
            self.planners[bot].observe(window, records, target_records=target)


class WindowFetcher:
    """Fetches the pages of one endpoint's windows, splitting and halving as needed."""

    def __init__(
        self,
        *,
        stream_name: str,
        client: ExportClient,
        queries: Callable[[str, Window], list[Query]],
        source: WindowSource,
        per_page: int,
        counters: Counters,
        logger: logging.Logger,
    ) -> None:
        self.stream_name = stream_name
        self.client = client
        self.queries = queries
        self.source = source
        self.limit = source.limit
        self.per_page = per_page
        self.counters = counters
        self.logger = logger

    def window_pages(self, bot_name: str, window: Window) -> Iterator[Page]:
        """Every page of one window; tells the planner how many records it held."""
        records = 0
        dense = False
        for query in self.queries(bot_name, window):
            for page in self.query_pages(query):
                self.counters.add(pages=1)
                records += page.count
                if page.cursor is not None and not dense:
                    # More than a page: windows this long need not wait for this one's count.
                    dense = True
                    self.source.dense(bot_name, window)
                yield page
        target = target_records(self.per_page, cursor_followed=ANSWER_SHAPE.paging_trusted)
        self.source.observe(bot_name, window, records, target)

    def query_pages(self, query: Query) -> Iterator[Page]:
        """Every page of a query, complete whether or not the API's cursor can be followed."""
        pending = [query]
        while pending:
            piece = pending.pop()
            longest = self.limit.longest
            if longest is not None and piece.window.length > longest:
                # Planned before the limit was learnt: no need to ask to know the answer.
                pending.extend(reversed([piece.over(half) for half in halves(piece.window)]))
                continue
            pages = self.client.pages(piece)
            try:
                first = next(pages)
            except RequestRejectedError as exc:
                if exc.status != HTTPStatus.BAD_REQUEST or not self.limit.may_halve(
                    piece.window.length
                ):
                    raise
                self.limit.reject(piece.window.length)
                self.logger.warning(
                    "%s: the Export API rejected a window of %s (%s); halving it.",
                    self.stream_name,
                    length_text(piece.window.length),
                    exc,
                )
                pending.extend(reversed([piece.over(half) for half in halves(piece.window)]))
                continue
            if self.limit.accept(piece.window.length):
                self.logger.warning(
                    "%s: the Export API accepts windows of %s; windows are at most that long "
                    "for the rest of the run.",
                    self.stream_name,
                    length_text(piece.window.length),
                )
            if first.cursor is None and first.count >= self.per_page:
                self.report_unfollowed_cursor(piece, first)
                pending.extend(reversed([piece.over(half) for half in halves(piece.window)]))
                continue
            if first.cursor is None and first.count == 0 and first.unexplained_keys:
                raise IncompleteWindowError(
                    f"The Export API answered {piece.describe()} with an empty page, no "
                    f"'{CURSOR_KEY}' and other fields ({', '.join(first.unexplained_keys)}): "
                    "it may carry the cursor elsewhere, so the tap cannot tell whether the "
                    "window holds more records. Stopping rather than skipping them; please "
                    "report the answer's shape."
                )
            if first.cursor is not None:
                ANSWER_SHAPE.cursor_seen = True
            yield first
            yield from pages

    def report_unfollowed_cursor(self, query: Query, page: Page) -> None:
        """A full page came without a cursor to follow: split, or stop if nothing is left to
        split. Warn once per run, naming the answer's keys for the operator to report."""
        ANSWER_SHAPE.split_seen = True
        if query.window.length <= 1:
            raise IncompleteWindowError(
                f"The Export API answered {query.describe()} with a full page of "
                f"{page.count} records and no '{CURSOR_KEY}' to follow (top-level keys: "
                f"{', '.join(page.keys)}). One second cannot be split further, so records "
                "would be left behind; stopping. Please report the answer's shape."
            )
        if ANSWER_SHAPE.warn_once():
            self.logger.warning(
                "The Export API answered a full page (%d records) with no cursor to follow "
                "under '%s'; its top-level keys are: %s. Windows that come back full are "
                "split in two until every piece fits one page, so no record is lost, at the "
                "cost of more requests. Please report this answer's shape.",
                page.count,
                CURSOR_KEY,
                ", ".join(page.keys),
            )


def length_text(seconds: int) -> str:
    """A window length for people: days, or hours under a day."""
    if seconds >= DAY_SECONDS:
        return f"{seconds / DAY_SECONDS:.3g} days"
    return f"{seconds / 3600:.3g} hours"
