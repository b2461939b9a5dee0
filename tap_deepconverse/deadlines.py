"""The time one request may take, whole: redirects, headers and body.

Socket timeouts bound each read, not the whole: an answer that drips a byte at a time would
never end. Each request runs under a :class:`Deadline` (:func:`request_deadline`); the
connections of a :class:`TimedAdapter` report to it, and one watchdog thread shuts down the
socket of a request whose time is up, which ends any read waiting on it.

The watchdog and the map of which deadline owns a connection are process-wide, as threads
and sockets are; they hold nothing of a run.
"""

from __future__ import annotations

import heapq
import itertools
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import urllib3.poolmanager
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool


class Deadline:
    """The time one request may take, redirects and body included. Socket timeouts bound
    each read, not the whole: an answer that drips a byte at a time would never end. When
    the time is up, the socket of the request's connection is shut down, which ends any
    read waiting on it; the request then fails and is retried."""

    _owners_lock = threading.Lock()  # who owns a connection, across every request

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._connection: HTTPConnection | None = None
        self._watched = False
        self._done = False

    def attach(self, connection: HTTPConnection) -> None:
        """The request goes out on ``connection``; the clock starts with its first send
        (after the rate limiter's wait)."""
        with self._owners_lock:
            self._connection = connection
            _owners[id(connection)] = self
        self.start()

    def start(self) -> None:
        """Start the clock, if it is not running yet. Also called once the answer's headers
        are in, for connections that do not report (a SOCKS proxy's): the body is then
        checked against the deadline between reads."""
        with self._owners_lock:
            if self._watched:
                return
            self._watched = True
        _WATCHDOG.watch(self, time.monotonic() + self.seconds)

    def expire(self) -> None:
        """The time is up (called by the watchdog; nothing once the request is done)."""
        with self._owners_lock:
            if self._done:
                return
            connection = self._connection
            if connection is not None and _owners.get(id(connection)) is not self:
                return  # the connection already serves another request
            self.expired = True
            sock = connection.sock if connection is not None else None
        if sock is not None:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        with self._owners_lock:
            self._done = True
            if self._connection is not None and _owners.get(id(self._connection)) is self:
                del _owners[id(self._connection)]


class _Watchdog:
    """One thread for every deadline of the process: starting a timer thread per request
    would hold the requesting thread up right after the rate limiter let it go."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._due: list[tuple[float, int, Deadline]] = []
        self._count = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, deadline: Deadline, at: float) -> None:
        with self._changed:
            heapq.heappush(self._due, (at, next(self._count), deadline))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="deadlines", daemon=True)
                self._thread.start()
            self._changed.notify()

    def _run(self) -> None:
        while True:
            with self._changed:
                now = time.monotonic()
                while not self._due or self._due[0][0] > now:
                    self._changed.wait(self._due[0][0] - now if self._due else None)
                    now = time.monotonic()
                _, _, deadline = heapq.heappop(self._due)
            deadline.expire()


_WATCHDOG = _Watchdog()
_owners: dict[int, Deadline] = {}
_current = threading.local()  # the deadline of the request this thread is making


def _attach_current_deadline(connection: HTTPConnection) -> None:
    deadline: Deadline | None = getattr(_current, "deadline", None)
    if deadline is not None:
        deadline.attach(connection)


class _TimedHTTPConnection(HTTPConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401 - urllib3's
        _attach_current_deadline(self)
        super().request(*args, **kwargs)


class _TimedHTTPSConnection(HTTPSConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401 - urllib3's
        _attach_current_deadline(self)
        super().request(*args, **kwargs)


class _TimedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _TimedHTTPConnection


class _TimedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _TimedHTTPSConnection


_TIMED_POOLS = {"http": _TimedHTTPPool, "https": _TimedHTTPSPool}


class TimedAdapter(HTTPAdapter):
    """An adapter whose connections report to the current request's :class:`Deadline`."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401 - requests'
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _TIMED_POOLS

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:  # noqa: ANN401 - requests'
        manager = super().proxy_manager_for(proxy, **kwargs)
        # Not a SOCKS proxy's own pools: there the deadline is checked between reads only.
        if manager.pool_classes_by_scheme is urllib3.poolmanager.pool_classes_by_scheme:
            manager.pool_classes_by_scheme = _TIMED_POOLS
        return manager


@contextmanager
def request_deadline(seconds: float) -> Iterator[Deadline]:
    """The deadline of the request this thread makes inside the block."""
    deadline = Deadline(seconds)
    _current.deadline = deadline
    try:
        yield deadline
    finally:
        _current.deadline = None
        deadline.close()
