"""Pure logic of earned windows: pieces of a dense window, the rest of a long chain, and
what a run learns of the API."""

from __future__ import annotations

import itertools

from tap_deepconverse.readings import ApiReadings
from tap_deepconverse.windows import (
    MAX_PIECES,
    Window,
    WindowPlanner,
    chain_rest,
    dense_pieces,
    pieces_within,
)

DAY = 86_400
HOUR = 3_600


def tiles(window: Window, pieces: list[Window]) -> bool:
    return (
        pieces[0].start == window.start
        and pieces[-1].end == window.end
        and all(a.end == b.start for a, b in itertools.pairwise(pieces))
    )


def test_a_page_in_time_order_tells_how_dense_the_rest_is() -> None:
    window = Window(0, 20 * DAY)
    # Nothing for 10 days, then 100 records in the first hour of day 10: served in order.
    sample = [10 * DAY + i * 36 for i in range(100)]
    pieces = dense_pieces(window, sample, per_page=100, prior_density=None)
    assert pieces is not None
    assert tiles(window, pieces)
    # Ten days at 100 records an hour is 240 pages: as many pieces as allowed, all cut in
    # the part the records are in (the first one reaches back to the window's start).
    assert len(pieces) == MAX_PIECES
    assert all(p.start >= 10 * DAY for p in pieces[1:])


def test_a_page_in_no_order_is_cut_at_its_quantiles_by_the_prior_density() -> None:
    window = Window(0, DAY)
    sample = [(i * 7919) % DAY for i in range(100)]  # spread over the day, out of order
    # 1,000 records a day at 100 a page: 10 pages, in pieces of about 3.6 pages.
    pieces = dense_pieces(window, sample, per_page=100, prior_density=1000 / DAY)
    assert pieces is not None
    assert tiles(window, pieces)
    assert len(pieces) == 3
    # No prior: cut blindly; few pages by the prior: the cursor is followed.
    assert dense_pieces(window, sample, per_page=100, prior_density=None) is not None
    assert dense_pieces(window, sample, per_page=100, prior_density=300 / DAY) is None


def test_the_rest_of_a_chain_in_time_order_goes_on_as_pieces() -> None:
    window = Window(0, DAY)
    served = list(range(0, 4 * HOUR, 36))  # 400 records in the first 4 hours, ascending
    done, pieces = chain_rest(window, served, per_page=100) or (None, [])
    assert done == served[-1]  # every record before the last one served is out
    assert pieces[0].start == served[-1]
    assert pieces[-1].end == window.end
    assert 4 <= len(pieces) <= 6  # 20 hours at 100 an hour, 3.6 pages a piece
    # Descending: the rest is before the last record served; nothing is out up to it.
    latest = [DAY - 1 - t for t in served]  # the last 4 hours, newest first
    done, pieces = chain_rest(window, latest, per_page=100) or (None, [])
    assert done == window.start
    assert (pieces[0].start, pieces[-1].end) == (0, latest[-1] + 1)
    assert 4 <= len(pieces) <= 6
    # In no order: nothing tells what is left.
    assert chain_rest(window, served[::2] + served[1::2], per_page=100) is None


def test_pieces_within_a_length() -> None:
    pieces = pieces_within(Window(0, 31 * DAY), 7 * DAY)
    assert len(pieces) == 5
    assert all(p.length <= 7 * DAY for p in pieces)
    assert pieces_within(Window(0, DAY), 7 * DAY) == [Window(0, DAY)]


def test_a_window_little_longer_than_the_complete_length_is_cut_to_it() -> None:
    planner = WindowPlanner(0, 100 * DAY, first_length=31 * DAY, longest=31 * DAY)
    assert planner.next_window(complete=30 * DAY).length == 30 * DAY
    planner = WindowPlanner(0, 100 * DAY, first_length=31 * DAY, longest=31 * DAY)
    assert planner.next_window(complete=10 * DAY).length == 31 * DAY  # far longer: checked


def test_a_short_page_counts_as_full_only_while_no_cursor_key_was_seen() -> None:
    readings = ApiReadings(trusted_window=DAY, accepted_window=DAY)
    readings.saw_page(250, cursor_key=False, cursor=False)
    assert readings.is_full(250, 1000)  # as large as the largest served
    assert not readings.is_full(249, 1000)
    assert not readings.is_full(5, 1000)
    readings.saw_page(3, cursor_key=True, cursor=False)
    assert not readings.is_full(250, 1000)  # the documented key: the cursor says
    assert readings.is_full(1000, 1000)


def test_what_one_endpoint_shows_holds_for_both() -> None:
    readings = ApiReadings(trusted_window=DAY, accepted_window=DAY)
    assert readings.complete_length("messages") == DAY
    readings.shown_complete(20 * DAY)
    assert readings.complete_length("messages") == 20 * DAY
    assert readings.complete_length("conversations") == 20 * DAY  # made after, too
    readings.found_cut(7 * DAY)
    assert readings.complete_length("conversations") == 7 * DAY
    assert readings.longest("messages") == 7 * DAY
    readings.shown_complete(30 * DAY)  # never past a cut
    assert readings.complete_length("messages") == 7 * DAY
    assert "limit 7 days" in readings.summary(["conversations", "messages"])
