"""Pure pieces of the HTTP client: Retry-After, backoff delays, page checks, the limiter."""

from __future__ import annotations

import email.utils
import time

import pytest

from tap_deepconverse.client import (
    BACKOFF_CAP_SECONDS,
    MAX_RETRY_AFTER_SECONDS,
    RATE_MARGIN,
    RateLimiter,
    RetriableError,
    backoff_delays,
    parse_page,
    parse_retry_after,
)


def test_retry_after_in_seconds_or_as_a_date() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("2", now) == 2.0
    assert parse_retry_after(" 0.5 ", now) == 0.5
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(date, now) == pytest.approx(30, abs=1)
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now) == 0.0
    assert parse_retry_after("100000", now) == MAX_RETRY_AFTER_SECONDS
    for useless in (None, "", "soon", "nan"):
        assert parse_retry_after(useless, now) is None


def test_backoff_waits_for_retry_after_else_grows_with_jitter() -> None:
    delays = backoff_delays()
    assert next(delays) == 0.0  # primed, as the backoff module does
    assert delays.send(RetriableError("429", retry_after=7.0)) == 7.0
    waits = [delays.send(RetriableError("503")) for _ in range(12)]
    assert all(0 < w <= BACKOFF_CAP_SECONDS for w in waits)
    assert waits[-1] > waits[0]
    assert max(waits[-3:]) >= BACKOFF_CAP_SECONDS / 2


def test_a_page_is_checked_before_it_is_kept() -> None:
    page = parse_page(b'{"data": [{"_id": "a"}], "cursor": "c1", "extra": 1}')
    assert page.cursor == "c1"
    assert page.records() == [{"_id": "a"}]
    assert parse_page(b'{"data": [], "cursor": null}').cursor is None
    assert parse_page(b'{"data": []}').cursor is None
    assert parse_page(b'{"data": [], "cursor": 42}').cursor == "42"
    for broken in (b"<html>", b'{"data": [', b'{"message": "ok"}', b'{"data": {}}', b"[]"):
        with pytest.raises(RetriableError):
            parse_page(broken)


def test_the_limiter_spaces_requests_across_calls() -> None:
    limiter = RateLimiter(20)
    started = time.monotonic()
    for _ in range(5):
        limiter.acquire()
    assert time.monotonic() - started >= 4 * RATE_MARGIN / 20 * 0.99
    limiter.pause(0.2)
    paused = time.monotonic()
    limiter.acquire()
    assert time.monotonic() - paused >= 0.19
