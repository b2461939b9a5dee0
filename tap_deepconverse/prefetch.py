"""Fetch many windows at once and hand each partition's windows back in order.

The tap keeps several export windows in flight, so slow answers overlap under the
per-endpoint rate limit, while records and state still come out bot by bot, window by
window. A :class:`Pipeline` starts jobs (windows) as a :class:`JobSource` plans them, up to
``max_parallel`` fetching at once; the consumer reads one partition (bot) at a time, its
jobs in the order they were planned.

Memory is bounded in bytes, not pages: every page fetched or being fetched for the consumer
is counted against one :class:`ByteBudget` shared by the run. Before fetching, a producer
takes room for a page as large as the largest seen so far, and waits while the budget is
spent; except the producer whose job the consumer is reading, which may always hold one
page: so the consumer always progresses and nothing deadlocks.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

J = TypeVar("J")
T = TypeVar("T")
K = TypeVar("K", bound=Hashable)
J_co = TypeVar("J_co", covariant=True)
K_contra = TypeVar("K_contra", bound=Hashable, contravariant=True)

_POLL_SECONDS = 0.2
# Jobs started but not yet read, per max_parallel: keeps quiet bots' small windows flowing
# while bounding how far the fetching runs ahead of the consumer.
AHEAD_PER_SLOT = 4


class ByteBudget:
    """Bytes of fetched pages held for the consumer, across every pipeline of a run."""

    def __init__(self, limit: int) -> None:
        if limit <= 0:
            raise ValueError("the byte budget must be positive")
        self.limit = limit
        self.used = 0
        self.changed = threading.Condition()

    def take(self, size: int, exempt: Callable[[], bool], stop: threading.Event) -> bool:
        """Wait until ``size`` bytes fit (or ``exempt()`` holds), then count them. False when
        ``stop`` was set while waiting."""
        with self.changed:
            while self.used + size > self.limit and not exempt():
                if stop.is_set():
                    return False
                self.changed.wait(_POLL_SECONDS)
            self.used += size
            return True

    def give(self, size: int) -> None:
        """Count ``size`` bytes as freed (a negative size counts them as taken)."""
        with self.changed:
            self.used -= size
            self.changed.notify_all()

    def wake(self) -> None:
        with self.changed:
            self.changed.notify_all()


@dataclass(frozen=True)
class Replaced(Generic[J]):
    """Produced last by a job whose remaining work is ``jobs``: the pipeline places them
    right after it in its partition, and the consumer receives this item too."""

    jobs: tuple[J, ...]


class JobSource(Protocol[K_contra, J_co]):
    """Plans jobs. ``next_job`` and ``all_planned`` are called under the pipeline's lock,
    never from two threads at once."""

    def next_job(self, only: K_contra | None = None) -> J_co | None:
        """A job to start now (of partition ``only`` if given), or None if none can be."""

    def all_planned(self, key: K_contra) -> bool:
        """True when partition ``key`` will have no further job."""

    def unblocked(self) -> bool:
        """True once after what a running job showed lets a job be planned that could not
        be before (asked after every item a job produces, from its thread)."""


class _Failed:
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


_DONE = object()


class _Job(Generic[K, J, T]):
    """One job's worker thread and the items it fetched, waiting for the consumer."""

    def __init__(self, key: K, job: J, pipeline: Pipeline[K, J, T]) -> None:
        self.key = key
        self.job = job
        self.reading = False  # set when the consumer reads this job: it may always progress
        self.started = False
        self._pipeline = pipeline
        self._items: deque[tuple[object, int]] = deque()
        self._ready = threading.Condition()
        # Daemon: a worker blocked in a slow request must not keep a stopped tap alive.
        self._thread = threading.Thread(target=self._run, name=f"fetch-{job}", daemon=True)

    def start(self) -> None:
        self.started = True
        self._thread.start()

    def _run(self) -> None:
        pipeline = self._pipeline
        budget = pipeline.budget
        try:
            items = iter(pipeline.produce(self.job))
            while True:
                # Room for the next item is taken before it is fetched, so that a producer
                # waiting for the writer holds no page.
                estimate = pipeline.estimate
                if not budget.take(estimate, self._exempt, pipeline.stop):
                    return
                try:
                    value = next(items)
                except BaseException:
                    budget.give(estimate)
                    raise
                if isinstance(value, Replaced):
                    budget.give(estimate)
                    pipeline.insert_after(self, value.jobs)
                    self._put(value, 0)
                    continue
                size = pipeline.size(value)
                budget.give(estimate - size)
                pipeline.estimate = max(pipeline.estimate, size)
                self._put(value, size)
                if pipeline.source.unblocked():
                    pipeline.fill()  # rather than when this job ends
        except StopIteration:
            self._put(_DONE, 0)
        except BaseException as exc:  # handed to the consumer, re-raised there
            pipeline.failed = True
            self._put(_Failed(exc), 0)
        finally:
            pipeline.job_finished()

    def _exempt(self) -> bool:
        return self.reading and not self._items

    def _put(self, entry: object, size: int) -> None:
        with self._ready:
            self._items.append((entry, size))
            self._ready.notify()

    def items(self) -> Iterator[T]:
        self.reading = True
        budget = self._pipeline.budget
        budget.wake()
        while True:
            with self._ready:
                while not self._items:
                    self._ready.wait(_POLL_SECONDS)
                entry, size = self._items.popleft()
            if size:
                budget.give(size)
            if entry is _DONE:
                return
            if isinstance(entry, _Failed):
                raise entry.error
            yield entry  # type: ignore[misc]  # anything else is a produced item


class Pipeline(Generic[K, J, T]):
    """Jobs from a :class:`JobSource`, produced in background threads, read per partition."""

    def __init__(
        self,
        source: JobSource[K, J],
        produce: Callable[[J], Iterator[T]],
        *,
        partition_of: Callable[[J], K],
        size: Callable[[T], int],
        max_parallel: int,
        budget: ByteBudget,
    ) -> None:
        if max_parallel < 1:
            raise ValueError("max_parallel must be at least 1")
        self.source = source
        self.produce = produce
        self.partition_of = partition_of
        self.size = size
        self.budget = budget
        self.estimate = 0  # bytes of the largest item yet: what the next one may take
        self.max_parallel = max_parallel
        self.stop = threading.Event()
        # Set when a job failed: the run stops once the consumer reaches it, so nothing new
        # starts meanwhile (the jobs before it still finish, to be read).
        self.failed = False
        self._lock = threading.Condition()
        self._running = 0
        self._waiting: dict[K, deque[_Job[K, J, T]]] = {}

    def _start(self, job: J) -> None:
        started = _Job(self.partition_of(job), job, self)
        self._waiting.setdefault(started.key, deque()).append(started)
        self._launch(started)

    def _launch(self, job: _Job[K, J, T]) -> None:
        self._running += 1
        job.start()

    def insert_after(self, job: _Job[K, J, T], jobs: tuple[J, ...]) -> None:
        """Queue ``jobs`` right after ``job`` in its partition (at the front when the
        consumer is reading it), to be started before anything new is planned."""
        with self._lock:
            waiting = self._waiting.setdefault(job.key, deque())
            place = waiting.index(job) + 1 if job in waiting else 0
            for offset, new in enumerate(jobs):
                waiting.insert(place + offset, _Job(job.key, new, self))
            self._fill()
            self._lock.notify_all()

    def _fill(self) -> None:
        """Start queued jobs, then what the source can plan, within the limits. Holds the
        lock."""
        if self.failed:
            return
        for waiting in self._waiting.values():
            for queued in waiting:
                if self._running >= self.max_parallel or self.stop.is_set():
                    return
                if not queued.started:
                    self._launch(queued)
        ahead = AHEAD_PER_SLOT * self.max_parallel
        while not self.stop.is_set() and self._running < self.max_parallel:
            if sum(len(jobs) for jobs in self._waiting.values()) >= ahead:
                return
            planned = self.source.next_job()
            if planned is None:
                return
            self._start(planned)

    def fill(self) -> None:
        with self._lock:
            self._fill()

    def job_finished(self) -> None:
        with self._lock:
            self._running -= 1
            self._fill()
            self._lock.notify_all()

    def partition(self, key: K) -> Iterator[tuple[J, Iterator[T]]]:
        """The jobs of partition ``key`` in planning order, each with its items. Read each
        ``items`` fully before asking for the next job."""
        while True:
            with self._lock:
                jobs = self._waiting.setdefault(key, deque())
                while not jobs:
                    if self.source.all_planned(key):
                        return
                    # The consumer waits on this partition: start its next job even beyond
                    # max_parallel, so that it never waits on jobs it does not read.
                    planned = self.source.next_job(only=key)
                    if planned is not None:
                        self._start(planned)
                    else:
                        self._lock.wait(_POLL_SECONDS)
                current = jobs.popleft()
                if not current.started:
                    self._launch(current)  # read now: beyond max_parallel if need be
                self._fill()
            yield current.job, current.items()

    def close(self) -> None:
        """Stop every producer (reached on normal end, on error and on signals)."""
        self.stop.set()
        self.budget.wake()
