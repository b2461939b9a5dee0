"""``tap-deepconverse --config CONFIG --diagnose``: what the Export API really does, measured
on the configured bots' recent data, for the operator to read and paste into a bug report.

Each endpoint is probed in its own thread with at most ``MAX_REQUESTS`` requests, through the
same client as a run (rate limit, retries, errors). It reads and writes nothing else: no
state, no records. In order:

1. **Survey**: each bot's last day, ``page_size`` a page, every page followed (wherever the
   answer carries its cursor), to see the time format, the page sizes served and a few
   records to probe with.
2. **Longest window**: windows ending at the end of the data, 1 hour long then doubling up to
   ``max_window_days``, for one bot (the busiest whose windows fit the budget). A window
   fails if refused (HTTP 400) or cut short: a longer window must hold every record of the
   shorter one before it, whose range it contains. Between the last length that held and
   the first that failed, the limit is bisected to the day (to the hour under a day).
3. **Cursor**: the fullest window seen, asked 2 records a page: where the cursor comes.
4. **Conversations filter** (conversations only): a conversation whose start and last action
   are seconds apart is asked for with a two-second window around its start, and with one
   around its last action. Which returns it tells the field the window filters on.
5. **Bounds**: a record timed on a whole second ``T`` (the filter field: ``time`` of a
   message, or the conversations filter once known) is asked for with ``start_time=T`` and
   with ``end_time=T``; only answers that prove its time exact count (see
   :meth:`Prober.probe_bounds`).

Where the data cannot answer (too few records, a budget spent), the value is null and the
reason says why; nothing is guessed.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import threading
import time
from collections.abc import Mapping
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import msgspec

from tap_deepconverse.client import Counters, ExportClient, Limiters, Query
from tap_deepconverse.conversation_changes import Seen, evidence, filter_reading
from tap_deepconverse.diagnose_report import (
    Answer,
    Findings,
    as_json,
    build_report,
    cursor_text,
    find_cursor,
    table,
    time_formats,
    value_at,
)
from tap_deepconverse.errors import PaginationError, RequestRejectedError
from tap_deepconverse.timestamps import (
    TimestampError,
    epoch_microseconds,
    format_microseconds,
    parse_timestamp,
    to_unix_seconds,
)
from tap_deepconverse.windows import Window

ENDPOINTS = {
    "conversations": "/conversations/export/v1/conversations",
    "messages": "/conversations/export/v1/messages",
}
MAX_REQUESTS = 50  # per endpoint
SURVEY_REQUESTS = 20  # of which the survey of the bots' last day may take at most
PROBE_REQUESTS = 12  # ... and the probes after the longest window keep for themselves
HOUR = 3600
DAY = 86_400
LADDER = (HOUR, 2 * HOUR, 4 * HOUR, 8 * HOUR, 16 * HOUR, DAY, 2 * DAY, 4 * DAY, 8 * DAY, 16 * DAY)
CURSOR_PROBE_PER_PAGE = 2
EDGE_CANDIDATES = 3  # records tried for the bounds, two requests each
EDGE_PROBE_SECONDS = 60
MICROS = 1_000_000
GIVE_UP_ADVICE = "Nothing was written; run --diagnose again once the API answers."


class BudgetSpent(Exception):  # noqa: N818 - a condition, not an error
    """The endpoint's requests are spent (or the other endpoint failed): stop probing."""


@dataclass
class Fetched:
    """One window as fetched: its records and the size of each page."""

    records: list[dict[str, Any]] = field(default_factory=list)
    pages: list[int] = field(default_factory=list)
    rejected: str | None = None  # the API's answer when it refused the window

    @property
    def ids(self) -> set[str]:
        return {r["_id"] for r in self.records if isinstance(r.get("_id"), str)}


class Prober:
    """Probes one endpoint within its budget of requests."""

    def __init__(
        self, client: ExportClient, endpoint: str, page_size: int, stop: threading.Event
    ) -> None:
        self.client = client
        self.endpoint = endpoint
        self.page_size = page_size
        self.stop = stop
        self.findings = Findings(endpoint)
        self.limit = MAX_REQUESTS
        self.cursor_path: tuple[str, ...] | None = None
        self.seen: dict[str, tuple[str, dict[str, Any]]] = {}  # _id -> (bot, record)
        self.windows: dict[tuple[str, int, int, int], Fetched] = {}
        self.passive = Seen()  # what conversations show of the window's filter

    @property
    def spent(self) -> int:
        return self.findings.requests

    # Requests

    def answer(
        self, bot: str, start: int, end: int, per_page: int, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page: its records and the cursor to the next, wherever the answer puts it."""
        if self.stop.is_set() or self.spent >= min(self.limit, MAX_REQUESTS):
            raise BudgetSpent
        self.findings.requests += 1
        params: dict[str, str | int] = {
            "bot_name": bot,
            "start_time": start,
            "end_time": end,
            "per_page": per_page,
        }
        if cursor is not None:
            params["cursor"] = cursor
        page = self.client.fetch(Query(self.endpoint, bot, params, Window(start, end)), params)
        document = msgspec.json.decode(page.body)
        records = [r for r in page.records().items if isinstance(r, dict)]
        for record in records:
            self.findings.saw_times(record)
            if isinstance(record.get("_id"), str):
                self.seen[record["_id"]] = (bot, record)
            if self.endpoint == "conversations":
                self.passive = self.passive.merged(_evidence(record, (start, end)))
        next_cursor = self.cursor_in(document)
        if len(records) >= per_page:
            self.findings.needed_cursor = True
        if not records and next_cursor is not None:
            self.findings.empty_with_cursor = True
        return records, next_cursor

    def cursor_in(self, document: dict[str, Any]) -> str | None:
        """The cursor of an answer: where earlier answers carried it, else found."""
        if self.cursor_path is None:
            found = find_cursor(document)
            if found is None:
                return None
            self.cursor_path, value = found
            if value is None:
                self.cursor_path = None  # a key, but no value yet to show it is the cursor
                return None
            self.findings.cursor_paths.add(".".join(self.cursor_path))
            return value
        return cursor_text(value_at(document, self.cursor_path))

    def window(self, bot: str, start: int, end: int) -> Fetched:
        """Every record of a window, ``page_size`` a page; a refused window (HTTP 400) comes
        back empty with the API's answer. Asked once per run."""
        key = (bot, start, end, self.page_size)
        if key not in self.windows:
            self.windows[key] = self._fetch(bot, start, end)
        return self.windows[key]

    def _fetch(self, bot: str, start: int, end: int) -> Fetched:
        fetched = Fetched()
        cursors: set[str] = set()
        cursor: str | None = None
        while True:
            try:
                records, cursor_next = self.answer(bot, start, end, self.page_size, cursor)
            except RequestRejectedError as exc:
                # Refused before any page: the window itself. A refused cursor is an error.
                if cursor is not None or exc.status != HTTPStatus.BAD_REQUEST:
                    raise
                return Fetched(rejected=str(exc))
            fetched.records += records
            fetched.pages.append(len(records))
            if cursor_next is None:
                if cursor is None and len(records) >= self.page_size and end - start >= 2:
                    return self._split(bot, start, end, records)
                break
            if cursor_next in cursors:
                raise PaginationError(
                    f"The Export API sent the same cursor twice while paging {self.endpoint} "
                    f"for bot '{bot}' (start_time={start}, end_time={end}); stopping."
                )
            cursors.add(cursor_next)
            cursor = cursor_next
        findings = self.findings
        findings.largest_page = max(findings.largest_page, *fetched.pages)
        findings.most_in_a_window = max(findings.most_in_a_window, len(fetched.records))
        findings.paged_past = findings.paged_past or sum(1 for n in fetched.pages if n) > 1
        return fetched

    def _split(self, bot: str, start: int, end: int, first: list[dict[str, Any]]) -> Fetched:
        """A full first page with no cursor to follow: the window's halves, as a run does."""
        if self.findings.unfollowable is None:
            self.findings.unfollowable = (
                f"a page of {len(first)} records, as many as asked, came with nothing but "
                "its records to follow"
            )
        self.findings.largest_page = max(self.findings.largest_page, len(first))
        middle = start + (end - start) // 2
        halves = [self._fetch(bot, start, middle), self._fetch(bot, middle, end)]
        records = {r.get("_id"): r for half in halves for r in half.records}
        return Fetched(list(records.values()), [n for half in halves for n in half.pages])

    # Probes

    def run(self, bots: list[str], end: int, max_window_days: int) -> Findings:
        survey = self.survey(bots, end)
        self.limit = MAX_REQUESTS - PROBE_REQUESTS
        bot = self.ladder_bot(bots, survey, max_window_days)
        self.findings.longest_window_days = self.longest_window(bot, end, max_window_days)
        self.limit = MAX_REQUESTS
        self.probe_cursor()
        field_name = "time"
        if self.endpoint == "conversations":
            answer = self.probe_filter()
            self.findings.conversations_filter = answer
            field_name = answer.value
        start, end_ = self.probe_bounds(field_name)
        self.findings.start_inclusive, self.findings.end_inclusive = start, end_
        return self.findings

    def survey(self, bots: list[str], end: int) -> dict[str, Fetched]:
        self.limit = SURVEY_REQUESTS
        found: dict[str, Fetched] = {}
        try:
            for bot in bots:
                found[bot] = self.window(bot, end - DAY, end)
        except BudgetSpent:
            self.findings.skipped.append(
                f"the survey of the last day stopped after {len(found)} bot(s) "
                f"({SURVEY_REQUESTS} requests)"
            )
        return found

    def ladder_bot(self, bots: list[str], survey: dict[str, Fetched], max_days: int) -> str:
        """The busiest bot whose windows up to ``max_days`` should fit the requests left,
        else the quietest with records, else the first."""
        per_page = max(self.findings.largest_page, 1)
        left = self.limit - self.spent
        counts = {b: len(f.records) for b, f in survey.items() if not f.rejected}
        with_records = sorted((n, b) for b, n in counts.items() if n)
        fitting = [
            (n, b) for n, b in with_records if 2 * math.ceil(n * max_days / per_page) <= left
        ]
        if fitting:
            return fitting[-1][1]
        if with_records:
            return with_records[0][1]
        return bots[0]

    def longest_window(self, bot: str, end: int, max_days: int) -> Answer:
        top = max_days * DAY
        lengths = [length for length in LADDER if length < top] + [top]
        held: tuple[int, set[str]] | None = None  # the longest length that held, its records
        failed: tuple[int, str] | None = None
        checked = 0  # records the last length was checked against
        try:
            for length in lengths:
                checked = len(held[1]) if held else 0
                why = self._fails(bot, end, length, held[1] if held else set())
                if why is not None:
                    failed = (length, why)
                    break
                held = (length, self.window(bot, end - length, end).ids)
            while held is not None and failed is not None:
                step = DAY if held[0] >= DAY else HOUR
                if failed[0] - held[0] <= step:
                    break
                middle = held[0] + max(1, (failed[0] - held[0]) // (2 * step)) * step
                why = self._fails(bot, end, middle, held[1])
                if why is None:
                    held = (middle, self.window(bot, end - middle, end).ids)
                else:
                    failed = (middle, why)
        except BudgetSpent:
            shown = f"at least {_length(held[0])}" if held else "not known"
            return Answer(
                None,
                f"{shown}: longer windows were not probed within the requests allowed "
                f"(bot '{bot}')",
            )
        if failed is None and not checked:
            return Answer(
                None,
                f"windows of 1 hour to max_window_days ({max_days} days) were accepted for bot "
                f"'{bot}', but the shorter ones held no record to check the longer against: "
                "a window cut short cannot be told from a whole one",
            )
        if failed is None:
            return Answer(
                max_days,
                f"windows of 1 hour to max_window_days ({max_days} days) came back whole for "
                f"bot '{bot}', each holding every record of the shorter one before it "
                f"({checked} records in the last)",
            )
        if held is None:
            return Answer(None, failed[1])
        return Answer(
            _days(held[0]),
            f"{failed[1]}; one of {_length(held[0])} came back whole (bot '{bot}')",
        )

    def _fails(self, bot: str, end: int, length: int, shorter: set[str]) -> str | None:
        """Why a window of ``length`` ending at ``end`` failed, or None if it held."""
        fetched = self.window(bot, end - length, end)
        if fetched.rejected is not None:
            return f"a window of {_length(length)} was refused ({fetched.rejected})"
        missing = shorter - fetched.ids
        if missing:
            return (
                f"a window of {_length(length)} came back without {len(missing)} of the "
                "records of a shorter one within it: cut short"
            )
        return None

    def probe_cursor(self) -> None:
        """The fullest window seen, asked a few records a page, shows where the cursor is."""
        full = [(len(f.records), key) for key, f in self.windows.items() if len(f.records) > 2]
        if not full:
            return
        _, (bot, start, end, _) = max(full)
        try:
            records, cursor = self.answer(bot, start, end, CURSOR_PROBE_PER_PAGE)
            if cursor is None and len(records) >= CURSOR_PROBE_PER_PAGE:
                self.findings.unfollowable = (
                    f"a page of {len(records)} records (asked {CURSOR_PROBE_PER_PAGE}) from a "
                    f"window of {len(self.windows[bot, start, end, self.page_size].records)} "
                    "came with nothing but its records to follow"
                )
            while cursor is not None and not records:  # empty pages may lead on
                records, cursor = self.answer(bot, start, end, CURSOR_PROBE_PER_PAGE, cursor)
        except BudgetSpent:
            self.findings.skipped.append("the cursor probe (requests spent)")

    def probe_filter(self) -> Answer:
        """Which field the conversations window filters on: one conversation asked for with a
        two-second window around its start, and one around its last action. Each holds one of
        its times and not the other, even if the API writes times cut to the second."""
        candidates = []
        for bot, record in self.seen.values():
            start, last = _micros(record.get("startTime")), _micros(record.get("lastActionAt"))
            if start is None or last is None:
                continue
            start_second, last_second = start // MICROS, -(-last // MICROS)
            if (start_second + 1) * MICROS < last and last_second >= start_second + 2:
                candidates.append((last - start, bot, record, start_second, last_second))
        if not candidates:
            return self._passive_filter(
                "no conversation came back whose start and last action are seconds apart"
            )
        _, bot, record, start_second, last_second = max(candidates, key=lambda c: c[:2])
        try:
            around_start = self.window(bot, start_second - 1, start_second + 1)
            around_last = self.window(bot, last_second - 1, last_second + 1)
        except BudgetSpent:
            return self._passive_filter("the probe was left out (requests spent)")
        by_start, by_last = record["_id"] in around_start.ids, record["_id"] in around_last.ids
        what = (
            f"a conversation from {format_microseconds(start_second * MICROS)} to "
            f"{format_microseconds(last_second * MICROS)} came back for a window around its start: "
            f"{_yes(by_start)}; around its last action: {_yes(by_last)}"
        )
        if by_start != by_last:
            return Answer("startTime" if by_start else "lastActionAt", what)
        return Answer(None, f"{what}, which no single field explains")

    def _passive_filter(self, why: str) -> Answer:
        reading = filter_reading([self.passive])
        if reading is None:
            return Answer(None, why)
        sign = (
            "a conversation came back that started before its window"
            if reading == "lastActionAt"
            else "a conversation came back whose last action is after its window"
        )
        return Answer(reading, sign)

    def probe_bounds(self, field_name: str | None) -> tuple[Answer, Answer]:
        """Whether a record exactly on ``start_time``, then on ``end_time``, comes back.

        A time written in whole seconds may have been cut from a later one within that
        second: a record shown at ``T`` that comes back with ``start_time=T`` and not with
        ``end_time=T`` may be later than ``T``. Only answers that prove the record is at
        ``T`` count (it does not come back from ``T``, or it comes back up to ``T``), or
        times the API shows with fractions, or a record on a whole hour (a time cut to the
        second lands there once in 3,600). Up to ``EDGE_CANDIDATES`` records are tried."""
        if field_name is None:
            why = "the field the window filters on is not known"
            return Answer(None, why), Answer(None, why)
        times = [
            (moment, bot, record)
            for bot, record in self.seen.values()
            if (moment := _micros(record.get(field_name))) is not None
        ]
        shows_fractions = any(moment % MICROS for moment, _, _ in times) or any(
            kind == "unix_milliseconds"
            for (name, kind) in self.findings.time_kinds
            if name == field_name
        )
        on_second = [c for c in times if c[0] % MICROS == 0]
        if not on_second:
            why = f"no {self.endpoint} record came back timed on a whole second ({field_name})"
            return Answer(None, why), Answer(None, why)
        # Whole hours first, then whole minutes, the latest first.
        on_second.sort(key=lambda c: (c[0] % (3600 * MICROS) == 0, c[0] % (60 * MICROS) == 0, c[0]))
        for moment, bot, record in reversed(on_second[-EDGE_CANDIDATES:]):
            second = moment // MICROS
            try:
                after = self.window(bot, second, second + EDGE_PROBE_SECONDS)
                before = self.window(bot, second - EDGE_PROBE_SECONDS, second)
            except BudgetSpent:
                why = "the probe was left out (requests spent)"
                return Answer(None, why), Answer(None, why)
            from_it, up_to_it = record["_id"] in after.ids, record["_id"] in before.ids
            if shows_fractions:
                exact = "its time is exact: the API writes fractions of seconds"
            elif not from_it or up_to_it:
                exact = "so it is exactly at that second"
            elif moment % (3600 * MICROS) == 0:
                exact = "on a whole hour: most likely exact, though the API writes whole seconds"
            else:
                continue
            what = f"a {self.endpoint} record with {field_name} {format_microseconds(moment)}"
            return (
                Answer(from_it, f"{what} {_was(from_it)} with start_time={second} ({exact})"),
                Answer(up_to_it, f"{what} {_was(up_to_it)} with end_time={second} ({exact})"),
            )
        why = (
            f"{self.endpoint} records shown on a whole second came back with start_time at it "
            "and not with end_time at it: an inclusive start and exclusive end, or times cut "
            "to the second from later ones (the API writes whole seconds), which cannot be "
            "told apart"
        )
        return Answer(None, why), Answer(None, why)


def _evidence(record: dict[str, Any], bounds: tuple[int, int]) -> Seen:
    last = _micros(record.get("lastActionAt"))
    if last is None:
        return Seen()
    return evidence(_micros(record.get("startTime")), last, bounds)


def _micros(value: object) -> int | None:
    if value is None:
        return None
    try:
        return epoch_microseconds(value)
    except TimestampError:
        return None


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def _was(returned: bool) -> str:
    return "was returned" if returned else "was not returned"


def _days(seconds: int) -> float | int:
    days = seconds / DAY
    return int(days) if days.is_integer() else round(days, 3)


def _length(seconds: int) -> str:
    if seconds >= DAY:
        days = _days(seconds)
        return f"{days} day{'s' if days != 1 else ''}"
    hours = seconds / HOUR
    return f"{hours:g} hour{'s' if hours != 1 else ''}"


# The command


def client_for(
    config: Mapping[str, Any], endpoint: str, version: str, logger: logging.Logger
) -> ExportClient:
    """The client a run would use for ``endpoint``, one request at a time."""
    return ExportClient.from_settings(
        config,
        ENDPOINTS[endpoint],
        limiters=Limiters(),
        version=version,
        pool_size=1,
        counters=Counters(),
        logger=logger,
        give_up_advice=GIVE_UP_ADVICE,
    )


def run_diagnosis(config: Mapping[str, Any], *, version: str, logger: logging.Logger) -> None:
    """Probe both endpoints at once, then write the table on stderr and the JSON on stdout.
    An error of the API (a refused key, an API that cannot be reached) is raised as in a run."""
    end_date = config.get("end_date")
    end = to_unix_seconds(parse_timestamp(end_date)) if end_date else int(time.time())
    bots = list(config["bot_names"])
    page_size = int(config["page_size"])
    max_window_days = int(config["max_window_days"])
    stop = threading.Event()
    probers = [
        Prober(client_for(config, endpoint, version, logger), endpoint, page_size, stop)
        for endpoint in ENDPOINTS
    ]
    logger.info(
        "Diagnosing the Export API at %s on bots %s, data up to %s: at most %d requests per "
        "endpoint.",
        config["api_url"],
        ", ".join(bots),
        format_microseconds(end * MICROS),
        MAX_REQUESTS,
    )
    with ThreadPoolExecutor(max_workers=len(probers)) as pool:
        futures = [pool.submit(p.run, bots, end, max_window_days) for p in probers]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failed = [f.exception() for f in done if f.exception() is not None]
        if failed:
            stop.set()  # the other endpoint stops at its next request
            error = failed[0]
            assert error is not None
            raise error
        findings = [f.result() for f in futures]
    report = build_report(findings, page_size=page_size)
    requests = {f.endpoint: f.requests for f in findings}
    details = {
        "api_url": config["api_url"],
        "bots": bots,
        "data_until": format_microseconds(end * MICROS),
        "page_size": page_size,
        "max_window_days": max_window_days,
        "cursor_path": next(iter(sorted({p for f in findings for p in f.cursor_paths})), None),
        "empty_pages_with_cursor": any(f.empty_with_cursor for f in findings),
        "time_formats": time_formats(findings),
        "requests": requests,
        "left_out": [note for f in findings for note in f.skipped],
    }
    heading = (
        f"What the Export API does ({config['api_url']}, bots {', '.join(bots)}, data up to "
        f"{format_microseconds(end * MICROS)}):"
    )
    footer = [
        "Requests: "
        + ", ".join(f"{endpoint} {n}" for endpoint, n in requests.items())
        + f" (at most {MAX_REQUESTS} each). Nothing was written: no state, no records.",
        "The same report as JSON is on stdout: paste it into a bug report.",
    ]
    sys.stderr.write(table(report, heading, footer))
    sys.stderr.flush()
    sys.stdout.write(json.dumps(as_json(report, details), ensure_ascii=False) + "\n")
    sys.stdout.flush()
