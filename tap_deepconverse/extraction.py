"""One stream's extraction for one bot at a time: the pages of its windows in, records and
finished windows out, with the progress log.

Windows come in the order the bot's planner planned them (fetched ahead by the
``prefetch.Pipeline``); a window's records come out before its :class:`WindowDone`, which is
where the stream moves the bot's bookmark: a bookmark never claims records not yet out.
A window replaced by pieces (``fetching.WindowSplit``) is done only up to where its own pages
went; its pieces follow as windows of their own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tap_deepconverse.client import Counters, ExportClient, Page
from tap_deepconverse.errors import RecordTooDeepError
from tap_deepconverse.fetching import WindowJob, WindowSource, WindowSplit
from tap_deepconverse.prefetch import Pipeline
from tap_deepconverse.records import RecordShaper, WindowTally
from tap_deepconverse.timestamps import format_timestamp, from_unix_seconds
from tap_deepconverse.windows import RecentIds, Window


@dataclass(frozen=True)
class WindowDone:
    """Every record of ``window`` is out: the bot's bookmark may move to its end."""

    window: Window


class Extraction:
    """The records of one stream's windows, bot by bot."""

    def __init__(
        self,
        *,
        stream_name: str,
        pipeline: Pipeline[str, WindowJob, Page | WindowSplit],
        windows: WindowSource,
        client: ExportClient,
        shaper: RecordShaper,
        counters: Counters,
        logger: logging.Logger,
    ) -> None:
        self.stream_name = stream_name
        self.pipeline = pipeline
        self.windows = windows
        self.client = client
        self.shaper = shaper
        self.counters = counters
        self.logger = logger

    def bot_records(
        self, bot_name: str
    ) -> Iterator[tuple[tuple[int, int], dict[str, Any]] | WindowDone]:
        """Every record of the bot's windows with the ``start_time`` and ``end_time`` its
        page was asked with, each window followed by its :class:`WindowDone`; one copy of
        each record (the newest) across window edges. One page's records are held at a
        time: a page is shaped only once the last one's records are all out."""
        planner = self.windows.planners[bot_name]
        first, stop = planner.start, planner.stop
        if first >= stop:
            self.logger.info("%s for bot '%s': already up to date.", self.stream_name, bot_name)
            return
        self.logger.info(
            "%s for bot '%s': from %s to %s, in windows sized to the data.",
            self.stream_name,
            bot_name,
            log_time(first),
            log_time(stop),
        )
        progress = Progress(first, stop)
        recent = RecentIds()
        release_at: int | None = None  # where the pieces of a window cut mid-chain end
        for job, pages in self.pipeline.partition(bot_name):
            window = job.window
            tally = WindowTally()
            split: WindowSplit | None = None
            for page in pages:
                if isinstance(page, WindowSplit):
                    split = page
                    continue
                if not tally.pages:
                    # Ids of the range before this window's: a window replaced whole by
                    # pieces has none of its own, and its first piece borders that range.
                    recent.next_window()
                tally.pages += 1
                bounds = asked_bounds(page, window)
                for record in self.new_records(page, window, recent, tally):
                    yield bounds, record
            self.counters.add(
                records=tally.emitted,
                duplicates=tally.duplicates + tally.older,
                odd_records=tally.odd,
                windows=1,
            )
            self.shaper.report(self.where(bot_name, window), tally, self.logger)
            if split is not None:
                if tally.pages:
                    recent.hold()
                    # A piece cut in turn keeps what its window's pages held until both end;
                    # and pieces that end before their window (a chain served newest first
                    # is cut below what it served) keep them for the window after, whose
                    # first request reaches back into this one.
                    ends = [window.end, *(piece.window.end for piece in split.jobs)]
                    release_at = max(ends if release_at is None else [*ends, release_at])
                # The pieces cover the rest: the bookmark moves only as they are written.
                if split.done_until > window.start:
                    yield WindowDone(Window(window.start, split.done_until))
                self.logger.debug(
                    "%s, fetched as %d pieces from %s.",
                    self.where(bot_name, window),
                    len(split.jobs),
                    log_time(split.done_until),
                )
                continue
            if release_at is not None and window.end >= release_at:
                recent.release()  # the last piece of a window cut mid-chain is done
                release_at = None
            yield WindowDone(window)
            done, seconds, to_go = progress.window_done(window)
            self.logger.info(
                "%s done: %d records, %d pages, %.1fs; %.0f%% of the bot's range, about %s to go.",
                self.where(bot_name, window),
                tally.emitted,
                tally.pages,
                seconds,
                100 * done,
                to_go,
            )

    def new_records(
        self, page: Page, window: Window, recent: RecentIds, tally: WindowTally
    ) -> list[dict[str, Any]]:
        """A page's records, shaped, that are not yet out (or newer than the copy that is)."""
        decoded = self.client.records(page)
        tally.repaired += decoded.repaired
        try:
            records = self.shaper.page_records(decoded.items, tally)
        except RecursionError:
            raise RecordTooDeepError(
                f"A record of {self.stream_name}, window {window_text(window)}, is nested too "
                "deep to be written; stopping. Please report the answer's shape."
            ) from None
        return new_copies(records, recent, self.shaper.time_key, tally)

    def where(self, bot_name: str, window: Window) -> str:
        return f"{self.stream_name} for bot '{bot_name}', window {window_text(window)}"


def asked_bounds(page: Page, window: Window) -> tuple[int, int]:
    """The ``start_time`` and ``end_time`` a page of ``window`` was asked with: a window
    longer than any shown complete is asked past its end."""
    if page.request is not None:
        params = page.request[1]
        try:
            return int(params["start_time"]), int(params["end_time"])
        except (KeyError, ValueError):
            pass
    return window.request_bounds


def new_copies(
    records: list[dict[str, Any]], recent: RecentIds, time_key: str, tally: WindowTally
) -> list[dict[str, Any]]:
    """The records not yet emitted, or newer than the copy that was."""
    fresh = []
    for record in records:
        seen = recent.add(record["_id"], record[time_key])
        if seen > 0:
            tally.emitted += 1
            tally.renewed += seen == RecentIds.NEWER
            fresh.append(record)
        elif seen == RecentIds.SAME:
            tally.duplicates += 1
        else:
            tally.older += 1
    return fresh


class Progress:
    """How far through its range a bot's extraction is, and a guess of the time to go."""

    def __init__(self, first: int, stop: int) -> None:
        self.first = first
        self.stop = stop
        self.started = self.last = time.monotonic()

    def window_done(self, window: Window) -> tuple[float, float, str]:
        """The share of the range done, the seconds the window took, and the time to go."""
        now = time.monotonic()
        done = (window.end - self.first) / (self.stop - self.first)
        seconds, self.last = now - self.last, now
        return done, seconds, duration((now - self.started) / done * (1 - done))


def log_time(seconds: int) -> str:
    return f"{format_timestamp(from_unix_seconds(seconds))[:19]}Z"


def window_text(window: Window) -> str:
    return f"[{log_time(window.start)}, {log_time(window.end)})"


def duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
