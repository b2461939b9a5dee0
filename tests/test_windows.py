"""Window arithmetic and edge de-duplication (pure logic, no HTTP)."""

from __future__ import annotations

import itertools

import pytest

from tap_deepconverse.windows import (
    EDGE_OVERLAP_SECONDS,
    RecentIds,
    Scout,
    Window,
    WindowLimit,
    WindowPlanner,
    halves,
    next_length,
    resume_from,
    target_records,
)


def test_a_planner_with_nothing_to_do_plans_nothing() -> None:
    assert WindowPlanner(500, 500, first_length=60, longest=60).all_planned
    assert WindowPlanner(600, 500, first_length=60, longest=60).all_planned
    with pytest.raises(ValueError, match="positive"):
        WindowPlanner(0, 10, first_length=0, longest=60)


def tiling(start: int, stop: int, length: int) -> list[Window]:
    """Consecutive windows of one length, as a planner that never resizes would plan them."""
    planner = WindowPlanner(start, stop, first_length=length, longest=length)
    windows = []
    while not planner.all_planned:
        windows.append(planner.next_window())
        planner.observe(windows[-1], 0, target_records=0)
    return windows


BOUNDS = {
    "[)": lambda t, s, e: s <= t < e,
    "(]": lambda t, s, e: s < t <= e,
    "[]": lambda t, s, e: s <= t <= e,
    "()": lambda t, s, e: s < t < e,
}


@pytest.mark.parametrize("reading", sorted(BOUNDS))
def test_requests_cover_every_instant_under_every_bounds_reading(reading: str) -> None:
    windows = tiling(0, 40, 10)
    assert len(windows) == 4
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
    t = "2025-01-01T00:00:00.000000Z"
    assert recent.add("a", t) == RecentIds.FIRST
    assert recent.add("a", t) == RecentIds.SAME
    recent.next_window()
    assert recent.add("a", t) == RecentIds.SAME  # the copy fetched again by the next window
    assert recent.add("b", t) == RecentIds.FIRST
    recent.next_window()
    recent.next_window()
    assert recent.add("a", t) == RecentIds.FIRST  # two windows later it is a new record


def test_recent_ids_keep_the_newest_copy() -> None:
    recent = RecentIds()
    older, newer, newest = (f"2025-01-01T00:00:0{s}.000000Z" for s in (1, 2, 3))
    assert recent.add("a", newer) == RecentIds.FIRST
    assert recent.add("a", older) == RecentIds.OLDER
    assert recent.add("a", newest) == RecentIds.NEWER
    recent.next_window()
    assert recent.add("a", newer) == RecentIds.OLDER  # remembered with its newest time
    assert recent.add("a", newest) == RecentIds.SAME
    assert recent.add("a", "2025-01-01T00:00:04.000000Z") == RecentIds.NEWER


DAY = 86_400


def test_halves_tile_the_window() -> None:
    first, second = halves(Window(10, 21))
    assert (first, second) == (Window(10, 15), Window(15, 21))
    assert halves(Window(0, 2)) == (Window(0, 1), Window(1, 2))


def test_next_length_grows_by_a_bounded_factor_and_shrinks_at_once() -> None:
    bounds = {"target_records": 4000, "shortest": 60, "longest": 31 * DAY}
    # Light: one record a day allows thousands of days, but never beyond the longest window.
    assert next_length(DAY, observed_seconds=DAY, observed_records=1, **bounds) == 31 * DAY
    # An empty window says little: growth after one is earned step by step.
    assert next_length(DAY, observed_seconds=DAY, observed_records=0, **bounds) == 8 * DAY
    assert next_length(600, observed_seconds=600, observed_records=0, **bounds) == 8 * 600
    # A short window with records grows by a bounded factor too.
    assert next_length(600, observed_seconds=600, observed_records=1, **bounds) == 64 * 600
    # Dense: 40,000 records a day means a tenth of a day holds the target.
    dense = next_length(DAY, observed_seconds=DAY, observed_records=39_999, **bounds)
    assert dense == DAY // 10
    # Never below the shortest window.
    assert next_length(600, observed_seconds=600, observed_records=10**9, **bounds) == 60


def test_planner_tiles_the_range_and_waits_for_the_first_window() -> None:
    planner = WindowPlanner(0, 60 * DAY, first_length=DAY, longest=31 * DAY)
    first = planner.next_window()
    assert first == Window(0, DAY)
    assert not planner.ready  # no second guess before the first window reports
    planner.observe(first, 0, target_records=4000)
    windows = [first]
    while planner.ready:
        window = planner.next_window()
        windows.append(window)
        planner.observe(window, 0, target_records=4000)
    assert planner.all_planned
    assert all(a.end == b.start for a, b in itertools.pairwise(windows))
    assert windows[-1].end == 60 * DAY
    assert [w.length for w in windows[:3]] == [DAY, 8 * DAY, 31 * DAY]
    assert len(windows) == 4  # the last, 20 days, is what is left


def test_planner_shrinks_for_dense_data_and_keeps_several_windows_in_flight() -> None:
    planner = WindowPlanner(0, 10 * DAY, first_length=DAY, longest=31 * DAY)
    first = planner.next_window()
    planner.observe(first, 40_000, target_records=4000)  # 40 pages in a day
    in_flight = [planner.next_window() for _ in range(8)]
    assert all(w.length == DAY * 4000 // 40_001 for w in in_flight)
    assert planner.ready  # planning goes on while these are fetched


def test_planner_joins_a_short_remainder() -> None:
    # A daily run: one day plus the hour of lookback is one window, not two.
    planner = WindowPlanner(0, DAY + 3600, first_length=DAY, longest=31 * DAY)
    assert planner.next_window() == Window(0, DAY + 3600)
    assert planner.all_planned
    # ... but never beyond the longest window.
    planner = WindowPlanner(0, DAY + 3600, first_length=DAY, longest=DAY)
    assert planner.next_window() == Window(0, DAY)


def test_planner_respects_a_learnt_limit() -> None:
    planner = WindowPlanner(0, 100 * DAY, first_length=DAY, longest=31 * DAY)
    planner.observe(planner.next_window(), 0, target_records=4000)
    assert planner.next_window(longest=3 * DAY).length == 3 * DAY


def test_target_records_stay_under_a_page_without_a_cursor() -> None:
    assert 3000 < target_records(1000, cursor_followed=True) < 4000  # under whole pages
    assert target_records(1000, cursor_followed=False) < 1000


def test_window_limit_learns_from_rejections() -> None:
    limit = WindowLimit(trusted=DAY)
    assert limit.longest is None
    assert not limit.may_halve(DAY)  # a rejected window_hours window is the request's fault
    assert limit.may_halve(DAY + 1)
    limit.reject(31 * DAY)
    assert limit.longest == 31 * DAY // 2
    limit.reject(31 * DAY // 2)
    assert limit.longest == 31 * DAY // 4
    limit.reject(20 * DAY)  # a longer rejection teaches nothing new
    assert limit.longest == 31 * DAY // 4
    assert not limit.accept(DAY)  # shorter than the limit: nothing to report
    assert limit.accept(31 * DAY // 4)  # reported once
    assert not limit.accept(31 * DAY // 4)
    limit.reject(DAY + 10)
    assert limit.longest == DAY  # never below window_hours


def test_a_dense_first_window_lets_the_next_ones_go_before_it_reports() -> None:
    planner = WindowPlanner(0, 30 * DAY, first_length=DAY, longest=31 * DAY)
    first = planner.next_window()
    assert not planner.ready
    planner.note_dense(first)  # its first page came with a cursor
    assert planner.ready
    half = DAY // 2
    second, third = planner.next_window(), planner.next_window()
    assert (second, third) == (Window(DAY, DAY + half), Window(DAY + half, 2 * DAY))
    planner.note_dense(third)  # dense again: shorter again
    assert planner.next_window() == Window(2 * DAY, 2 * DAY + half // 2)


def lead_in_planner() -> tuple[WindowPlanner, Window]:
    """A planner a year and a month long whose first window came back empty, and its next
    window once the API has shown windows of 400 days complete."""
    planner = WindowPlanner(0, 400 * DAY, first_length=DAY, longest=31 * DAY)
    planner.observe(planner.next_window(), 0, target_records=4000)
    return planner, planner.next_window(complete=400 * DAY)


def test_an_empty_lead_in_is_walked_in_windows_as_long_as_shown_complete() -> None:
    planner, long = lead_in_planner()
    assert long == Window(DAY, 400 * DAY)  # one request for what 13 windows of 31 days took
    assert not planner.ready
    # ... within the API's own limit once learnt.
    planner = WindowPlanner(0, 400 * DAY, first_length=DAY, longest=31 * DAY)
    planner.observe(planner.next_window(), 0, target_records=4000)
    assert planner.next_window(longest=60 * DAY, complete=400 * DAY).length == 60 * DAY
    # Nothing shown complete beyond the growth: the lead-in grows as any window does.
    planner = WindowPlanner(0, 400 * DAY, first_length=DAY, longest=31 * DAY)
    planner.observe(planner.next_window(), 0, target_records=4000)
    assert planner.next_window(complete=2 * DAY).length == 8 * DAY


def test_a_window_with_records_ends_the_lead_in() -> None:
    planner = WindowPlanner(0, 400 * DAY, first_length=DAY, longest=31 * DAY)
    planner.observe(planner.next_window(), 30, target_records=4000)
    assert planner.next_window(complete=400 * DAY).length == 31 * DAY


def test_a_light_rest_is_one_window_past_max_window_days() -> None:
    # 3 records in the first day: the other 399 days hold about 1,600, under the 4,000 a
    # window aims at; one window costs a request where 31-day windows would cost 13.
    planner = WindowPlanner(0, 400 * DAY, first_length=DAY, longest=31 * DAY)
    planner.observe(planner.next_window(), 3, target_records=4000)
    assert planner.next_window(complete=DAY) == Window(DAY, 400 * DAY)
    assert planner.all_planned


def test_a_light_rest_stays_within_the_apis_own_limit() -> None:
    planner = WindowPlanner(0, 400 * DAY, first_length=DAY, longest=31 * DAY)
    planner.observe(planner.next_window(), 3, target_records=4000)
    assert planner.next_window(100 * DAY).length == 31 * DAY


def test_where_the_records_begin_the_windows_start_over() -> None:
    planner, long = lead_in_planner()
    hour = 3600
    sample = [300 * DAY + h * hour for h in (9, 5, 13, 6, 11)]  # in no order
    # No part before the records is asked on its own: the windows start over at the long
    # window's start, and the first holds whatever the sample missed before its earliest.
    assert planner.records_begin(long, sample) == long.start
    planner.replaced(long)
    assert not planner.reported
    first = planner.next_window()
    # As a run's first window: a day long, counted from the earliest record seen.
    assert first == Window(long.start, 300 * DAY + 5 * hour + DAY)
    assert not planner.ready  # it waits for its answer, as a run's first window does
    planner.note_dense(first)
    assert planner.next_window().length == DAY // 2
    # The lead-in is over: no window is that long again.
    assert planner.records_begin(first, sample) is None


def test_served_newest_first_the_lead_in_goes_on_in_windows_of_the_longest() -> None:
    planner, long = lead_in_planner()
    sample = [300 * DAY + h * 3600 for h in (13, 11, 9, 6, 5)]
    begin = planner.records_begin(long, sample)
    assert begin == DAY + 31 * DAY
    planner.replaced(long)
    assert planner.ready
    assert [planner.next_window() for _ in range(2)] == [
        Window(32 * DAY, 63 * DAY),
        Window(63 * DAY, 94 * DAY),
    ]


def test_a_planner_whose_windows_held_records_has_no_lead_in() -> None:
    planner = WindowPlanner(0, 400 * DAY, first_length=DAY, longest=31 * DAY)
    planner.observe(planner.next_window(), 3, target_records=4000)
    window = planner.next_window()
    assert planner.records_begin(window, [20 * DAY, 25 * DAY, 22 * DAY]) is None


def test_a_scout_before_where_the_windows_started_over_still_tells_its_rest() -> None:
    planner, long = lead_in_planner()
    # Served newest first: the part before where the windows start over is a window of its own.
    begin = planner.records_begin(long, [300 * DAY + h * 3600 for h in (13, 11, 9, 6, 5)])
    assert begin == DAY + 31 * DAY
    planner.replaced(long)
    # It held records after all, more than a page: cut around a scout.
    scout = Scout(Window(DAY, 2 * DAY), Window(2 * DAY, begin), 3.0, (3 * DAY, 4 * DAY))
    planner.note_scout(scout)
    assert planner.scout_pending(scout.rest)
    planner.observe(scout.window, 40, target_records=4000, planned=False)
    assert not planner.scout_pending(scout.rest)
    assert planner.expected_records(scout.rest) == 120
    # ... and nothing of it sizes the windows after.
    assert planner.next_window() == Window(begin, begin + 31 * DAY)
