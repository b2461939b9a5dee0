"""Hostile answers: what a proxy, a load balancer, a bug on the API's side or an attacker on
the path could send instead of the API's own answers, for testing a client against them.

A simulator with ``SimulatorOptions.hostile`` set to one of ``HOSTILE_KINDS`` answers every
API request (with the right key, under the rate limit) in that way:

Redirects (HTTP 302):
- ``redirect-same-host``: to the same URL on the same host with ``redirected=1`` added,
  then the real answer: the one redirect a client may follow.
- ``redirect-other-host``: to ``redirect_to`` (default: the other loopback name, ``localhost``
  for ``127.0.0.1`` and back), same path and query.
- ``redirect-http``: to plain ``http://`` (``redirect_to`` if set, else this host and port).
- ``redirect-loop``: to the very URL asked.
- ``redirect-ftp``: to an ``ftp://`` URL.
- ``redirect-malformed``: to a URL that cannot be parsed.
- ``redirect-no-location``: a 302 without ``Location``.

Bodies:
- ``echo-key-400``, ``echo-key-503``: an error that repeats the key it was sent.
- ``gzip-bomb``: 200 with ``Content-Encoding: gzip``, about 2 MB inflating to 2 GiB.
- ``endless-body``: 200, chunked, an endless array of records.
- ``drip``: 200 and its headers at once, then one byte of body every ``DRIP_SECONDS``.

Pages (the real page, altered):
- ``endless-cursor``: empty pages, each with a new cursor, forever.
- ``object-cursor``: the first page with a cursor that is an object, ``{"next": "..."}``;
  ``object-cursor-empty``: the same on an empty first page.
- ``newer-duplicates``: each page also carries a copy of its first record one minute newer
  and of its second one a minute older (after the record itself); each query's first page
  also carries a copy, an hour newer, of the last record before its window.
- ``wrong-types``: the first record of a page has fields of the wrong type (``tags:
  "resolved"``, ``locale: 5``, ``metadata: "x"``; ``type: 7``, ``conversationId: ["x"]``,
  ``userActionType: {"a": 1}``), the second ``tags: ["ok", 3]``.
- ``bad-utf8``: the first record of a page has invalid UTF-8 inside a string (``locale``,
  or ``type`` for messages).
- ``deep-nesting``: the first record of a page has a value nested 5,000 levels deep.
"""

from __future__ import annotations

import gzip
import io
import json
import threading
import time
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import NamedTuple
from urllib.parse import urlencode, urlsplit

from .dataset import Record, format_record

REDIRECT_KINDS = (
    "redirect-same-host",
    "redirect-other-host",
    "redirect-http",
    "redirect-loop",
    "redirect-ftp",
    "redirect-malformed",
    "redirect-no-location",
)
BODY_KINDS = ("echo-key-400", "echo-key-503", "gzip-bomb", "endless-body", "drip")
PAGE_KINDS = (
    "endless-cursor",
    "object-cursor",
    "object-cursor-empty",
    "newer-duplicates",
    "wrong-types",
    "bad-utf8",
    "deep-nesting",
)
HOSTILE_KINDS = REDIRECT_KINDS + BODY_KINDS + PAGE_KINDS

DRIP_SECONDS = 0.25
BOMB_UNIT_BYTES = 16 * 1024 * 1024
BOMB_UNITS = 128  # 2 GiB once inflated
DEEP_LEVELS = 5000
MAX_STREAM_SECONDS = 600  # an endless body or a drip ends after this, whoever listens

TIME_KEYS = {"conversations": "lastActionAt", "messages": "time"}
_BAD_UTF8 = b"\xff\xc3"  # an invalid byte, then a multi-byte sequence cut short
_MARK = "@@hostile@@"

Writer = Callable[[io.BufferedIOBase, threading.Event], None]


class HostileAnswer(NamedTuple):
    """An answer to send instead of the API's: a body, or a writer that streams one."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""
    writer: Writer | None = None


def request_answer(
    kind: str,
    *,
    url: str,
    path: str,
    params: Mapping[str, str],
    redirect_to: str | None,
    api_key: str | None,
) -> HostileAnswer | None:
    """The answer of a request-level kind (redirects, bodies), or None to answer normally.
    ``url`` is this simulator's base URL; ``path`` and ``params`` are the request's."""
    query = urlencode(params)
    target = f"{path}?{query}" if query else path
    parts = urlsplit(url)
    if kind == "redirect-same-host":
        if "redirected" in params:
            return None
        return _redirect(f"{path}?{urlencode({**params, 'redirected': '1'})}")
    if kind == "redirect-other-host":
        other = "127.0.0.1" if parts.hostname == "localhost" else "localhost"
        base = redirect_to or f"{parts.scheme}://{other}:{parts.port}"
        return _redirect(base.rstrip("/") + target)
    if kind == "redirect-http":
        base = redirect_to or f"http://{parts.hostname}:{parts.port}"
        return _redirect(base.rstrip("/") + target)
    if kind == "redirect-loop":
        return _redirect(target)
    if kind == "redirect-ftp":
        return _redirect(f"ftp://{parts.hostname}/export{path}")
    if kind == "redirect-malformed":
        return _redirect(f"http://[{parts.hostname}{target}")
    if kind == "redirect-no-location":
        return HostileAnswer(302, [])
    if kind in ("echo-key-400", "echo-key-503"):
        status, error = (400, "Bad Request") if kind == "echo-key-400" else (503, "Unavailable")
        message = {"error": error, "message": f"invalid api key '{api_key}'"}
        return HostileAnswer(status, [_JSON], json.dumps(message).encode())
    if kind == "gzip-bomb":
        head, unit = _bomb_parts()
        size = len(head) + BOMB_UNITS * len(unit)
        headers = [_JSON, ("Content-Encoding", "gzip"), ("Content-Length", str(size))]
        return HostileAnswer(200, headers, writer=_write_bomb)
    if kind == "endless-body":
        return HostileAnswer(200, [_JSON, ("Transfer-Encoding", "chunked")], writer=_write_endless)
    if kind == "drip":
        return HostileAnswer(200, [_JSON, ("Content-Length", "1000000")], writer=_write_drip)
    return None


_JSON = ("Content-Type", "application/json; charset=utf-8")


def _redirect(location: str) -> HostileAnswer:
    return HostileAnswer(302, [("Location", location)])


@lru_cache(maxsize=1)
def _bomb_parts() -> tuple[bytes, bytes]:
    """A gzip member with the start of an answer, and one that inflates to 16 MiB of digits:
    gzip members may follow one another, and the body is that one repeated."""
    head = gzip.compress(b'{"data": [{"_id": "', mtime=0)
    return head, gzip.compress(b"0" * BOMB_UNIT_BYTES, compresslevel=9, mtime=0)


def _write_bomb(out: io.BufferedIOBase, stopping: threading.Event) -> None:
    head, unit = _bomb_parts()
    out.write(head)
    for _ in range(BOMB_UNITS):
        if stopping.is_set():
            return
        out.write(unit)


def _write_endless(out: io.BufferedIOBase, stopping: threading.Event) -> None:
    record = b'{"_id": "5c80416892d94e40a64cea7dc6406e25", "time": 1735689600, "type": "x"}, '
    block = record * 500
    chunk = f"{len(block):x}\r\n".encode() + block + b"\r\n"
    out.write(b'b\r\n{"data": [ \r\n')
    ends = time.monotonic() + MAX_STREAM_SECONDS
    while not stopping.is_set() and time.monotonic() < ends:
        out.write(chunk)


def _write_drip(out: io.BufferedIOBase, stopping: threading.Event) -> None:
    out.write(b'{"data": [')
    out.flush()
    ends = time.monotonic() + MAX_STREAM_SECONDS
    while not stopping.wait(DRIP_SECONDS) and time.monotonic() < ends:
        out.write(b" ")
        out.flush()


def page_body(
    kind: str,
    endpoint: str,
    page: list[Record],
    *,
    time_format: str,
    cursor: str | None,
    first_page: bool,
    before: Record | None,
) -> bytes:
    """The body of a page-level kind: ``page`` (stored records), altered, with ``cursor``.
    ``before`` is the last record before the query's window, if any."""
    served = [format_record(endpoint, record, time_format) for record in page]
    cursor_value: object = cursor
    if kind == "object-cursor-empty" and first_page:
        served = []
        cursor_value = {"next": cursor or "abc"}
    elif kind == "object-cursor" and first_page:
        cursor_value = {"next": cursor or "abc"}
    elif kind == "newer-duplicates":
        served += _copies(endpoint, page, time_format, first_page, before)
    elif kind == "wrong-types" and served:
        served[0].update(_WRONG_TYPES[endpoint])
        if len(served) > 1:
            served[1]["tags"] = ["ok", 3]
    elif kind in ("bad-utf8", "deep-nesting") and served:
        field = {
            ("bad-utf8", "conversations"): "locale",
            ("bad-utf8", "messages"): "type",
            ("deep-nesting", "conversations"): "metadata",
            ("deep-nesting", "messages"): "outMsg",
        }[kind, endpoint]
        served[0][field] = f"en{_MARK}us" if kind == "bad-utf8" else _MARK
    body = json.dumps({"data": served, "cursor": cursor_value}, ensure_ascii=False).encode()
    if kind == "bad-utf8":
        return body.replace(_MARK.encode(), _BAD_UTF8)
    if kind == "deep-nesting":
        return body.replace(f'"{_MARK}"'.encode(), b"[" * DEEP_LEVELS + b"]" * DEEP_LEVELS)
    return body


_WRONG_TYPES: dict[str, dict[str, object]] = {
    "conversations": {"tags": "resolved", "locale": 5, "metadata": "x"},
    "messages": {"type": 7, "conversationId": ["x"], "userActionType": {"a": 1}},
}


def _copies(
    endpoint: str, page: list[Record], time_format: str, first_page: bool, before: Record | None
) -> list[Record]:
    """Copies of records with another time: a minute newer than the page's first record, a
    minute older than its second; on a query's first page, an hour newer than ``before``."""
    key = TIME_KEYS[endpoint]
    moved: list[tuple[Record, float]] = []
    if page:
        moved.append((page[0], 60.0))
    if len(page) > 1:
        moved.append((page[1], -60.0))
    if first_page and before is not None:
        moved.append((before, 3600.0))
    return [
        format_record(endpoint, {**record, key: record[key] + shift}, time_format)
        for record, shift in moved
    ]
