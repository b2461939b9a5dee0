"""Fetch several jobs at once and hand their items back strictly in job order.

The tap uses it to keep several export windows in flight, so slow answers overlap under
the per-endpoint rate limit, while records and state still come out window by window.
Memory stays bounded: at most ``max_parallel`` jobs run ahead of the consumer and each
buffers at most ``max_buffered`` items (pages).
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

J = TypeVar("J")
T = TypeVar("T")

_POLL_SECONDS = 0.2


class _Item(Generic[T]):
    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value


class _Failed:
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


_DONE = object()


class _Job(Generic[J, T]):
    """One job's worker thread and the queue it fills."""

    def __init__(
        self,
        job: J,
        produce: Callable[[J], Iterable[T]],
        max_buffered: int,
        stop: threading.Event,
    ) -> None:
        self.job = job
        self._queue: queue.Queue[_Item[T] | _Failed | object] = queue.Queue(max_buffered)
        self._stop = stop
        # Daemon: a worker blocked in a slow request must not keep a stopped tap alive.
        self._thread = threading.Thread(
            target=self._run, args=(produce,), name=f"prefetch-{job}", daemon=True
        )
        self._thread.start()

    def _run(self, produce: Callable[[J], Iterable[T]]) -> None:
        try:
            for value in produce(self.job):
                if not self._put(_Item(value)):
                    return
            self._put(_DONE)
        except BaseException as exc:  # handed to the consumer, re-raised there
            self._put(_Failed(exc))

    def _put(self, entry: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=_POLL_SECONDS)
            except queue.Full:
                continue
            return True
        return False

    def items(self) -> Iterator[T]:
        while True:
            try:
                entry = self._queue.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                continue
            if entry is _DONE:
                return
            if isinstance(entry, _Failed):
                raise entry.error
            assert isinstance(entry, _Item)
            yield entry.value


def ordered_prefetch(
    jobs: Iterable[J],
    produce: Callable[[J], Iterable[T]],
    *,
    max_parallel: int,
    max_buffered: int,
) -> Iterator[tuple[J, Iterator[T]]]:
    """Yield ``(job, items)`` in job order while up to ``max_parallel`` jobs are produced in
    background threads. Consume each ``items`` fully before asking for the next job. A job
    that fails raises its error from its ``items``, after the items it produced before."""
    if max_parallel < 1 or max_buffered < 1:
        raise ValueError("max_parallel and max_buffered must be at least 1")
    stop = threading.Event()
    waiting = iter(jobs)
    running: deque[_Job[J, T]] = deque()

    def start_next() -> None:
        for job in waiting:
            running.append(_Job(job, produce, max_buffered, stop))
            return

    try:
        for _ in range(max_parallel):
            start_next()
        while running:
            current = running.popleft()
            yield current.job, current.items()
            start_next()
    finally:
        # Reached on normal end and when the consumer stops early (error, signal).
        stop.set()
