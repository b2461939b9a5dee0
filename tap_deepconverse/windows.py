"""Window arithmetic: which export windows a run asks for. Pure: no I/O, no clock.

A window is half-open, ``[start, end)`` in Unix seconds, and windows tile the export range
without gaps. The API does not say whether its ``start_time``/``end_time`` bounds are
inclusive or exclusive, so each request starts one second early: ``(start - 1, end)``
contains ``[start, end)`` under every reading. The overlap this adds at an edge is dropped
by id (see :class:`RecentIds`), and the bookmark after a window is its ``end``: every record
timed before it has been emitted.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

# Requests start this many seconds before the window, in case the API excludes start_time.
EDGE_OVERLAP_SECONDS = 1


@dataclass(frozen=True, order=True)
class Window:
    """The export window ``[start, end)`` in Unix seconds."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError(f"empty window [{self.start}, {self.end})")

    @property
    def request_bounds(self) -> tuple[int, int]:
        """``start_time`` and ``end_time`` to send so that no reading of the bounds loses data."""
        return self.start - EDGE_OVERLAP_SECONDS, self.end


def plan_windows(start: int, stop: int, length: int) -> list[Window]:
    """Consecutive windows of ``length`` seconds from ``start`` up to ``stop`` (the last may be
    shorter). Empty when ``stop <= start``."""
    if length <= 0:
        raise ValueError(f"window length must be positive, got {length}")
    return [Window(s, min(s + length, stop)) for s in range(start, stop, length)]


def resume_from(start_date: int, bookmark: int | None, lookback: int) -> int:
    """Where a run starts: ``start_date`` on a first run, else ``lookback`` seconds before the
    bookmark (to pick up records that reached the archive late), never before ``start_date``."""
    if bookmark is None:
        return start_date
    return max(start_date, bookmark - lookback)


class RecentIds:
    """Ids seen in the current and the previous window, to drop the copy of a record fetched
    twice at a shared edge while keeping memory bounded by two windows."""

    def __init__(self) -> None:
        self._previous: set[Hashable] = set()
        self._current: set[Hashable] = set()

    def add(self, key: Hashable) -> bool:
        """Record ``key``; False when it was already seen in this or the previous window."""
        if key in self._current or key in self._previous:
            return False
        self._current.add(key)
        return True

    def next_window(self) -> None:
        """Forget the older window's ids when a new window begins."""
        self._previous, self._current = self._current, set()
