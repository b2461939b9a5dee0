"""HTTP for the Export API: auth, the per-endpoint rate limiter, retries, the cursor pager.

Errors are sorted three ways:
- retried with backoff: 429 (``Retry-After`` honoured), 5xx, 408, connection failures,
  timeouts, and a 200 whose body is not JSON or has no ``data`` array;
- fatal at once: 401/403 (the key), 400/404 and other 4xx (the request itself);
- fatal after the retry budget (``max_retries``) runs out.
"""

from __future__ import annotations

import datetime
import email.utils
import logging
import math
import random
import threading
import time
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import backoff
import msgspec
import requests
from requests.adapters import HTTPAdapter

from tap_deepconverse.errors import (
    ApiKeyRejectedError,
    ApiUnavailableError,
    PaginationError,
    RequestRejectedError,
)
from tap_deepconverse.timestamps import UTC
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


class RateLimiter:
    """Spaces request starts at least ``RATE_MARGIN / rate`` seconds apart, across threads.

    Every attempt passes here, retries included. ``pause`` holds all callers back after a 429.
    """

    def __init__(self, rate: float) -> None:
        self._lock = threading.Lock()
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
        while True:
            with self._lock:
                now = time.monotonic()
                if now >= self._next_start:
                    self._next_start = now + self._interval
                    return
                wait = self._next_start - now
            time.sleep(wait)

    def pause(self, seconds: float) -> None:
        with self._lock:
            self._next_start = max(self._next_start, time.monotonic() + seconds)


_limiters: dict[str, RateLimiter] = {}
_limiters_lock = threading.Lock()


def limiter_for(endpoint_url: str, rate: float) -> RateLimiter:
    """The process-wide limiter of one endpoint: every stream and thread that calls it shares it."""
    with _limiters_lock:
        limiter = _limiters.get(endpoint_url)
        if limiter is None:
            limiter = _limiters[endpoint_url] = RateLimiter(rate)
        elif limiter.rate != rate:
            limiter.rate = rate
        return limiter


class LimitedSession(requests.Session):
    """A session whose every send first waits for the endpoint's limiter."""

    def __init__(self, limiter: RateLimiter, pool_size: int) -> None:
        super().__init__()
        self.limiter = limiter
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size)
        self.mount("http://", adapter)
        self.mount("https://", adapter)

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # noqa: ANN401
        self.limiter.acquire()
        return super().send(request, **kwargs)


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


@dataclass(frozen=True)
class Page:
    """One page as fetched. Its records are kept as JSON text until they are emitted: a
    buffered page then costs its size in bytes, several times less than as Python objects."""

    data: list[msgspec.Raw]
    cursor: str | None
    body: bytes  # the whole answer (the records are views into it)
    cursor_key: bool = False  # the answer carried the cursor's key, even as null
    fetched_at: datetime.datetime = field(default_factory=lambda: datetime.datetime.now(UTC))

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
        return tuple(_members.decode(self.body))

    @property
    def unexplained_keys(self) -> tuple[str, ...]:
        """Top-level keys besides the records and the cursor that hold a value: where a
        cursor under another name could be."""
        return tuple(
            key
            for key, raw in _members.decode(self.body).items()
            if key not in ("data", CURSOR_KEY) and _holds_value(msgspec.json.decode(raw))
        )

    def records(self) -> list[Any]:
        records: list[Any] = msgspec.json.decode(b"[" + b",".join(self.data) + b"]")
        return records


def parse_page(body: bytes) -> Page:
    """The cursor and raw records of a 200 answer; a body that is not one is worth retrying.
    The whole body is validated as JSON here, inside the retry loop."""
    try:
        envelope = _envelope.decode(body)
    except msgspec.ValidationError as exc:
        raise RetriableError(f"answered 200 without a 'data' array ({exc})") from exc
    except msgspec.DecodeError as exc:
        message = f"answered 200 with a body that is not JSON ({len(body)} bytes)"
        raise RetriableError(message) from exc
    cursor = envelope.cursor
    cursor_key = cursor is not msgspec.UNSET
    if isinstance(cursor, int | float) and not isinstance(cursor, bool):
        cursor = str(cursor)
    elif not isinstance(cursor, str):
        cursor = None  # an object or a flag cannot be sent back as a query parameter
    return Page(envelope.data, cursor or None, body, cursor_key)


def _holds_value(value: object) -> bool:
    """Whether a JSON value holds anything but nulls and empty containers."""
    if isinstance(value, dict):
        return any(_holds_value(member) for member in value.values())
    if isinstance(value, list):
        return any(_holds_value(member) for member in value)
    return value is not None


def api_error_text(response: requests.Response) -> str:
    """The API's own error message, short; falls back to the status line."""
    try:
        document = msgspec.json.decode(response.content)
    except msgspec.DecodeError:
        document = None
    if isinstance(document, dict):
        parts = [str(document[k]) for k in ("error", "message") if document.get(k)]
        if parts:
            return ": ".join(parts)[:500]
    text = response.text.strip()
    return text[:300] if text else f"{response.status_code} {response.reason}"


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


class ExportClient:
    """Fetches pages of one endpoint with limits, retries and clear errors."""

    def __init__(
        self,
        *,
        url: str,
        api_key: str,
        user_agent: str,
        requests_per_second: float,
        max_retries: int,
        timeout: float,
        pool_size: int,
        counters: Counters,
        logger: logging.Logger,
        give_up_advice: str = GIVE_UP_ADVICE,
    ) -> None:
        self.url = url
        self.give_up_advice = give_up_advice
        self.session = LimitedSession(limiter_for(url, requests_per_second), pool_size)
        self.session.headers.update({"x-api-key": api_key, "User-Agent": user_agent})
        self.max_tries = max_retries + 1
        self.timeout = (CONNECT_TIMEOUT_SECONDS, timeout)
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

    def pages(self, query: Query) -> Iterator[Page]:
        """Every page of a query, following the cursor until it is null. An empty page with a
        cursor is not the end; a cursor sent twice is an error, not a loop."""
        seen: set[str] = set()
        cursor: str | None = None
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
            cursor = page.cursor

    def fetch(self, query: Query, params: Mapping[str, str | int]) -> Page:
        """One page, retried within the budget."""
        try:
            return self._attempt_with_retries(query, params)
        except RETRIED_EXCEPTIONS as exc:
            raise ApiUnavailableError(
                f"Gave up on {query.describe()} after {self.max_tries} attempts: {_reason(exc)}. "
                + self.give_up_advice
            ) from None

    def _attempt(self, query: Query, params: Mapping[str, str | int]) -> Page:
        self.counters.add(requests=1)
        response = self.session.get(self.url, params=params, timeout=self.timeout)
        status = response.status_code
        if status == HTTPStatus.OK:
            return parse_page(response.content)
        if status in RETRIED_STATUSES or status >= HTTPStatus.INTERNAL_SERVER_ERROR:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if status == HTTPStatus.TOO_MANY_REQUESTS:
                self.session.limiter.pause(retry_after if retry_after is not None else 1.0)
            raise RetriableError(f"HTTP {status} {api_error_text(response)}", retry_after)
        if status in KEY_STATUSES:
            raise ApiKeyRejectedError(
                f"The Export API refused the API key (HTTP {status}) for {query.describe()}. "
                "Check the 'api_key' setting: the key is under Account > API in the "
                "DeepConverse dashboard, visible to site admins only."
            )
        raise RequestRejectedError(
            f"The Export API rejected the request for {query.describe()} "
            f"(HTTP {status}): {api_error_text(response)}",
            status=status,
        )

    def _on_retry(self, details: Any) -> None:  # noqa: ANN401 - backoff's details dict
        query: Query = details["args"][0]  # _attempt's arguments
        self.counters.add(retries=1)
        self.logger.warning(
            "Retrying %s in %.1fs (attempt %d of %d failed: %s)",
            query.describe(),
            details["wait"],
            details["tries"],
            self.max_tries,
            _reason(details.get("exception")),
        )


def _reason(error: BaseException | None) -> str:
    if isinstance(error, RetriableError):
        return str(error)
    if isinstance(error, requests.exceptions.Timeout):
        return "the request timed out"
    if isinstance(error, requests.exceptions.ConnectionError):
        return "could not connect or the connection was reset"
    return type(error).__name__ if error else "unknown error"
