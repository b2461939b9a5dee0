"""HTTP for the Export API: auth, the per-endpoint rate limiter, retries, the cursor pager
(each request under a deadline: ``deadlines``).

Errors are sorted three ways:
- retried with backoff: 429 (``Retry-After`` honoured), 5xx, 408, connection failures,
  an answer not complete within ``request_timeout``, and a 200 whose body is not JSON, has
  no ``data`` array or holds records that cannot be decoded;
- fatal at once: 401/403 (the key), 400/404 and other 4xx (the request itself), a redirect
  away from the configured API, an answer larger than ``max_answer_mb``, a cursor that cannot
  be sent back, pages that keep coming with nothing in them;
- fatal after the retry budget (``max_retries``) runs out.

Whatever the API answers, the key goes only to the configured scheme, host and port, and
text from the API is logged with the key masked.
"""

from __future__ import annotations

import email.utils
import logging
import math
import random
import threading
import time
from collections import deque
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, NamedTuple
from urllib.parse import quote, urljoin, urlsplit

import backoff
import msgspec
import requests

from tap_deepconverse.deadlines import Deadline, TimedAdapter, request_deadline
from tap_deepconverse.errors import (
    AnswerTooLargeError,
    ApiKeyRejectedError,
    ApiUnavailableError,
    PaginationError,
    RedirectRefusedError,
    RequestRejectedError,
)
from tap_deepconverse.windows import Window

# Spacing margin: remote clocks and queues are not ours, so stay a little under the limit.
RATE_MARGIN = 1.05
MAX_RETRY_AFTER_SECONDS = 120.0
CONNECT_TIMEOUT_SECONDS = 10.0
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 30.0

# What the operator can do once the retries are spent, in a run.
GIVE_UP_ADVICE = "The state of every finished window has been emitted; rerun to resume."

# Besides every 5xx.
RETRIED_STATUSES = frozenset({408, 429})
KEY_STATUSES = frozenset({401, 403})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5
# Pages in a row with no record (or the same records again) before a query is taken for an
# endless cursor. Generous: an archive scan may well return runs of empty pages.
MAX_PAGES_WITHOUT_RECORDS = 100
READ_CHUNK_BYTES = 64 * 1024
ERROR_BODY_BYTES = 64 * 1024  # of an error answer, enough for its message
MEGABYTE = 1024 * 1024


class RetriableError(Exception):
    """One attempt failed in a way that a later attempt may not."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


RETRIED_EXCEPTIONS: tuple[type[Exception], ...] = (
    RetriableError,
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
    ConnectionResetError,
)


# The API keys of this process, masked in any text that came from the API. Process-wide on
# purpose, unlike a run's state: errors are logged where no run exists (a tap that failed to
# start), and masking a key another tap of the process registered can only hide more.
_secrets: set[str] = set()
MASK = "***"


def register_secret(secret: str) -> None:
    if secret:
        _secrets.add(secret)


def mask_secrets(text: str) -> str:
    """``text`` with every registered key, as is or URL-encoded, replaced by ``***``."""
    for secret in _secrets:
        text = text.replace(secret, MASK).replace(quote(secret, safe=""), MASK)
    return text


def api_text(text: str, limit: int = 300) -> str:
    """Text from the API as it may be logged: the key masked, on one line, shortened."""
    text = " ".join(mask_secrets(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Origin(NamedTuple):
    """Where the key may be sent: the configured API's scheme, host and port."""

    scheme: str
    host: str
    port: int

    @staticmethod
    def of(url: str) -> Origin:
        """The origin of an http(s) URL; ValueError for anything else."""
        parts = urlsplit(url)
        port = parts.port  # ValueError when out of range or not a number
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        return Origin(
            parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)
        )


def redirect_problem(api: Origin, location: str) -> str | None:
    """Why a redirect to ``location`` (absolute) must not be followed with the key, or None
    when it stays on the API's own scheme, host and port."""
    try:
        target = Origin.of(location)
    except ValueError:
        scheme = location.partition(":")[0].lower() if ":" in location else ""
        if scheme.isalpha() and scheme not in ("http", "https"):
            return f"a URL of scheme {scheme!r}, not http(s)"
        return "a malformed URL"
    if api.scheme == "https" and target.scheme == "http":
        return "plain http, where the key would travel in clear"
    if target != api:
        return "another scheme, host or port than the configured api_url"
    return None


class RateLimiter:
    """Spaces request starts at least ``RATE_MARGIN / rate`` seconds apart, across threads,
    in the order callers came. Chains of pages ask again as soon as an answer is in; a window
    asked late must not wait on every page they ask after it, or the run ends on its chain.

    Every attempt passes here, retries included. ``pause`` holds all callers back after a 429.
    """

    def __init__(self, rate: float) -> None:
        self._turns = threading.Condition()
        self._queue: deque[object] = deque()
        self._next_start = 0.0
        self.rate = rate

    @property
    def rate(self) -> float:
        return self._rate

    @rate.setter
    def rate(self, value: float) -> None:
        if value <= 0:
            raise ValueError("rate must be positive")
        self._rate = value
        self._interval = RATE_MARGIN / value

    def acquire(self) -> None:
        """Wait for this caller's turn. The spacing counts from when a caller really goes,
        not from when it was due: a thread that wakes late (other threads holding the
        interpreter) must not bring the next request closer to it."""
        turn = object()
        with self._turns:
            self._queue.append(turn)
            try:
                while True:
                    now = time.monotonic()
                    first = self._queue[0] is turn
                    if first and now >= self._next_start:
                        self._next_start = now + self._interval
                        return
                    self._turns.wait(self._next_start - now if first else None)
            finally:
                self._queue.remove(turn)
                self._turns.notify_all()

    def pause(self, seconds: float) -> None:
        with self._turns:
            self._next_start = max(self._next_start, time.monotonic() + seconds)
            self._turns.notify_all()


class Limiters:
    """The rate limiters of one run, one per endpoint: every client of an endpoint in the run
    shares its limiter, and nothing is shared with another run in the same process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_url: dict[str, RateLimiter] = {}

    def of(self, endpoint_url: str, rate: float) -> RateLimiter:
        with self._lock:
            limiter = self._by_url.get(endpoint_url)
            if limiter is None:
                limiter = self._by_url[endpoint_url] = RateLimiter(rate)
            return limiter


class LimitedSession(requests.Session):
    """A session whose every send first waits for the endpoint's limiter."""

    def __init__(self, limiter: RateLimiter, pool_size: int) -> None:
        super().__init__()
        self.limiter = limiter
        adapter = TimedAdapter(pool_connections=1, pool_maxsize=pool_size)
        self.mount("http://", adapter)
        self.mount("https://", adapter)

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # noqa: ANN401
        self.limiter.acquire()
        return super().send(request, **kwargs)

    def resolve_redirects(
        self,
        *args: Any,  # noqa: ARG002, ANN401 - requests'
        **kwargs: Any,  # noqa: ARG002, ANN401
    ) -> Generator[requests.Response, None, None]:
        """Nothing: redirects are the client's to follow, after checking where they point.
        (Even with ``allow_redirects=False``, requests would read a redirect's whole body
        and parse its ``Location`` here.)"""
        yield from ()


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or HTTP-date), capped."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = moment.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def backoff_delays() -> Generator[float, BaseException | None, None]:
    """Wait generator for ``backoff``: ``Retry-After`` when the API sent one, else exponential
    backoff with full jitter."""
    error = yield 0.0  # primed by backoff
    attempt = 0
    while True:
        hinted = error.retry_after if isinstance(error, RetriableError) else None
        if hinted is not None:
            delay = hinted
        else:
            ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**attempt)
            delay = random.uniform(ceiling / 2, ceiling)
        attempt += 1
        error = yield delay


class _Envelope(msgspec.Struct):
    """A 200 answer: the records stay raw JSON (checked, not yet turned into objects)."""

    data: list[msgspec.Raw]
    cursor: Any = msgspec.UNSET


_envelope = msgspec.json.Decoder(_Envelope)
_members = msgspec.json.Decoder(dict[str, msgspec.Raw])

# Where the cursor is read. The contract never shows its key; this is the natural reading.
# Completeness does not rest on it: see the ``fetching`` module.
CURSOR_KEY = "cursor"


class Records(NamedTuple):
    """A page's records, decoded."""

    items: list[Any]
    repaired: int  # invalid UTF-8 sequences in strings, each replaced by U+FFFD


class UnreadableRecordsError(RetriableError):
    """A page's records cannot be decoded, though the answer's outline could."""


@dataclass(frozen=True)
class Page:
    """One page as fetched. Its records are kept as JSON text until they are emitted: a
    buffered page then costs its size in bytes, several times less than as Python objects."""

    data: list[msgspec.Raw]
    cursor: str | None
    body: bytes  # the whole answer (the records are views into it)
    cursor_key: bool = False  # the answer carried the cursor's key, even as null
    # The query and parameters it answered, to fetch it again if its records are unreadable.
    request: tuple[Query, Mapping[str, str | int]] | None = None

    @property
    def count(self) -> int:
        return len(self.data)

    @property
    def size(self) -> int:
        """Bytes of JSON held."""
        return sum(len(raw) for raw in self.data)

    @property
    def keys(self) -> tuple[str, ...]:
        """The answer's top-level keys, to report an unknown shape (read only then)."""
        try:
            return tuple(api_text(key, 80) for key in _members.decode(self.body))
        except msgspec.DecodeError:
            return ("(unreadable)",)

    @property
    def unexplained_keys(self) -> tuple[str, ...]:
        """Top-level keys besides the records and the cursor that hold a value: where a
        cursor under another name could be. A value that cannot be read counts as one."""
        try:
            members = _members.decode(self.body)
        except msgspec.DecodeError:
            return ("(unreadable)",)
        found: list[str] = []
        for key, raw in members.items():
            if key in ("data", CURSOR_KEY):
                continue
            try:
                holds = _holds_value(msgspec.json.decode(raw))
            except (msgspec.DecodeError, RecursionError):
                holds = True
            if holds:
                found.append(api_text(key, 80))
        return tuple(found)

    def records(self) -> Records:
        """The records, decoded; see :func:`decode_records`."""
        return decode_records(self.data)


def decode_records(data: list[msgspec.Raw]) -> Records:
    """Records from their JSON text. Invalid UTF-8 inside a string is replaced by U+FFFD and
    counted, not taken for an unreadable answer: the API would send the same bytes again on
    every run, and the export would be stuck at that window for good. Anything else that
    cannot be decoded (broken JSON, nesting too deep) raises UnreadableRecordsError."""
    text = b"[" + b",".join(data) + b"]"
    try:
        return Records(_decode_json(text), 0)
    except UnreadableRecordsError:
        try:
            text.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            raise  # valid UTF-8: the JSON itself is unreadable
    repaired = text.decode("utf-8", "replace")
    replaced = repaired.count(_REPLACEMENT) - text.count(_REPLACEMENT.encode())
    return Records(_decode_json(repaired.encode()), replaced)


_REPLACEMENT = "\ufffd"


def _decode_json(text: bytes) -> list[Any]:
    try:
        items: list[Any] = msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        raise UnreadableRecordsError(
            f"answered 200 with records that cannot be decoded ({api_text(str(exc), 120)})"
        ) from None
    except RecursionError:
        raise UnreadableRecordsError(
            "answered 200 with records nested too deep to be decoded"
        ) from None
    return items


class UnusableCursorError(Exception):
    """The answer's cursor is of a type that cannot be sent back as a query parameter."""

    def __init__(self, value: object) -> None:
        kind = {dict: "an object", list: "an array", bool: "a boolean"}.get(type(value), "a value")
        try:
            shown = msgspec.json.encode(value).decode()
        except (TypeError, RecursionError):
            shown = "..."
        super().__init__(f"{kind}, {api_text(shown, 80)}")


def sendable_cursor(value: object) -> str | None:
    """The cursor to send back: a string, or a number as text; None when the answer says
    there is no more (null, absent or empty). Anything else cannot be sent back, and may
    stand for more records: UnusableCursorError."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise UnusableCursorError(value)


def parse_page(body: bytes, request: tuple[Query, Mapping[str, str | int]] | None = None) -> Page:
    """The cursor and raw records of a 200 answer; a body that is not one is worth retrying.
    The whole body is validated as JSON here, inside the retry loop (the records' strings
    are decoded later, by :func:`decode_records`)."""
    try:
        envelope = _envelope.decode(body)
    except msgspec.ValidationError as exc:
        raise RetriableError(f"answered 200 without a 'data' array ({api_text(str(exc))})") from exc
    except msgspec.DecodeError as exc:
        message = f"answered 200 with a body that is not JSON ({len(body)} bytes)"
        raise RetriableError(message) from exc
    except RecursionError:
        raise RetriableError("answered 200 with JSON nested too deep to be read") from None
    cursor_key = envelope.cursor is not msgspec.UNSET
    cursor = sendable_cursor(envelope.cursor if cursor_key else None)
    return Page(envelope.data, cursor, body, cursor_key, request=request)


def _holds_value(value: object) -> bool:
    """Whether a JSON value holds anything but nulls and empty containers."""
    if isinstance(value, dict):
        return any(_holds_value(member) for member in value.values())
    if isinstance(value, list):
        return any(_holds_value(member) for member in value)
    return value is not None


def api_error_text(status: int, reason: str, body: bytes) -> str:
    """The API's own error message, short, on one line, with the key masked; falls back to
    the status line."""
    try:
        document = msgspec.json.decode(body)
    except (msgspec.DecodeError, RecursionError):
        document = None
    if isinstance(document, dict):
        parts = [str(document[k]) for k in ("error", "message") if document.get(k)]
        if parts:
            return api_text(": ".join(parts), 500)
    text = body.decode("utf-8", "replace").strip()
    return api_text(text) if text else f"{status} {reason}"


@dataclass
class Counters:
    """Thread-safe figures of one stream's run."""

    requests: int = 0
    retries: int = 0
    pages: int = 0
    records: int = 0
    duplicates: int = 0
    odd_records: int = 0
    windows: int = 0
    started: float = field(default_factory=time.monotonic)
    finished: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **amounts: int) -> None:
        with self._lock:
            for name, amount in amounts.items():
                setattr(self, name, getattr(self, name) + amount)
            self.finished = time.monotonic()


@dataclass(frozen=True)
class Query:
    """The fixed parameters of one paged query; only the cursor changes while paging."""

    endpoint: str
    bot_name: str
    params: Mapping[str, str | int]
    window: Window

    def over(self, window: Window) -> Query:
        """The same query over another window."""
        start_time, end_time = window.request_bounds
        params = {**self.params, "start_time": start_time, "end_time": end_time}
        return Query(self.endpoint, self.bot_name, params, window)

    def describe(self) -> str:
        start, end = self.params.get("start_time"), self.params.get("end_time")
        conversation = self.params.get("conversation_id")
        extra = f", conversation_id={conversation}" if conversation else ""
        return (
            f"{self.endpoint} for bot '{self.bot_name}' (start_time={start}, end_time={end}{extra})"
        )


@dataclass(frozen=True)
class WindowQueries:
    """How an endpoint is asked for one bot's window: the paged queries that together return
    it. With ``conversation_ids`` (a messages setting), one query per conversation."""

    endpoint: str
    per_page: int
    conversation_ids: tuple[str, ...] = ()

    def of(self, bot_name: str, window: Window, *, overhang: int = 0) -> list[Query]:
        """The queries of ``window``, asked ``overhang`` seconds past its end (see
        :meth:`WindowFetcher.overhang`)."""
        start_time, end_time = window.request_bounds
        params: dict[str, str | int] = {
            "bot_name": bot_name,
            "start_time": start_time,
            "end_time": end_time + overhang,
            "per_page": self.per_page,
        }
        if not self.conversation_ids:
            return [Query(self.endpoint, bot_name, params, window)]
        return [
            Query(self.endpoint, bot_name, {**params, "conversation_id": conversation}, window)
            for conversation in self.conversation_ids
        ]


class ExportClient:
    """Fetches pages of one endpoint with limits, retries and clear errors."""

    def __init__(
        self,
        *,
        url: str,
        api_key: str,
        user_agent: str,
        limiter: RateLimiter,
        max_retries: int,
        timeout: float,
        max_answer_bytes: int,
        pool_size: int,
        counters: Counters,
        logger: logging.Logger,
        give_up_advice: str = GIVE_UP_ADVICE,
    ) -> None:
        self.url = url
        self.give_up_advice = give_up_advice
        self.api = Origin.of(url)
        register_secret(api_key)
        self.session = LimitedSession(limiter, pool_size)
        self.session.headers.update({"x-api-key": api_key, "User-Agent": user_agent})
        self.max_tries = max_retries + 1
        self.timeout = (min(CONNECT_TIMEOUT_SECONDS, timeout), timeout)
        self.deadline_seconds = timeout
        self.max_answer_bytes = max_answer_bytes
        self.counters = counters
        self.logger = logger
        self._attempt_with_retries = backoff.on_exception(
            backoff_delays,
            RETRIED_EXCEPTIONS,
            max_tries=self.max_tries,
            jitter=None,
            on_backoff=self._on_retry,
            raise_on_giveup=True,
            logger=None,
        )(self._attempt)

    @classmethod
    def from_settings(
        cls,
        config: Mapping[str, Any],
        path: str,
        *,
        limiters: Limiters,
        version: str,
        pool_size: int,
        counters: Counters,
        logger: logging.Logger,
        give_up_advice: str = GIVE_UP_ADVICE,
    ) -> ExportClient:
        """The client of one endpoint (``path``) as the tap's settings configure it."""
        url = str(config["api_url"]).rstrip("/") + path
        return cls(
            url=url,
            api_key=config["api_key"],
            user_agent=f"tap-deepconverse/{version}",
            limiter=limiters.of(url, float(config["requests_per_second"])),
            max_retries=int(config["max_retries"]),
            timeout=float(config["request_timeout"]),
            max_answer_bytes=int(config["max_answer_mb"]) * MEGABYTE,
            pool_size=pool_size,
            counters=counters,
            logger=logger,
            give_up_advice=give_up_advice,
        )

    def pages(self, query: Query) -> Iterator[Page]:
        """Every page of a query, following the cursor until it is null. An empty page with a
        cursor is not the end; a cursor sent twice is an error, not a loop; and so are
        ``MAX_PAGES_WITHOUT_RECORDS`` pages in a row that bring no record, or the records of
        the page before again, each with a new cursor."""
        seen: set[str] = set()
        cursor: str | None = None
        barren = 0
        previous: tuple[int, bytes, bytes] | None = None
        while True:
            params = dict(query.params)
            if cursor is not None:
                params["cursor"] = cursor
            page = self.fetch(query, params)
            yield page
            if page.cursor is None:
                return
            if page.cursor in seen:
                raise PaginationError(
                    f"The Export API sent the same cursor twice while paging {query.describe()}; "
                    "stopping instead of looping."
                )
            seen.add(page.cursor)
            outline = _outline(page)
            barren = barren + 1 if outline is None or outline == previous else 0
            if barren == MAX_PAGES_WITHOUT_RECORDS // 5:
                self.logger.warning(
                    "The Export API sent %d pages in a row with no new record while paging %s; "
                    "following its cursor on, up to %d such pages.",
                    barren,
                    query.describe(),
                    MAX_PAGES_WITHOUT_RECORDS,
                )
            if barren >= MAX_PAGES_WITHOUT_RECORDS:
                raise PaginationError(
                    f"The Export API sent {barren} pages in a row with no new record, each "
                    f"with a new cursor, while paging {query.describe()}; stopping instead of "
                    "following the cursor forever."
                )
            previous = outline
            cursor = page.cursor

    def fetch(self, query: Query, params: Mapping[str, str | int]) -> Page:
        """One page, retried within the budget."""
        try:
            page: Page = self._attempt_with_retries(query, params)
        except RETRIED_EXCEPTIONS as exc:
            raise self._gave_up(query, exc) from None
        return page

    def records(self, page: Page) -> Records:
        """A page's records, decoded (see :func:`decode_records`). A page whose records
        cannot be decoded is an unreadable answer like any other: it is fetched again, within
        the retry budget, and then stops the run."""
        decoded = _decoded(page)
        if isinstance(decoded, Records):
            return decoded
        if page.request is None:
            raise ApiUnavailableError(f"The Export API {decoded}.")
        query, params = page.request
        delays = backoff_delays()
        next(delays)
        for attempt in range(1, self.max_tries):
            wait = delays.send(decoded)
            self._log_retry(query, wait, attempt, decoded)
            time.sleep(wait)
            decoded = _decoded(self.fetch(query, params))
            if isinstance(decoded, Records):
                return decoded
        raise self._gave_up(query, decoded)

    def _attempt(self, query: Query, params: Mapping[str, str | int]) -> Page:
        """One request, with its redirects, under one deadline."""
        with request_deadline(self.deadline_seconds) as deadline:
            try:
                response = self._follow_redirects(query, params)
                deadline.start()
                with response:
                    return self._answer(query, params, response, deadline)
            except (requests.RequestException, OSError) as exc:
                if deadline.expired:
                    raise self._late() from exc
                raise

    def _late(self) -> RetriableError:
        return RetriableError(
            f"no complete answer within {self.deadline_seconds:g}s (request_timeout)"
        )

    def _follow_redirects(self, query: Query, params: Mapping[str, str | int]) -> requests.Response:
        """The answer, after redirects that stay on the API's own scheme, host and port.
        Any other redirect stops the run: the key goes nowhere else."""
        url: str = self.url
        sent: Mapping[str, str | int] | None = params
        visited: set[str] = set()
        for _ in range(MAX_REDIRECTS + 1):
            self.counters.add(requests=1)
            response = self.session.get(
                url, params=sent, timeout=self.timeout, allow_redirects=False, stream=True
            )
            if response.status_code not in REDIRECT_STATUSES:
                return response
            response.close()
            visited.add(response.url)
            where = f"The Export API redirected {query.describe()} (HTTP {response.status_code})"
            location = response.headers.get("Location", "").strip()
            if not location:
                raise RedirectRefusedError(f"{where} without saying where to; stopping.")
            try:
                target = urljoin(response.url, location)
            except ValueError:
                target = location
            problem = redirect_problem(self.api, target)
            if problem is not None:
                raise RedirectRefusedError(
                    f"{where} to {api_text(target, 200)}: {problem}. The API key is sent only "
                    f"to the configured api_url, so the run stops; if the API has moved, set "
                    "'api_url' to its new address."
                )
            if target in visited:
                raise RedirectRefusedError(
                    f"{where} back to {api_text(target, 200)}, a redirect loop; stopping."
                )
            url, sent = target, None
        raise RedirectRefusedError(
            f"The Export API redirected {query.describe()} more than {MAX_REDIRECTS} times in "
            "a row; stopping."
        )

    def _answer(
        self,
        query: Query,
        params: Mapping[str, str | int],
        response: requests.Response,
        deadline: Deadline,
    ) -> Page:
        status = response.status_code
        if status == HTTPStatus.OK:
            try:
                return parse_page(self._read(query, response, deadline), (query, params))
            except UnusableCursorError as exc:
                raise PaginationError(
                    f"The Export API answered {query.describe()} with a cursor the tap cannot "
                    f"send back ({exc}). It may stand for more records of the window, so the "
                    "run stops rather than skip them; please report the answer's shape."
                ) from None
        error_text = api_error_text(
            status, response.reason, self._read(query, response, deadline, error=True)
        )
        if status in RETRIED_STATUSES or status >= HTTPStatus.INTERNAL_SERVER_ERROR:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if status == HTTPStatus.TOO_MANY_REQUESTS:
                self.session.limiter.pause(retry_after if retry_after is not None else 1.0)
            raise RetriableError(f"HTTP {status} {error_text}", retry_after)
        if status in KEY_STATUSES:
            raise ApiKeyRejectedError(
                f"The Export API refused the API key (HTTP {status}) for {query.describe()}. "
                "Check the 'api_key' setting: the key is under Account > API in the "
                "DeepConverse dashboard, visible to site admins only."
            )
        raise RequestRejectedError(
            f"The Export API rejected the request for {query.describe()} "
            f"(HTTP {status}): {error_text}",
            status=status,
        )

    def _read(
        self, query: Query, response: requests.Response, deadline: Deadline, *, error: bool = False
    ) -> bytes:
        """The body, read as it comes and bounded: at most ``max_answer_bytes`` as sent and
        once inflated (an error's body: its first ``ERROR_BODY_BYTES``)."""
        limit = ERROR_BODY_BYTES if error else self.max_answer_bytes
        declared = response.headers.get("Content-Length", "").strip()
        if not error and declared.isdigit() and int(declared) > limit:
            raise self._too_large(query, f"it announced {int(declared):,} bytes")
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_content(READ_CHUNK_BYTES):
            if deadline.expired:
                raise self._late()
            chunks.append(chunk)
            size += len(chunk)
            if size > limit or response.raw.tell() > limit:
                if error:
                    break
                compressed = response.headers.get("Content-Encoding", "identity") != "identity"
                inflated = "once inflated, " if compressed and size > limit else ""
                raise self._too_large(query, f"{inflated}it passed {limit:,} bytes")
        body = b"".join(chunks)
        return body[:limit] if error else body

    def _too_large(self, query: Query, how: str) -> AnswerTooLargeError:
        return AnswerTooLargeError(
            f"The Export API's answer to {query.describe()} is larger than max_answer_mb "
            f"({self.max_answer_bytes / MEGABYTE:g} MB): {how}. Stopping rather than reading "
            "it into memory; if pages this large are expected, raise 'max_answer_mb' or lower "
            "'page_size'."
        )

    def _gave_up(self, query: Query, error: BaseException) -> ApiUnavailableError:
        return ApiUnavailableError(
            f"Gave up on {query.describe()} after {self.max_tries} attempts: {_reason(error)}. "
            + self.give_up_advice
        )

    def _on_retry(self, details: Any) -> None:  # noqa: ANN401 - backoff's details dict
        query: Query = details["args"][0]  # _attempt's arguments
        self._log_retry(query, details["wait"], details["tries"], details.get("exception"))

    def _log_retry(
        self, query: Query, wait: float, tries: int, error: BaseException | None
    ) -> None:
        self.counters.add(retries=1)
        self.logger.warning(
            "Retrying %s in %.1fs (attempt %d of %d failed: %s)",
            query.describe(),
            wait,
            tries,
            self.max_tries,
            _reason(error),
        )


def _decoded(page: Page) -> Records | UnreadableRecordsError:
    try:
        return page.records()
    except UnreadableRecordsError as exc:
        return exc


def _outline(page: Page) -> tuple[int, bytes, bytes] | None:
    """What tells a page's records from the page before's, cheaply; None for no record."""
    if not page.data:
        return None
    return len(page.data), bytes(page.data[0]), bytes(page.data[-1])


def _reason(error: BaseException | None) -> str:
    if isinstance(error, RetriableError):
        return str(error)
    if isinstance(error, requests.exceptions.Timeout):
        return "the request timed out"
    if isinstance(error, requests.exceptions.ConnectionError):
        return "could not connect or the connection was reset"
    if isinstance(error, requests.exceptions.ChunkedEncodingError):
        return "the answer was cut short"
    if isinstance(error, requests.exceptions.ContentDecodingError):
        return "the answer could not be decompressed"
    return type(error).__name__ if error else "unknown error"
