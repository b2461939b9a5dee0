"""Pure pieces of the HTTP client: Retry-After, backoff delays, page checks, the limiter."""

from __future__ import annotations

import email.utils
import threading
import time

import msgspec
import pytest

from tap_deepconverse.client import (
    BACKOFF_CAP_SECONDS,
    MAX_RETRY_AFTER_SECONDS,
    RATE_MARGIN,
    Origin,
    RateLimiter,
    RetriableError,
    UnreadableRecordsError,
    UnusableCursorError,
    api_error_text,
    backoff_delays,
    decode_records,
    mask_secrets,
    parse_page,
    parse_retry_after,
    redirect_problem,
    register_secret,
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
    assert page.records() == ([{"_id": "a"}], 0)
    assert parse_page(b'{"data": [], "cursor": null}').cursor is None
    assert parse_page(b'{"data": []}').cursor is None
    assert parse_page(b'{"data": [], "cursor": ""}').cursor is None
    assert parse_page(b'{"data": [], "cursor": 42}').cursor == "42"
    deep = b"[" * 100_000 + b"]" * 100_000
    for broken in (
        b"<html>",
        b'{"data": [',
        b'{"message": "ok"}',
        b'{"data": {}}',
        b"[]",
        b'{"data": [], "cursor": ' + deep + b"}",
    ):
        with pytest.raises(RetriableError):
            parse_page(broken)


@pytest.mark.parametrize("cursor", [b'{"next": "abc"}', b'["abc"]', b"true", b"false", b"{}"])
def test_a_cursor_that_cannot_be_sent_back_is_refused(cursor: bytes) -> None:
    for data in (b"[]", b'[{"_id": "a"}]'):
        with pytest.raises(UnusableCursorError):
            parse_page(b'{"data": ' + data + b', "cursor": ' + cursor + b"}")


def test_invalid_utf8_in_a_string_is_replaced_and_counted() -> None:
    page = parse_page(b'{"data": [{"_id": "a", "t": "x\xff\xfey \xef\xbf\xbd"}, {"_id": "b"}]}')
    items, repaired = page.records()
    # Two invalid bytes, each replaced; the U+FFFD the API sent itself is not counted.
    assert repaired == 2
    assert items == [{"_id": "a", "t": "x\ufffd\ufffdy \ufffd"}, {"_id": "b"}]


def test_records_nested_too_deep_are_unreadable() -> None:
    deep = b"[" * 5000 + b"]" * 5000
    with pytest.raises(RetriableError, match="nested too deep"):
        parse_page(b'{"data": [{"_id": "a", "m": ' + deep + b"}]}")
    # Records that passed the answer's check at a shallower stack still fail safely.
    with pytest.raises(UnreadableRecordsError, match="nested too deep"):
        decode_records([msgspec.Raw(b'{"_id": "a", "m": ' + deep + b"}")])
    with pytest.raises(UnreadableRecordsError, match="cannot be decoded"):
        decode_records([msgspec.Raw(b'{"_id": "a", "m": "\\x"}')])


def test_the_key_is_masked_in_text_from_the_api() -> None:
    register_secret("SECRET/KEY+123")
    body = b'{"error": "Bad Request", "message": "invalid api key \'SECRET/KEY+123\'"}'
    assert api_error_text(400, "Bad Request", body) == "Bad Request: invalid api key '***'"
    assert mask_secrets("?key=SECRET%2FKEY%2B123&x=1") == "?key=***&x=1"
    html = b"<html>\n<body>key SECRET/KEY+123\nrefused</body></html>"
    assert (
        api_error_text(503, "Service Unavailable", html)
        == "<html> <body>key *** refused</body></html>"
    )
    assert api_error_text(502, "Bad Gateway", b"") == "502 Bad Gateway"


API = Origin.of("https://api.converseapps.com")


@pytest.mark.parametrize(
    ("location", "problem"),
    [
        ("https://api.converseapps.com/v2/export?x=1", None),
        ("https://API.converseapps.com:443/v2", None),
        ("https://evil.example.com/export", "another scheme, host or port"),
        ("https://api.converseapps.com:8443/export", "another scheme, host or port"),
        ("http://api.converseapps.com/export", "plain http"),
        ("ftp://api.converseapps.com/export", "of scheme 'ftp'"),
        ("http://[::1/export", "malformed"),
        ("https://api.converseapps.com:99999/x", "malformed"),
        ("//", "malformed"),
    ],
)
def test_redirects_are_followed_only_to_the_api_itself(location: str, problem: str | None) -> None:
    found = redirect_problem(API, location)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found


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


def test_the_limiter_serves_callers_in_the_order_they_came() -> None:
    # Chains of pages ask again as soon as an answer is in. A window's first page, asked
    # once, waits behind the pages asked before it, not behind every page asked after it.
    limiter = RateLimiter(50)
    chains = 6
    granted: list[int] = []
    done = threading.Event()

    def chain() -> None:
        while not done.is_set():
            limiter.acquire()
            granted.append(1)

    threads = [threading.Thread(target=chain) for _ in range(chains)]
    for thread in threads:
        thread.start()
    waits = []
    try:
        time.sleep(0.1)
        for _ in range(10):
            before = len(granted)
            limiter.acquire()
            waits.append(len(granted) - before)
            time.sleep(0.02)
    finally:
        done.set()
        for thread in threads:
            thread.join()
    # At most each chain's page ahead of it, give or take one being counted as it is served.
    assert max(waits) <= chains + 2, waits
