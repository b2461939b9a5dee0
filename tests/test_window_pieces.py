"""Pure logic of earned windows: pieces of a dense window, the rest of a long chain, and
what a run learns of the API."""

from __future__ import annotations

import itertools

import msgspec
import pytest

from tap_deepconverse.client import Page
from tap_deepconverse.fetching import before
from tap_deepconverse.readings import ApiReadings
from tap_deepconverse.windows import (
    MAX_PIECES,
    MAX_UNORDERED_CHAIN,
    SCOUT_SHARE,
    ChainRest,
    RecentIds,
    Scout,
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
    pieces = dense_pieces(window, sample, per_page=100, prior_records=None)
    assert pieces is not None
    assert tiles(window, pieces)
    # Ten days at 100 records an hour is 240 pages: as many pieces as allowed, all cut in
    # the part the records are in (the first one reaches back to the window's start).
    assert len(pieces) == MAX_PIECES
    assert all(p.start >= 10 * DAY for p in pieces[1:])


@pytest.mark.parametrize("prior", [None, 5_000.0])
def test_a_dense_second_is_paged_as_it_cannot_be_cut(prior: float | None) -> None:
    # More records at one second than a page holds (a burst, or a small page cap).
    window = Window(1_000, 1_001)
    for sample in ([1_000] * 100, [1_000, 999] * 50):
        assert dense_pieces(window, sample, per_page=100, prior_records=prior) is None


def test_a_page_in_time_order_leaves_the_part_it_has_not_reached_to_the_prior() -> None:
    window = Window(0, DAY)
    # The first page covers the window's first hour: 100 records, served in order.
    ascending = [i * 36 for i in range(100)]
    descending = [DAY - 1 - i * 36 for i in range(100)]
    for sample in (ascending, descending):
        # By the page's own density the window holds 24 pages. The bot's windows say 300
        # records a day: the page, then 23 hours of that, is under 4 pages, so the cursor
        # is followed (a chain that outgrows that is cut where it stands).
        assert dense_pieces(window, sample, per_page=100, prior_records=300) is None
        # Without a prior to trust, the page's density goes: pieces at once.
        for stale in (None, 40):
            blind = dense_pieces(window, sample, per_page=100, prior_records=stale)
            assert isinstance(blind, list) and tiles(window, blind)
            assert len(blind) == 7  # 24 pages in pieces of about 3.6
        # A prior of 20 pages a day cuts the window too, as the prior tells.
        pieces = dense_pieces(window, sample, per_page=100, prior_records=2000)
        assert isinstance(pieces, list) and tiles(window, pieces)
        assert len(pieces) == 6


def test_a_page_in_no_order_is_cut_at_its_quantiles_by_the_prior_estimate() -> None:
    window = Window(0, DAY)
    sample = [(i * 7919) % DAY for i in range(100)]  # spread over the day, out of order
    # 1,000 records a day at 100 a page: 10 pages, in pieces of about 3.6 pages.
    pieces = dense_pieces(window, sample, per_page=100, prior_records=1000)
    assert pieces is not None
    assert tiles(window, pieces)
    assert len(pieces) == 3
    # No prior, or one the cursor belies (under half a page): a scout; a few pages by the
    # prior: the cursor is followed.
    assert isinstance(dense_pieces(window, sample, per_page=100, prior_records=None), Scout)
    assert isinstance(dense_pieces(window, sample, per_page=100, prior_records=40), Scout)
    assert dense_pieces(window, sample, per_page=100, prior_records=300) is None


def test_records_past_the_window_do_not_hide_the_order_served() -> None:
    window = Window(0, DAY)
    # Newest first, led by three records from past the window's end (its request reached
    # past it): still newest first, so the part before the page is cut evenly.
    newest_first = [DAY - 1 - i * 300 for i in range(97)]
    sample = [DAY + 200, DAY + 100, DAY + 50, *newest_first]
    pieces = dense_pieces(window, sample, per_page=100, prior_records=1000)
    assert pieces is not None and not isinstance(pieces, Scout)
    assert [piece.end for piece in pieces] == [DAY // 3, 2 * DAY // 3, DAY]


def test_what_a_request_past_the_window_brought_is_left_to_the_next_window() -> None:
    records = {"a": DAY - 10, "b": DAY + 5, "c": None, "d": DAY}
    page = Page([msgspec.Raw(f'{{"_id":"{rid}"}}'.encode()) for rid in records], None, b"")
    keys: list[dict[str, object]] = [{"_id": rid, "at": at} for rid, at in records.items()]

    def record_time(key: dict[str, object]) -> int | None:
        at = key["at"]
        return at if isinstance(at, int) else None

    kept, kept_keys = before(DAY, page, keys, record_time)
    # Before the end, or of no readable time: kept. At or after it: the next window's.
    assert [bytes(raw) for raw in kept.data] == [b'{"_id":"a"}', b'{"_id":"c"}']
    assert [key["_id"] for key in kept_keys] == ["a", "c"]
    assert before(2 * DAY, page, keys, record_time) == (page, keys)
    assert before(DAY, page, keys[:3], record_time) == (page, keys[:3])  # not one to one


def test_pieces_cut_at_a_sample_too_small_to_size_them_aim_at_fewer_pages() -> None:
    window = Window(0, 30 * DAY)
    sample = [(i * 86_413) % window.length for i in range(100)]
    # 15,000 records at 100 a page: 150 pages. In pieces of 3.6 pages each would hold 2 or
    # 3 of the sample's times, so its count is known to within a factor of 2: pieces aim at
    # 3 pages.
    pieces = dense_pieces(window, sample, per_page=100, prior_records=15_000)
    assert pieces is not None and not isinstance(pieces, Scout)
    assert tiles(window, pieces)
    assert len(pieces) == 50
    # The rest of a scout is cut the same way.
    scout = dense_pieces(window, sample, per_page=100, prior_records=None)
    assert isinstance(scout, Scout)
    rest = scout.rest_pieces(957, 100)  # 957 records times the ratio: 149.9 pages
    assert rest is not None and tiles(scout.rest, rest)
    assert len(rest) == 50
    # A sample of 1,000 times has enough for each piece of 3.6 pages.
    large = [(i * 86_413) % window.length for i in range(1000)]
    pieces = dense_pieces(window, large, per_page=1000, prior_records=150_000)
    assert pieces is not None and not isinstance(pieces, Scout)
    assert len(pieces) == 42


def test_the_rest_of_a_chain_in_time_order_goes_on_as_pieces() -> None:
    window = Window(0, DAY)
    served = list(range(0, 4 * HOUR, 36))  # 400 records in the first 4 hours, ascending
    rest = chain_rest(window, served, per_page=100, pages=5)
    assert rest is not None
    assert rest.done_until == served[-1]  # every record before the last one served is out
    assert rest.pieces[0].start == served[-1]
    assert rest.pieces[-1].end == window.end
    assert 4 <= len(rest.pieces) <= 6  # 20 hours at 100 an hour, 3.6 pages a piece
    assert 2_300 <= rest.records <= 2_500  # 24 hours at 100 an hour
    # Descending: the rest is before the last record served; nothing is out up to it.
    latest = [DAY - 1 - t for t in served]  # the last 4 hours, newest first
    rest = chain_rest(window, latest, per_page=100, pages=5)
    assert rest is not None
    assert rest.done_until == window.start
    assert (rest.pieces[0].start, rest.pieces[-1].end) == (0, latest[-1] + 1)
    assert 4 <= len(rest.pieces) <= 6
    # Served up to the window's end: nothing is left to cut, the chain goes on.
    assert chain_rest(window, [DAY - 2, DAY - 1, DAY], per_page=100, pages=5) is None


def test_a_chain_newest_first_leaves_what_its_last_record_could_be_filtered_at() -> None:
    # Conversations newest first by lastActionAt; each is known by its earliest time, its
    # start. The last one served lasted 4 hours: those still to come were active up to its
    # last action, however late they started.
    window = Window(0, DAY)
    starts = [DAY - 1 - 60 * i for i in range(400)]  # newest first, a minute apart
    last_action = starts[-1] + 4 * HOUR
    rest = chain_rest(window, starts, per_page=100, pages=5, last_latest=last_action)
    assert rest is not None
    assert isinstance(rest, ChainRest)
    assert rest.done_until == window.start
    assert (rest.pieces[0].start, rest.pieces[-1].end) == (0, last_action + 1)


def test_a_chain_all_at_one_second_shows_no_order() -> None:
    # 400 records at noon served first: newest first, the morning's are yet to come, so
    # nothing before noon may count as out, and nothing after it as left.
    window = Window(0, DAY)
    served = [12 * HOUR] * 400
    assert chain_rest(window, served, per_page=100, pages=5) is None  # the chain goes on
    again = chain_rest(window, served, per_page=100, pages=MAX_UNORDERED_CHAIN)
    assert isinstance(again, Scout)  # the whole window again, around a scout
    assert tiles(window, again.pieces)


def test_a_long_chain_in_no_order_is_fetched_again_around_a_scout() -> None:
    window = Window(0, DAY)
    # 800 records served out of time order, all in the window's last 6 hours.
    served = [18 * HOUR + (i * 7919) % (6 * HOUR) for i in range(800)]
    assert chain_rest(window, served[:500], per_page=100, pages=5) is None  # not yet
    scout = chain_rest(window, served, per_page=100, pages=MAX_UNORDERED_CHAIN)
    assert isinstance(scout, Scout)
    assert tiles(window, scout.pieces)
    # Its share of the sample, a sixteenth, from the window's start: the empty hours too.
    assert scout.window.start == window.start
    assert scout.window.end == sorted(served)[round(len(served) * SCOUT_SHARE)]
    assert scout.ratio == 15


def test_a_dense_window_nothing_tells_of_is_sized_by_a_scout() -> None:
    window = Window(0, 30 * DAY)
    # A year's start_date: the window's first 20 days are empty, its records in the last 10.
    sample = [20 * DAY + (i * 86_413) % (10 * DAY) for i in range(100)]
    scout = dense_pieces(window, sample, per_page=100, prior_records=None)
    assert isinstance(scout, Scout)
    assert tiles(window, scout.pieces)
    assert scout.pieces[0] == scout.window  # asked first: its rest waits for its count
    share = round(len(sample) * SCOUT_SHARE)
    assert scout.window.end == sorted(sample)[share]
    assert scout.ratio == (len(sample) - share) / share
    planner = WindowPlanner(0, 30 * DAY, first_length=30 * DAY, longest=30 * DAY)
    planner.replaced(planner.next_window())
    planner.note_scout(scout)
    assert planner.scout_pending(scout.rest)
    assert planner.expected_records(scout.rest) is None
    # The rest's count is the scout's times the ratio of their shares in the sample, however
    # unlike their times: the scout spans 20 empty days.
    planner.observe(scout.window, 120, target_records=360, planned=False)
    assert not planner.scout_pending(scout.rest)
    assert planner.expected_records(scout.rest) == 120 * scout.ratio
    # The density goes by the whole window's estimate, not by the scout's empty days.
    assert planner.density_near(scout.rest) == pytest.approx(
        120 * (1 + scout.ratio) / window.length
    )
    # 1,880 records at 100 a page: the rest is cut before it is asked anything, where the
    # page's records are, into pieces of about 3.6 pages.
    pieces = planner.known_pieces(scout.rest, 100)
    assert pieces is not None
    assert tiles(scout.rest, pieces)
    assert len(pieces) == 6
    assert all(piece.start >= 20 * DAY for piece in pieces[1:])
    assert scout.rest_pieces(10, 100) is None  # 150 records: its cursor is followed


def planner_with_scout(days: int, records: int) -> tuple[WindowPlanner, Scout]:
    """A planner whose one window, ``days`` long, was cut around a scout by a first page of
    ``records`` records spread over it."""
    window = Window(0, days * DAY)
    sample = [(i * 86_413) % window.length for i in range(records)]
    scout = dense_pieces(window, sample, per_page=records, prior_records=None)
    assert isinstance(scout, Scout)
    planner = WindowPlanner(0, window.end, first_length=window.length, longest=window.length)
    planner.replaced(planner.next_window())
    planner.note_scout(scout)
    return planner, scout


def test_pieces_cut_by_a_scout_are_cut_again_when_their_neighbours_show_them_dense() -> None:
    planner, scout = planner_with_scout(16, 100)
    # The scout counts 40 records: 600 in the whole window by its sample, 37.5 a day.
    planner.observe(scout.window, 40, target_records=360, planned=False)
    assert planner.known_pieces(scout.window, 100) is None  # a scout is asked, never cut
    rest = planner.known_pieces(scout.rest, 100)
    assert rest is not None and tiles(scout.rest, rest)
    # Nothing has reported on the pieces' days but the scout's estimate: each is paged.
    assert all(planner.known_pieces(piece, 100) is None for piece in rest)
    # Two pieces two days off report 600 records a day: the estimate was far too low. A
    # piece not yet asked is cut before it is, into pieces of about 3.6 pages.
    late = Window(10 * DAY, 11 * DAY)
    for day in (12, 13):
        planner.observe(Window(day * DAY, (day + 1) * DAY), 600, target_records=360, planned=False)
    cut = planner.known_pieces(late, 100)
    assert cut is not None and tiles(late, cut)
    assert len(cut) == 2
    # A window whose neighbours report it light is asked as it is.
    assert planner.known_pieces(Window(10 * DAY, 10 * DAY + 3 * HOUR), 100) is None


def test_a_piece_before_the_first_record_is_not_cut_by_the_density_after_it() -> None:
    # A year before the data: the part of the range before a bot's first record is empty,
    # however dense the windows after it.
    planner = WindowPlanner(0, 40 * DAY, first_length=40 * DAY, longest=40 * DAY)
    planner.replaced(planner.next_window())
    first = 20 * DAY + 600
    planner.observe(
        Window(20 * DAY, 21 * DAY), 600, target_records=360, planned=False, first_record=first
    )
    assert planner.known_pieces(Window(5 * DAY, 19 * DAY), 100) is None
    # A piece across the first record is cut over its part from the first record on.
    across = Window(18 * DAY, 22 * DAY)
    pieces = planner.known_pieces(across, 100)
    assert pieces is not None and tiles(across, pieces)
    assert len(pieces) == 4  # some 1,200 records after the first
    assert all(piece.start >= first for piece in pieces[1:])


def test_a_scout_too_dense_to_tell_is_scouted_in_turn() -> None:
    planner, outer = planner_with_scout(16, 160)
    inner_sample = [outer.window.start + (i * 7_919) % outer.window.length for i in range(160)]
    inner = dense_pieces(outer.window, inner_sample, per_page=160, prior_records=None)
    assert isinstance(inner, Scout)
    planner.note_scout(inner)
    planner.replaced(outer.window, planned=False)  # the outer scout was cut: still pending
    assert planner.scout_pending(outer.rest)
    planner.observe(inner.window, 50, target_records=360, planned=False)
    assert planner.expected_records(outer.rest) == pytest.approx(
        50 * (1 + inner.ratio) * outer.ratio
    )


def test_a_scout_cut_into_plain_pieces_tells_nothing() -> None:
    window = Window(0, DAY)
    sample = [(i * 7_919) % DAY for i in range(100)][::-1]
    scout = dense_pieces(window, sample, per_page=100, prior_records=None)
    assert isinstance(scout, Scout)
    planner = WindowPlanner(0, DAY, first_length=DAY, longest=DAY)
    planner.replaced(planner.next_window())
    planner.note_scout(scout)
    planner.replaced(scout.window, planned=False)
    assert not planner.scout_pending(scout.rest)  # it need not wait any longer
    assert planner.expected_records(scout.rest) is None  # and is scouted in turn


def test_the_density_of_a_piece_is_that_of_its_neighbours() -> None:
    planner = WindowPlanner(0, 2 * DAY, first_length=2 * DAY, longest=2 * DAY)
    planner.replaced(planner.next_window())
    for start, end, records in ((14, 22, 600), (30, 38, 200), (6, 14, 300), (0, 6, 50)):
        planner.observe(
            Window(start * HOUR, end * HOUR), records, target_records=360, planned=False
        )
    # Nearest first, until they span a day: the 8 hours on either side, then the 8 before
    # those; not the first 6 hours, further off.
    near = planner.density_near(Window(22 * HOUR, 30 * HOUR))
    assert near is not None
    assert near * DAY == pytest.approx(1_100)


def test_newest_first_where_the_records_may_begin_pieces_double_back_from_the_newest() -> None:
    # A month whose first page holds its newest hour of records, served newest first: by
    # that page the month holds 24 * 31 pages. Where the records may begin inside it (a
    # lead-in's window), pieces double in length back from the newest record, so that an
    # empty start costs a few of them; elsewhere they are even.
    window = Window(0, 31 * DAY)
    sample = [window.end - 1 - i * 36 for i in range(100)]
    even = dense_pieces(window, sample, per_page=100, prior_records=None)
    assert isinstance(even, list) and tiles(window, even)
    assert len(even) == MAX_PIECES
    doubling = dense_pieces(
        window, sample, per_page=100, prior_records=None, records_may_begin=True
    )
    assert isinstance(doubling, list) and tiles(window, doubling)
    first = even[-1].length
    assert doubling[-1].length == pytest.approx(first, abs=2)
    lengths = [piece.length for piece in reversed(doubling)]
    for shorter, longer in itertools.pairwise(lengths[:-1]):
        assert longer == 2 * shorter
    # The oldest takes what is left: 64 even pieces are 1 + 2 + 4 + 8 + 16, then 33.
    assert lengths[-2] <= lengths[-1] < 3 * lengths[-2]
    assert len(doubling) == 6


def test_an_empty_lead_in_does_not_dilute_the_density_of_the_first_records() -> None:
    planner = WindowPlanner(0, 500 * DAY, first_length=31 * DAY, longest=31 * DAY)
    for _ in range(12):
        planner.observe(planner.next_window(), 0, target_records=360)
    planner.observe(planner.next_window(), 3_100, target_records=360)  # 100 a day
    assert planner.density is not None
    assert planner.density * DAY == pytest.approx(100)
    assert planner.length == pytest.approx(3.6 * DAY, rel=0.01)


def test_the_window_that_holds_the_first_records_counts_from_the_first_of_them() -> None:
    # Its first 30 days are as empty as the lead-in before them: 100 records in its last
    # day are a density of 100 a day, not of 100 a month.
    planner = WindowPlanner(0, 500 * DAY, first_length=31 * DAY, longest=31 * DAY)
    planner.observe(planner.next_window(), 0, target_records=360)
    window = planner.next_window()
    assert planner.before_first_records
    planner.observe(window, 100, target_records=360, first_record=window.end - DAY)
    assert not planner.before_first_records
    assert planner.density is not None
    assert planner.density * DAY == pytest.approx(100)
    assert planner.length == pytest.approx(3.6 * DAY, rel=0.01)
    # Later windows with records count whole: their empty hours are the bot's own.
    planner.observe(planner.next_window(), 0, target_records=360, first_record=None)
    planner.observe(planner.next_window(), 10, target_records=360, first_record=0)
    assert planner.density * DAY < 100


def test_the_ids_before_a_window_cut_mid_chain_are_kept_for_its_first_piece() -> None:
    recent = RecentIds()
    recent.add("edge", "2025-01-01T00:00:00Z")  # the window before, at its last second
    recent.next_window()
    recent.add("a", "2025-01-01T00:00:05Z")  # a page of the window cut mid-chain
    recent.hold()
    recent.next_window()  # its first piece
    assert recent.add("edge", "2025-01-01T00:00:00Z") == RecentIds.SAME
    assert recent.add("a", "2025-01-01T00:00:05Z") == RecentIds.SAME
    # Its last piece met the held record at its own edge: once released, the window after
    # still knows it.
    recent.next_window()
    assert recent.add("a", "2025-01-01T00:00:05Z") == RecentIds.SAME
    recent.release()
    recent.next_window()
    assert recent.add("a", "2025-01-01T00:00:05Z") == RecentIds.SAME
    recent.next_window()
    recent.next_window()
    assert recent.add("a", "2025-01-01T00:00:05Z") == RecentIds.FIRST


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
    assert readings.is_full(1000, 1000)  # ... but it may be always null: split
    readings.saw_page(1000, cursor_key=True, cursor=True)
    assert not readings.is_full(1000, 1000)  # a cursor followed: its null is the end


def test_a_small_page_counts_as_full_when_another_field_could_be_the_cursor() -> None:
    readings = ApiReadings(trusted_window=DAY, accepted_window=DAY)
    readings.saw_page(3, cursor_key=False, cursor=False)
    assert not readings.is_full(3, 1000)  # a quiet window's page, by its count alone
    assert readings.is_full(3, 1000, cursor_sign=True)
    assert not readings.is_full(2, 1000, cursor_sign=True)  # fewer than the largest served
    readings = ApiReadings(trusted_window=DAY, accepted_window=DAY)
    readings.saw_page(1, cursor_key=False, cursor=False)
    assert not readings.is_full(1, 1000, cursor_sign=True)  # one record is never a cap


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
