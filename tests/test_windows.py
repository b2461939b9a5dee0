"""Window arithmetic and edge de-duplication (pure logic, no HTTP)."""

from __future__ import annotations

import itertools

import pytest

from tap_deepconverse.windows import (
    EDGE_OVERLAP_SECONDS,
    RecentIds,
    Window,
    plan_windows,
    resume_from,
)


def test_windows_tile_the_range_without_gaps() -> None:
    windows = plan_windows(1000, 1000 + 10 * 3600 + 5, 3600)
    assert windows[0].start == 1000
    assert windows[-1] == Window(1000 + 10 * 3600, 1000 + 10 * 3600 + 5)
    assert all(a.end == b.start for a, b in itertools.pairwise(windows))
    assert len(windows) == 11


def test_no_windows_when_there_is_nothing_to_do() -> None:
    assert plan_windows(500, 500, 60) == []
    assert plan_windows(600, 500, 60) == []
    with pytest.raises(ValueError, match="positive"):
        plan_windows(0, 10, 0)


BOUNDS = {
    "[)": lambda t, s, e: s <= t < e,
    "(]": lambda t, s, e: s < t <= e,
    "[]": lambda t, s, e: s <= t <= e,
    "()": lambda t, s, e: s < t < e,
}


@pytest.mark.parametrize("reading", sorted(BOUNDS))
def test_requests_cover_every_instant_under_every_bounds_reading(reading: str) -> None:
    windows = plan_windows(0, 40, 10)
    inside = BOUNDS[reading]
    # Whole seconds, the edges themselves and fractions just around them.
    instants = [x / 4 for x in range(0, 160)]
    for t in instants:
        owners = [w for w in windows if w.start <= t < w.end]
        fetched_by = [w for w in windows if inside(t, *w.request_bounds)]
        assert owners[0] in fetched_by, (reading, t)


def test_request_starts_one_second_early() -> None:
    assert Window(100, 200).request_bounds == (100 - EDGE_OVERLAP_SECONDS, 200)


def test_resume_goes_back_by_the_lookback_but_never_before_start_date() -> None:
    assert resume_from(1000, None, 3600) == 1000
    assert resume_from(1000, 10_000, 3600) == 6400
    assert resume_from(1000, 2000, 3600) == 1000
    assert resume_from(1000, 10_000, 0) == 10_000


def test_recent_ids_drop_edge_copies_and_forget_older_windows() -> None:
    recent = RecentIds()
    assert recent.add("a")
    assert not recent.add("a")
    recent.next_window()
    assert not recent.add("a")  # the copy fetched again by the next window
    assert recent.add("b")
    recent.next_window()
    recent.next_window()
    assert recent.add("a")  # two windows later it is a new record (e.g. updated)
