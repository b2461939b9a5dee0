"""A local HTTP simulator of the DeepConverse Export API.

It follows the API contract and, where the contract is silent, lets the
caller pick a reading through `SimulatorOptions`. It can also misbehave on
purpose (rate limits, outages, broken answers) so clients can be tested, and
answer as no API should (`hostile`, see the `hostile` module).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import random
import re
import socket
import ssl
import struct
import sys
import threading
import time
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .dataset import BOUNDS, CONVERSATION_FILTERS, TIME_FORMATS, Dataset, Record, format_record
from .hostile import HOSTILE_KINDS, PAGE_KINDS, Writer, page_body, request_answer

__all__ = [
    "API_PATHS",
    "DEFAULT_API_KEY",
    "FAULT_KINDS",
    "HOSTILE_KINDS",
    "ORDERS",
    "STATS_PATH",
    "RequestLogEntry",
    "Simulator",
    "SimulatorOptions",
]

DEFAULT_API_KEY = "sim-key-0123456789abcdef"
API_PATHS = {
    "/conversations/export/v1/conversations": "conversations",
    "/conversations/export/v1/messages": "messages",
}
STATS_PATH = "/_simulator/stats"
ORDERS = ("asc", "desc", "random")
FAULT_KINDS = ("500", "502", "503", "504", "reset", "timeout", "badjson", "nodata")
MAX_PER_PAGE = 1000
NO_CURSOR = "none"

_JSON = "application/json; charset=utf-8"
_HTML = "text/html; charset=utf-8"
_INT = re.compile(r"-?[0-9]+")


@dataclass
class SimulatorOptions:
    """Behaviour switches; may be changed between requests of a running server."""

    api_key: str = DEFAULT_API_KEY
    bounds: str = "[)"  # window reading: "[)", "(]", "[]" or "()"
    order: str = "random"  # "asc", "desc" or "random" (stable within one query)
    time_format: str = "seconds"  # "seconds", "millis", "iso" or "float"
    conversation_filter: str = "startTime"  # or "lastActionAt"
    default_per_page: int = 100
    max_window_seconds: int | None = None  # longer windows get 400
    # Longer windows get a 200 holding only their first cut_window_seconds, nothing to tell.
    cut_window_seconds: int | None = None
    # At most this many records a page, whatever per_page asks (a server that serves less).
    page_cap: int | None = None
    rate_limit: float | None = 3.0  # requests per second per endpoint; None = unlimited
    retry_after: str | None = "1"  # Retry-After on 429; None = no header
    latency: float = 0.0  # seconds before each answer
    # Empty first page of every query (even an empty window), ~10% of later ones.
    empty_pages: bool = False
    fault_rate: float = 0.0
    fault_kinds: tuple[str, ...] = FAULT_KINDS
    hang_seconds: float = 3.0  # how long a "timeout" fault holds the socket
    fail_after: int | None = None  # 503 for everything after this many 200s
    # Each non-empty page also carries a record without `_id` and one with an unreadable time
    # (not part of the dataset): a client should report and skip them.
    odd_records: bool = False
    # A broken API that answers every later page with the cursor it was sent (a loop).
    repeat_cursor: bool = False
    # Where the answer carries the cursor: a top-level key, a dotted path to a nested one
    # ("pagination.cursor"), or "none": no cursor at all, only the first page of a query.
    cursor_key: str = "cursor"
    # The archive as it was at this moment (unix seconds): nothing later is served, and each
    # conversation is served as it was then (see Dataset.select). Moved forward between runs,
    # it shows conversations that change after they are first exported.
    as_of: float | None = None
    # Answer every API request as no API should: one of HOSTILE_KINDS (see the hostile module).
    hostile: str | None = None
    redirect_to: str | None = None  # base URL the redirect-other-host and -http kinds point to
    seed: int = 0  # seeds the fault draw and the random order

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError if a switch has an unknown value."""
        checks = (
            (self.bounds in BOUNDS, f"bounds must be one of {BOUNDS}"),
            (self.order in ORDERS, f"order must be one of {ORDERS}"),
            (self.time_format in TIME_FORMATS, f"time_format must be one of {TIME_FORMATS}"),
            (
                self.conversation_filter in CONVERSATION_FILTERS,
                f"conversation_filter must be one of {CONVERSATION_FILTERS}",
            ),
            (1 <= self.default_per_page <= MAX_PER_PAGE, "default_per_page must be 1..1000"),
            (self.rate_limit is None or self.rate_limit > 0, "rate_limit must be > 0"),
            (0.0 <= self.fault_rate <= 1.0, "fault_rate must be within [0, 1]"),
            (all(k in FAULT_KINDS for k in self.fault_kinds), f"fault_kinds: {FAULT_KINDS}"),
            (bool(self.fault_kinds) or self.fault_rate == 0, "fault_kinds is empty"),
            (self.latency >= 0, "latency must be >= 0"),
            (self.hang_seconds >= 0, "hang_seconds must be >= 0"),
            (self.fail_after is None or self.fail_after >= 0, "fail_after must be >= 0"),
            (
                self.max_window_seconds is None or self.max_window_seconds >= 0,
                "max_window_seconds must be >= 0",
            ),
            (
                bool(self.cursor_key) and all(self.cursor_key.split(".")),
                "cursor_key must be a key, a dotted path or 'none'",
            ),
            (self.as_of is None or self.as_of >= 0, "as_of must be unix seconds >= 0"),
            (
                not (self.cursor_key == NO_CURSOR and self.empty_pages),
                "empty_pages needs a cursor: without one nothing follows an empty page",
            ),
            (
                self.hostile is None or self.hostile in HOSTILE_KINDS,
                f"hostile must be one of {HOSTILE_KINDS}",
            ),
        )
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


@dataclass(frozen=True)
class RequestLogEntry:
    """One request as the simulator saw it (never holds the API key)."""

    arrived: float  # time.monotonic()
    endpoint: str  # "conversations", "messages" or "other"
    params: dict[str, str]
    status: int  # 0 when the connection was dropped without an answer
    fault: str | None  # a fault kind, "outage" for fail_after, else None
    api_key_ok: bool


@dataclass
class _Answer:
    status: int
    body: bytes = b""
    content_type: str = _JSON
    headers: list[tuple[str, str]] = field(default_factory=list)
    drop: str | None = None  # "reset" or "timeout": close without answering
    delay: float = 0.0
    writer: Writer | None = None  # streams the body after the headers (hostile answers)


class _RequestError(Exception):
    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.answer = _error(status, error, message)


def _json_answer(status: int, payload: object) -> _Answer:
    return _Answer(status, json.dumps(payload, ensure_ascii=False).encode("utf-8"))


def _error(status: int, error: str, message: str) -> _Answer:
    return _json_answer(status, {"error": error, "message": message})


def _outage() -> _Answer:
    return _error(503, "Service Unavailable", "The export archive is unavailable")


def _bad(message: str) -> _RequestError:
    return _RequestError(400, "Bad Request", message)


def _int_param(params: dict[str, str], name: str) -> int:
    value = params.get(name)
    if value is None or not _INT.fullmatch(value.strip()):
        raise _bad(f"{name} must be an integer (unix seconds)")
    return int(value)


class Simulator:
    """Serves a Dataset over HTTP in a daemon thread."""

    def __init__(
        self,
        dataset: Dataset,
        options: SimulatorOptions | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        certfile: str | None = None,
    ) -> None:
        self.dataset = dataset
        self.options = options if options is not None else SimulatorOptions()
        self.host = host
        self.port = port
        self.certfile = certfile  # a PEM with certificate and key: serve https
        self.requests: list[RequestLogEntry] = []
        self._lock = threading.Lock()
        # Each served record's JSON, made once: pages are then joined, not re-encoded, which
        # keeps answers fast and the server's timestamps of arrivals punctual.
        self._encoded: dict[tuple[int, str, str], bytes] = {}
        self._arrivals: dict[str, deque[float]] = {"conversations": deque(), "messages": deque()}
        self._successes = 0
        self._fault_rng = random.Random(self.options.seed)
        self._orders: OrderedDict[tuple[Any, ...], list[Record]] = OrderedDict()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._started = False

    # -- lifecycle ------------------------------------------------------

    def start(self) -> Simulator:
        """Start serving; port 0 picks a free port."""
        if self._server is not None:
            msg = "simulator already started"
            raise RuntimeError(msg)
        self.options.validate()
        # Built here, not by the first request: building holds the interpreter long enough to
        # delay the server's clock of other arrivals and fake a burst past the rate limit.
        self.dataset.build_indexes()
        self._stopping = threading.Event()
        server = _Server((self.host, self.port), _Handler)
        server.simulator = self
        if self.certfile is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.certfile)
            server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._started = True
        self.port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"deepconverse-simulator-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and drop open connections (kept-alive ones included)."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()  # wakes handlers waiting on latency or hangs
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:8787 (valid once started, also after stop)."""
        if not self._started:
            msg = "simulator not started"
            raise RuntimeError(msg)
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host  # noqa: S104
        scheme = "http" if self.certfile is None else "https"
        return f"{scheme}://{host}:{self.port}"

    # -- log ------------------------------------------------------------

    def reset_log(self) -> None:
        """Forget logged requests, rate-limit arrivals and the fail_after count."""
        with self._lock:
            self.requests.clear()
            for arrivals in self._arrivals.values():
                arrivals.clear()
            self._successes = 0
            self._fault_rng = random.Random(self.options.seed)

    def max_requests_in_any_second(self, endpoint: str) -> int:
        """Most arrivals to one endpoint within any sliding 1.0 s window."""
        with self._lock:
            times = sorted(e.arrived for e in self.requests if e.endpoint == endpoint)
        best = 0
        first = 0
        for last, t in enumerate(times):
            while t - times[first] >= 1.0:
                first += 1
            best = max(best, last - first + 1)
        return best

    def stats(self) -> dict[str, Any]:
        """Figures served at /_simulator/stats."""
        with self._lock:
            entries = list(self.requests)
        endpoints = ("conversations", "messages")
        return {
            "requests": {ep: sum(e.endpoint == ep for e in entries) for ep in endpoints},
            "statuses": dict(sorted(Counter(str(e.status) for e in entries).items())),
            "max_per_second": {ep: self.max_requests_in_any_second(ep) for ep in endpoints},
            "mean_per_second": {ep: _mean_rate(entries, ep) for ep in endpoints},
            "pages_in_a_row": {ep: _pages_in_a_row(entries, ep) for ep in endpoints},
            "records": {ep: self.dataset.count(ep) for ep in endpoints},
        }

    def _log(self, entry: RequestLogEntry) -> None:
        # Answers may be decided out of order; keep the log in arrival order.
        with self._lock:
            index = len(self.requests)
            while index and self.requests[index - 1].arrived > entry.arrived:
                index -= 1
            self.requests.insert(index, entry)

    # -- answering ------------------------------------------------------

    def _answer(
        self, path: str, params: dict[str, str], api_key: str | None, arrived: float
    ) -> _Answer:
        """Decide the answer to one API request and log it."""
        opts = self.options
        endpoint = API_PATHS.get(path, "other")
        key_ok = api_key is not None and hmac.compare_digest(
            api_key.encode("utf-8"), opts.api_key.encode("utf-8")
        )
        fault: str | None = None
        recent = 0
        if endpoint != "other":
            with self._lock:
                # Every arrival counts, even the ones that get a 429.
                arrivals = self._arrivals[endpoint]
                arrivals.append(arrived)
                while arrivals and arrivals[0] <= arrived - 1.0:
                    arrivals.popleft()
                recent = len(arrivals)

        if endpoint == "other":
            answer = _error(404, "Not Found", f"No route for GET {path}")
        elif not key_ok:
            answer = _error(401, "Unauthorized", "Invalid or missing API key")
        elif opts.rate_limit is not None and recent > opts.rate_limit:
            answer = _error(
                429,
                "Too Many Requests",
                f"Rate limit of {opts.rate_limit:g} requests per second per endpoint exceeded",
            )
            if opts.retry_after is not None:
                answer.headers.append(("Retry-After", opts.retry_after))
        else:
            fault, answer = self._serve(endpoint, path, params, api_key, opts)
        if answer.drop is None:
            answer.delay = opts.latency
        self._log(RequestLogEntry(
            arrived=arrived,
            endpoint=endpoint,
            params=dict(params),
            status=0 if answer.drop else answer.status,
            fault=fault,
            api_key_ok=key_ok,
        ))  # fmt: skip
        return answer

    def _serve(
        self,
        endpoint: str,
        path: str,
        params: dict[str, str],
        api_key: str | None,
        opts: SimulatorOptions,
    ) -> tuple[str | None, _Answer]:
        """A hostile answer, an outage, a random fault or the real answer, for an admitted
        request."""
        if opts.hostile is not None:
            hostile = request_answer(
                opts.hostile,
                url=self.url,
                path=path,
                params=params,
                redirect_to=opts.redirect_to,
                api_key=api_key,
            )
            if hostile is not None:
                headers = [h for h in hostile.headers if h[0] != "Content-Type"]
                answer = _Answer(hostile.status, hostile.body, headers=headers)
                if hostile.writer is not None:
                    answer = _Answer(hostile.status, headers=hostile.headers, writer=hostile.writer)
                return "hostile", answer
        with self._lock:
            if opts.fail_after is not None and self._successes >= opts.fail_after:
                return "outage", _outage()
            if opts.fault_rate > 0 and self._fault_rng.random() < opts.fault_rate:
                kind = self._fault_rng.choice(opts.fault_kinds)
                variant = self._fault_rng.random()
                return kind, _fault_answer(kind, variant, opts.hang_seconds)
        try:
            answer = self._query(endpoint, params, opts)
        except _RequestError as exc:
            return None, exc.answer
        with self._lock:
            # Checked again: concurrent requests must not overshoot fail_after.
            if opts.fail_after is not None and self._successes >= opts.fail_after:
                return "outage", _outage()
            self._successes += 1
        return None, answer

    def _query(self, endpoint: str, params: dict[str, str], opts: SimulatorOptions) -> _Answer:
        start = _int_param(params, "start_time")
        end = _int_param(params, "end_time")
        if end < start:
            raise _bad("end_time must not be before start_time")
        limit = opts.max_window_seconds
        if limit is not None and end - start > limit:
            raise _bad(f"The window from start_time to end_time must not exceed {limit} seconds")
        bot = params.get("bot_name")
        if not bot:
            raise _bad("bot_name is required")
        if bot not in self.dataset.bots:
            raise _RequestError(404, "Not Found", f"Bot '{bot}' not found")
        per_page = opts.default_per_page
        if "per_page" in params:
            raw = params["per_page"].strip()
            if not _INT.fullmatch(raw) or not 1 <= int(raw) <= MAX_PER_PAGE:
                raise _bad(f"per_page must be an integer between 1 and {MAX_PER_PAGE}")
            per_page = int(raw)
        query = _Query(
            endpoint=endpoint,
            bot=bot,
            start=start,
            end=end,
            per_page=per_page,
            conversation_id=params.get("conversation_id") if endpoint == "messages" else None,
        )
        signature = query.signature
        cursor = params.get("cursor")
        offset, page_no = (0, 0) if cursor is None else _decode_cursor(cursor, signature)
        if opts.page_cap is not None:
            per_page = min(per_page, opts.page_cap)

        records = self._ordered(query, opts)
        page: list[Record] = []
        next_offset = offset
        if opts.hostile == "endless-cursor":
            pass  # nothing, and a new cursor: forever
        elif opts.empty_pages and cursor is None:
            pass  # the first page of every query is empty
        elif offset >= len(records):
            next_offset = -1
        elif opts.empty_pages and _draw_empty(opts.seed, signature, page_no):
            pass  # an occasional empty page in the middle
        else:
            page = records[offset : offset + per_page]
            next_offset = offset + per_page
            if next_offset >= len(records):
                next_offset = -1
        next_cursor = (
            None if next_offset < 0 else _encode_cursor(signature, next_offset, page_no + 1)
        )
        if opts.repeat_cursor and cursor is not None:
            next_cursor = cursor
        if opts.hostile in PAGE_KINDS:
            return self._hostile_page(query, page, next_cursor, first_page=cursor is None)
        parts = [self._encode(endpoint, r, opts.time_format) for r in page]
        if opts.odd_records and page:
            first = format_record(endpoint, page[0], opts.time_format)
            time_field = "time" if endpoint == "messages" else "lastActionAt"
            odd = [
                {k: v for k, v in first.items() if k != "_id"},
                {**first, "_id": f"odd{offset:029d}", time_field: "soon"},
            ]
            parts += [json.dumps(r, ensure_ascii=False).encode("utf-8") for r in odd]
        return _Answer(200, b'{"data": [' + b", ".join(parts) + b"]" + _cursor_part(
            opts.cursor_key, next_cursor
        ) + b"}")  # fmt: skip

    def _hostile_page(
        self, query: _Query, page: list[Record], cursor: str | None, *, first_page: bool
    ) -> _Answer:
        opts = self.options
        assert opts.hostile is not None
        before = None
        if first_page and opts.hostile == "newer-duplicates":
            earlier = self.dataset.select(
                query.endpoint,
                query.bot,
                query.start - 31 * 86_400,
                query.start,
                conversation_filter=opts.conversation_filter,
                conversation_id=query.conversation_id,
            )
            before = earlier[-1] if earlier else None
        return _Answer(200, page_body(
            opts.hostile, query.endpoint, page, time_format=opts.time_format, cursor=cursor,
            first_page=first_page, before=before,
        ))  # fmt: skip

    def _encode(self, endpoint: str, record: Record, time_format: str) -> bytes:
        key = (id(record), endpoint, time_format)
        encoded = self._encoded.get(key)
        if encoded is None:
            served = format_record(endpoint, record, time_format)
            encoded = self._encoded[key] = json.dumps(served, ensure_ascii=False).encode("utf-8")
        return encoded

    def _ordered(self, query: _Query, opts: SimulatorOptions) -> list[Record]:
        """The window's records in serving order, cached so paging stays cheap."""
        signature = query.signature
        key = (
            signature, opts.bounds, opts.conversation_filter, opts.order,
            opts.seed, opts.cut_window_seconds, opts.as_of, self.dataset.version,
        )  # fmt: skip
        with self._lock:
            found = self._orders.get(key)
            if found is not None:
                self._orders.move_to_end(key)
                return found
        end = query.end
        if opts.cut_window_seconds is not None:
            end = min(end, query.start + opts.cut_window_seconds)
        records = self.dataset.select(
            query.endpoint,
            query.bot,
            query.start,
            end,
            bounds=opts.bounds,
            conversation_filter=opts.conversation_filter,
            conversation_id=query.conversation_id,
            as_of=opts.as_of,
        )
        if opts.order == "desc":
            records.reverse()
        elif opts.order == "random":
            # Seeded by the query, so every page of it sees the same order.
            random.Random(f"{opts.seed}|{signature}").shuffle(records)
        with self._lock:
            self._orders[key] = records
            while len(self._orders) > 16:
                self._orders.popitem(last=False)
        return records


@dataclass(frozen=True)
class _Query:
    """The parameters that stay fixed while one window is paged."""

    endpoint: str
    bot: str
    start: int
    end: int
    per_page: int
    conversation_id: str | None

    @property
    def signature(self) -> str:
        fixed = json.dumps(
            [self.endpoint, self.bot, self.start, self.end, self.per_page, self.conversation_id]
        )
        return hashlib.sha256(fixed.encode("utf-8")).hexdigest()[:16]


def _cursor_part(cursor_key: str, cursor: str | None) -> bytes:
    """The answer's members after ``data`` that carry the cursor where ``cursor_key`` says."""
    if cursor_key == NO_CURSOR:
        return b""
    *outer, name = cursor_key.split(".")
    value: object = {name: cursor}
    for key in reversed(outer):
        value = {key: value}
    assert isinstance(value, dict)
    return b"".join(
        b", " + json.dumps(key).encode() + b": " + json.dumps(member).encode()
        for key, member in value.items()
    )


def _mean_rate(entries: list[RequestLogEntry], endpoint: str) -> float:
    """Requests per second to one endpoint between its first and last arrival."""
    times = [e.arrived for e in entries if e.endpoint == endpoint]
    if len(times) < 2 or times[-1] == times[0]:
        return 0.0
    return (len(times) - 1) / (times[-1] - times[0])


def _encode_cursor(signature: str, offset: int, page_no: int) -> str:
    payload = f"{signature}:{offset}:{page_no}"
    check = hashlib.sha256(payload.encode("ascii")).hexdigest()[:8]
    raw = f"{payload}:{check}".encode("ascii")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _cursor_fields(cursor: str) -> tuple[str, int, int] | None:
    """The query signature, offset and page number of an untouched cursor, else None."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        payload, _, check = raw.rpartition(":")
        sig, offset, page_no = payload.split(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    valid = (
        hmac.compare_digest(check, hashlib.sha256(payload.encode("ascii")).hexdigest()[:8])
        and offset.isdigit()
        and page_no.isdigit()
    )
    return (sig, int(offset), int(page_no)) if valid else None


def _decode_cursor(cursor: str, signature: str) -> tuple[int, int]:
    """Offset and page number of an untouched cursor made for this very query."""
    fields = _cursor_fields(cursor)
    if fields is None or fields[0] != signature:
        raise _bad("Invalid cursor")
    return fields[1], fields[2]


def _page_index(params: dict[str, str]) -> int | None:
    """0 for a query's first page, n for the page its n-th cursor brought; None for a
    cursor this simulator did not make."""
    cursor = params.get("cursor")
    if cursor is None:
        return 0
    fields = _cursor_fields(cursor)
    return None if fields is None else fields[2]


def _pages_in_a_row(entries: list[RequestLogEntry], endpoint: str) -> dict[str, int]:
    """Queries to one endpoint by how many pages were asked of them one after the other
    (the first page, then each page its cursor brought; answers with status 200): the
    key is the pages, the value the queries."""
    indexes = (_page_index(e.params) for e in entries if e.endpoint == endpoint and e.status == 200)
    reached = Counter(index for index in indexes if index is not None)
    found = {index + 1: reached[index] - reached[index + 1] for index in reached}
    return {str(pages): count for pages, count in sorted(found.items()) if count > 0}


def _draw_empty(seed: int, signature: str, page_no: int) -> bool:
    digest = hashlib.sha256(f"{seed}|{signature}|{page_no}".encode()).digest()
    return digest[0] % 10 == 0


def _fault_answer(kind: str, variant: float, hang_seconds: float) -> _Answer:
    if kind == "500":
        return _error(500, "Internal Server Error", "An unexpected error occurred")
    if kind == "502":
        body = (
            "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
            "<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n"
        )
        return _Answer(502, body.encode("utf-8"), _HTML)
    if kind == "503":
        return _json_answer(503, {"message": "Service Unavailable"})
    if kind == "504":
        return _json_answer(504, {"message": "Endpoint request timed out"})
    if kind == "reset":
        return _Answer(0, drop="reset")
    if kind == "timeout":
        return _Answer(0, drop="timeout", delay=hang_seconds)
    if kind == "badjson":
        if variant < 0.5:  # a body cut short
            return _Answer(200, b'{"data": [{"_id": "5c80416892d94e40a64cea7dc6406e25", "st')
        html = "<html><body><h1>Scheduled maintenance</h1><p>Back soon.</p></body></html>"
        return _Answer(200, html.encode("utf-8"), _HTML)
    return _json_answer(200, {"message": "ok"})  # "nodata"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    simulator: Simulator

    def __init__(self, address: tuple[str, int], handler: type[_Handler]) -> None:
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, handler)

    def close_connections(self) -> None:
        with self.connections_lock:
            connections = list(self.connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: object
    ) -> None:
        # Clients hanging up is normal here; only report real bugs.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "DeepConverseSimulator/1.0"
    timeout = 120  # idle keep-alive connections are closed after this
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without this, Nagle's
        # algorithm and delayed ACKs add ~40 ms to every kept-alive request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.connections_lock:
                self.server.connections.discard(self.connection)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Stay quiet: no line per request."""

    def do_GET(self) -> None:
        arrived = time.monotonic()
        length = int(self.headers.get("Content-Length") or 0)
        if length > 0:
            self.rfile.read(length)
        simulator = self.server.simulator
        split = urlsplit(self.path)
        if split.path == STATS_PATH:
            self._send(_json_answer(200, simulator.stats()))
            return
        params: dict[str, str] = {}
        for name, value in parse_qsl(split.query, keep_blank_values=True):
            params.setdefault(name, value)
        answer = simulator._answer(split.path, params, self.headers.get("x-api-key"), arrived)
        self._send(answer)

    def _send(self, answer: _Answer) -> None:
        stopping = self.server.simulator._stopping
        if answer.writer is not None:
            self.close_connection = True
            self.send_response(answer.status)
            for name, value in answer.headers:
                self.send_header(name, value)
            self.end_headers()
            with contextlib.suppress(OSError):  # the client hung up, as it should
                answer.writer(self.wfile, stopping)
            return
        if answer.drop == "reset":
            # SO_LINGER 0 makes close() send a TCP reset instead of a FIN.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return
        if answer.drop == "timeout":
            stopping.wait(answer.delay)
            self.close_connection = True
            return
        if answer.delay > 0:
            stopping.wait(answer.delay)
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        for name, value in answer.headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(answer.body)
