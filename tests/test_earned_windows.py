"""End to end: windows are earned. A dense window is fetched as parallel pieces, never
paged alone; a long window is checked before it is trusted, and one the API cut short is
fetched again; a short page proves nothing while no cursor can be followed; a crash costs
a few pages."""

from __future__ import annotations

from collections import Counter

import pytest

from tap_deepconverse.simulator import Dataset, Simulator, SimulatorOptions, generate_dataset
from tests.conftest import DAY, START, TapRun, TapRunner, config_for, iso
from tests.test_export import assert_complete_and_exact

STREAMS = ("conversations", "messages")
YEAR_BEFORE = "2024-01-01T00:00:00Z"  # a year before the first record, as users set it
YEARS_BEFORE = START - 3 * 365 * DAY


def pages_in_a_row(sim: Simulator, endpoint: str) -> int:
    """The most pages any one query was paged for (first page and cursor pages)."""
    chains = Counter(
        (r.params["bot_name"], r.params["start_time"], r.params["end_time"])
        for r in sim.requests
        if r.endpoint == endpoint and r.status == 200
    )
    return max(chains.values())


def lead_in_windows(order: str) -> int:
    """Windows that end before the first record, from ``YEARS_BEFORE``: the first (a day).
    One look at the rest of the range shows where the records begin, and the windows start
    over from there, the rest of the empty range in the first of them."""
    return 1 if order != "desc" else newest_first_lead_in(YEARS_BEFORE)


def newest_first_lead_in(start_date: int) -> int:
    """Windows that end before the first record, served newest first from ``start_date``:
    a page does not show where the records begin, so the empty range is walked in windows
    of max_window_days (after a day, the look and the part before the walk), and the one
    where they begin is cut in pieces that double in length back from its newest records.
    A few of those may be empty: at most one per doubling from a 64th of it (6), in that
    window and again in its piece where the records begin, cut the same way."""
    walk = -(-(START - start_date) // (31 * DAY))
    return 3 + walk + 2 * 6


def export_busy_bot(
    tap: TapRunner, order: str, *, seed: int, start_date: int
) -> tuple[TapRun, Dataset, Simulator]:
    """Six days of a busy bot (120 conversations a day), pages of 25, served in ``order``,
    exported from ``start_date`` (before the data): complete and exact, checked here."""
    dataset = generate_dataset(seed=seed, days=6, conversations_per_day=120, bots=("busy",))
    options = SimulatorOptions(rate_limit=None, order=order)
    with Simulator(dataset, options) as sim:
        config = config_for(
            sim,
            requests_per_second=500,
            page_size=25,
            start_date=iso(start_date),
            end_date="2025-01-07T00:00:00Z",
        )
        run = tap.run(config)
    assert_complete_and_exact(run, dataset)
    return run, dataset, sim


def windows_before_the_data(sim: Simulator, endpoint: str) -> int:
    """Windows asked (first pages) that end before the first record."""
    return sum(
        1
        for r in sim.requests
        if r.endpoint == endpoint
        and "cursor" not in r.params
        and int(r.params["end_time"]) <= START
    )


def longest_chain(order: str) -> int:
    """Pages one query may go: served in time order, what a chain has not reached is a range
    of its own; in no order, a chain that goes on is fetched again around a scout."""
    return 5 if order != "random" else 12


@pytest.mark.parametrize("order", ["random", "asc", "desc"])
def test_a_dense_window_is_never_paged_alone(tap: TapRunner, order: str) -> None:
    # A busy bot whose data starts three years after start_date: the empty range costs a
    # few windows, not one per max_window_days; where the records begin, the windows start
    # over as from the first record. Pages must not come one after the other.
    run, dataset, sim = export_busy_bot(tap, order, seed=3, start_date=YEARS_BEFORE)
    for endpoint in STREAMS:
        empty = windows_before_the_data(sim, endpoint)
        assert empty <= lead_in_windows(order), (endpoint, empty)
        assert pages_in_a_row(sim, endpoint) <= longest_chain(order), endpoint
    messages = [r for r in sim.requests if r.endpoint == "messages"]
    # Pieces cut from a first page's estimate cost requests where the data is thin (in
    # time order, what lies before or after the records seen is not known).
    floor = -(-dataset.count("messages") // 25) + lead_in_windows(order)
    assert len(messages) <= 2 * floor, (len(messages), floor)
    assert "API readings: cursor: 'cursor' followed" in run.stderr


@pytest.mark.parametrize("days", [8, 20])
def test_newest_first_the_empty_range_costs_its_walk_wherever_the_records_begin(
    tap: TapRunner, days: int
) -> None:
    # Served newest first, the window of max_window_days where the records begin may start
    # up to 30 days before them: that empty part costs a few pieces, not one per piece.
    start_date = YEARS_BEFORE - days * DAY
    _, _, sim = export_busy_bot(tap, "desc", seed=3, start_date=start_date)
    for endpoint in STREAMS:
        assert windows_before_the_data(sim, endpoint) <= newest_first_lead_in(start_date), endpoint


@pytest.mark.parametrize("order", ["random", "asc", "desc"])
def test_a_start_date_a_day_before_the_data_costs_a_window(tap: TapRunner, order: str) -> None:
    # The first window is empty and the next holds the records from its start: it is asked
    # again as a run's first window, with no piece before it.
    _, _, sim = export_busy_bot(tap, order, seed=4, start_date=START - DAY)
    for endpoint in STREAMS:
        assert windows_before_the_data(sim, endpoint) == 1, endpoint
        assert pages_in_a_row(sim, endpoint) <= longest_chain(order), endpoint


def test_a_window_far_denser_than_its_estimate_is_not_paged_alone(tap: TapRunner) -> None:
    # An earlier run's state says 150 messages a day; the bot now sends about 2,000. In no
    # time order, the first window's first page says nothing of its count, so its chain is
    # followed: its window is fetched again around a scout once it goes past 12 pages.
    dataset = generate_dataset(seed=11, days=3, conversations_per_day=400, bots=("busy",))
    state = {
        "bookmarks": {
            "messages": {
                "partitions": [
                    {
                        "context": {"bot_name": "busy"},
                        "replication_key": "time",
                        "replication_key_value": "2025-01-01T00:00:00Z",
                        "records_per_day": 150,
                    }
                ]
            }
        }
    }
    with Simulator(dataset, SimulatorOptions(rate_limit=None, order="random")) as sim:
        config = config_for(
            sim, requests_per_second=200, page_size=50, end_date="2025-01-04T00:00:00Z"
        )
        run = tap.run(config, state)
        assert_complete_and_exact(run, dataset)
        # Without the cut, one chain of 41 pages.
        assert pages_in_a_row(sim, "messages") <= 12
        messages = [r for r in sim.requests if r.endpoint == "messages"]
    # The pages of a chain given up are asked again, around a scout that sizes the rest: a
    # cost in requests for a window this far off its estimate, with no blow-up.
    floor = -(-dataset.count("messages") // 50)
    assert len(messages) <= 2 * floor, (len(messages), floor)


def test_windows_cut_short_by_the_api_are_found_and_fetched_again(tap: TapRunner) -> None:
    # The API answers any window longer than 7 days with its first 7 days only, status 200.
    dataset = generate_dataset(
        seed=8, days=60, conversations_per_day=12, bots=("a-bot", "b-bot", "c-bot")
    )
    options = SimulatorOptions(rate_limit=None, cut_window_seconds=7 * DAY)
    with Simulator(dataset, options) as sim:
        config = config_for(sim, requests_per_second=200, end_date="2025-03-02T00:00:00Z")
        run = tap.run(config)
        assert_complete_and_exact(run, dataset)
        for endpoint in STREAMS:
            firsts = [
                int(r.params["end_time"]) - int(r.params["start_time"])
                for r in sim.requests
                if r.endpoint == endpoint and "cursor" not in r.params
            ]
            # Once learnt, no window longer than 7 days is asked for again.
            late = firsts[len(firsts) // 2 :]
            assert max(late) <= 7 * DAY + 1, endpoint
    warnings = [line for line in run.stderr.splitlines() if "only in part" in line]
    # At most once per endpoint. A cut found on one endpoint bounds the other's windows too,
    # so the other may never ask a window long enough to be cut (it depends on which stream
    # gets there first).
    streams = run.streams_that_logged("only in part")
    assert 1 <= len(warnings) <= 2, warnings
    assert len(set(streams)) == len(streams) == len(warnings), warnings
    assert "limit 6" in run.stderr or "limit 7" in run.stderr or "limit 5" in run.stderr


@pytest.mark.parametrize("cut_after_days", [None, 7])
@pytest.mark.parametrize("order", ["random", "asc", "desc"])
def test_a_quiet_bots_light_rest_is_one_window(
    tap: TapRunner, order: str, cut_after_days: int | None
) -> None:
    # Two quiet bots beside a busy one, over 240 days: once a quiet bot's windows show the
    # rest of its range holds less than a window aims at, the rest is one window, not one
    # per max_window_days (31 days). An API that cuts long windows short still loses
    # nothing: the long window is checked like any other.
    dataset = generate_dataset(
        seed=12, days=240, conversations_per_bot=(2400, 60, 40), bots=("busy", "quiet", "hush")
    )
    cut = cut_after_days * DAY if cut_after_days else None
    options = SimulatorOptions(rate_limit=None, order=order, cut_window_seconds=cut)
    with Simulator(dataset, options) as sim:
        config = config_for(sim, requests_per_second=500, end_date=iso(START + 240 * DAY))
        run = tap.run(config)
        windows = Counter(
            (r.endpoint, r.params["bot_name"])
            for r in sim.requests
            if r.endpoint in STREAMS and "cursor" not in r.params
        )
    assert_complete_and_exact(run, dataset)
    quiet = sum(windows[endpoint, bot] for endpoint in STREAMS for bot in ("quiet", "hush"))
    if cut is None:
        # Per quiet bot and stream: the first day (and, if it was empty, 8 days or a look at
        # the rest), the rest, and a check of the rest's end (a length not yet shown
        # complete); 9 windows before.
        assert quiet <= 4 * 2 * len(STREAMS) + len(STREAMS), windows
    else:
        assert "only in part" in run.stderr


def test_a_chain_served_newest_first_and_cut_is_no_proof_of_the_window_end(
    tap: TapRunner,
) -> None:
    # Records newest first, long windows answered with their first 2 days only, and first
    # pages empty (so a window's first page tells nothing of its count): a long window's
    # chain is cut below what it served, and the API's cut lies above it, unseen by a check
    # that only comes at a chain's natural end.
    dataset = generate_dataset(seed=3, days=40, conversations_per_day=5, bots=("bot",))
    options = SimulatorOptions(
        rate_limit=None, order="desc", empty_pages=True, cut_window_seconds=2 * DAY, page_cap=7
    )
    with Simulator(dataset, options) as sim:
        config = config_for(
            sim, requests_per_second=500, page_size=1000, end_date="2025-02-10T00:00:00Z"
        )
        run = tap.run(config)
    assert_complete_and_exact(run, dataset)
    assert "only in part" in run.stderr


@pytest.mark.parametrize("cursor_key", ["next_cursor", "cursor"])
def test_a_page_shorter_than_asked_is_no_proof_of_the_end(tap: TapRunner, cursor_key: str) -> None:
    # The API serves at most 25 records a page when asked for 40.
    dataset = generate_dataset(seed=4, days=4, conversations_per_day=60)
    options = SimulatorOptions(rate_limit=None, page_cap=25, cursor_key=cursor_key)
    with Simulator(dataset, options) as sim:
        config = config_for(
            sim, requests_per_second=200, page_size=40, end_date="2025-01-05T00:00:00Z"
        )
        run = tap.run(config)
        assert_complete_and_exact(run, dataset)
        capped_requests = len(sim.requests)
        sim.options.page_cap = None
        sim.reset_log()
        tap.run(config)
        uncapped_requests = len(sim.requests)
    assert "largest page served: 25" in run.stderr
    if cursor_key == "cursor":
        # The documented cursor is followed: pages of 25 cost what pages of 25 cost, and
        # no window is split for them.
        assert "no cursor to follow" not in run.stderr
        assert capped_requests <= uncapped_requests * 40 / 25 * 1.2


@pytest.mark.parametrize("cursor_key", ["next_cursor", "paging.next"])
def test_a_cursor_under_another_name_is_no_proof_of_the_end_however_small_the_pages(
    tap: TapRunner, cursor_key: str
) -> None:
    # The API serves at most 3 records a page (too few to be told from a quiet window by
    # count) and its cursor sits where the tap does not look: the value it holds there on
    # every page but the last is what shows that a window may have more.
    dataset = generate_dataset(seed=4, days=2, conversations_per_day=30)
    options = SimulatorOptions(rate_limit=None, page_cap=3, cursor_key=cursor_key)
    with Simulator(dataset, options) as sim:
        config = config_for(
            sim, requests_per_second=500, page_size=40, end_date="2025-01-03T00:00:00Z"
        )
        run = tap.run(config)
    assert_complete_and_exact(run, dataset)
    assert "may not be the last" in run.stderr
    assert "cursor: no cursor found (full pages split instead)" in run.stderr


def test_an_outage_mid_backfill_costs_a_few_pages(tap: TapRunner) -> None:
    dataset = generate_dataset(
        seed=6, days=30, bots=("busy", "quiet"), conversations_per_bot=(900, 60)
    )
    with Simulator(dataset, SimulatorOptions(rate_limit=None)) as sim:
        config = config_for(
            sim,
            requests_per_second=200,
            page_size=100,
            max_retries=1,
            # Few windows fetched ahead, so that what was written tracks what was fetched.
            max_parallel_windows=2,
            start_date=YEAR_BEFORE,
            end_date="2025-01-31T00:00:00Z",
        )
        whole = tap.run(config)
        assert whole.exit_code == 0
        # The API goes down for good two thirds into the backfill.
        sim.options.fail_after = 2 * len(sim.requests) // 3
        sim.reset_log()
        broken = tap.run(config)
        assert broken.exit_code == 1
        assert "Gave up on" in broken.stderr
        sim.options.fail_after = None
        resumed = tap.run(config, broken.final_state)
        assert resumed.exit_code == 0, resumed.stderr[-2000:]
    written = 0
    again = 0
    for stream in STREAMS:
        first = set(broken.ids(stream))
        assert first | set(resumed.ids(stream)) == dataset.ids(stream)
        written += len(first)
        again += len(first & set(resumed.ids(stream)))
    assert written > 300, "the outage came too early to tell anything"
    # At most about one window (a few pages of 100) per bot and stream is written twice.
    assert again <= 2 * 2 * 5 * 100, (again, written)


def test_what_a_run_learnt_is_remembered_and_spares_the_next_run_its_checks(
    tap: TapRunner,
) -> None:
    dataset = generate_dataset(seed=5, days=40, conversations_per_day=3)
    with Simulator(dataset, SimulatorOptions(rate_limit=None)) as sim:
        config = config_for(
            sim,
            requests_per_second=200,
            end_date="2025-02-01T00:00:00Z",
            conversation_reread_days=0,  # the lookback alone, for both streams
        )
        first = tap.run(config)
        assert first.exit_code == 0
        partitions = first.final_state["bookmarks"]["messages"]["partitions"]
        assert all(p["complete_window_seconds"] > 20 * DAY for p in partitions)
        sim.reset_log()
        # Nine days later: a day, then the rest in one window, per bot and stream; no check
        # of the 8-day window, as the first run showed longer ones complete.
        later = tap.run({**config, "end_date": "2025-02-10T00:00:00Z"}, first.final_state)
        assert later.exit_code == 0
        firsts = [r for r in sim.requests if "cursor" not in r.params]
        assert len(firsts) == 2 * 2 * len(dataset.bots), [r.params for r in firsts]
        starts = {int(r.params["start_time"]) for r in firsts}
        assert starts == {START + 31 * DAY - 3600 - 1, START + 32 * DAY - 3600 - 1}


@pytest.mark.parametrize("order", ["random", "asc", "desc"])
def test_windows_cut_short_after_an_empty_lead_in_lose_nothing(tap: TapRunner, order: str) -> None:
    # start_date a year before the first record, and an API that answers any window longer
    # than 7 days with its first 7 days: the empty answers of the long lead-in windows prove
    # nothing, and neither would a check of their tail as long as they are.
    dataset = generate_dataset(seed=9, days=20, conversations_per_day=6, bots=("a-bot", "b-bot"))
    options = SimulatorOptions(rate_limit=None, order=order, cut_window_seconds=7 * DAY)
    with Simulator(dataset, options) as sim:
        config = config_for(
            sim, requests_per_second=500, start_date=YEAR_BEFORE, end_date="2025-01-21T00:00:00Z"
        )
        run = tap.run(config)
    assert_complete_and_exact(run, dataset)
    assert "only in part" in run.stderr


@pytest.mark.parametrize("order", ["random", "asc", "desc"])
def test_an_empty_lead_in_is_proven_complete_by_a_request_or_two(
    tap: TapRunner, order: str
) -> None:
    # A year of nothing before the data: each long empty window would cost a check of its
    # own; one look far into the range shows long windows complete for the whole run.
    dataset = generate_dataset(seed=9, days=20, conversations_per_day=6, bots=("a-bot", "b-bot"))
    options = SimulatorOptions(rate_limit=None, order=order)
    with Simulator(dataset, options) as sim:
        config = config_for(
            sim, requests_per_second=500, start_date=YEAR_BEFORE, end_date="2025-01-21T00:00:00Z"
        )
        run = tap.run(config)
        assert_complete_and_exact(run, dataset)
        windows = Counter(
            (r.endpoint, r.params["bot_name"], r.params["start_time"])
            for r in sim.requests
            if r.endpoint in STREAMS and "cursor" not in r.params
        )
    # Per bot and stream: a day, 8 days (or a look at the rest), then windows of 31 days
    # over the 387 days; the checks add a request or two to the whole run.
    lead_in = 2 + -(-(387 - 9) // 31)
    assert sum(windows.values()) <= 2 * len(dataset.bots) * lead_in + 2, windows


def checks_made(sim: Simulator, endpoint: str, first_start: int) -> int:
    """Requests beside each bot's tiling of windows, for bots whose windows are never cut:
    the checks of long windows. Each window is asked from a second before it, and may be
    asked past its end: the window after one is the request that starts inside it and
    reaches furthest past it."""
    asked: dict[str, list[tuple[int, int]]] = {}
    for r in sim.requests:
        if r.endpoint == endpoint and "cursor" not in r.params:
            bounds = (int(r.params["start_time"]), int(r.params["end_time"]))
            asked.setdefault(r.params["bot_name"], []).append(bounds)
    extra = 0
    for ranges in asked.values():
        tiles = 0
        follows = [r for r in ranges if r[0] == first_start - 1]
        while follows:
            tiles += 1
            last = max(follows, key=lambda r: (r[1], -r[0]))
            follows = [r for r in ranges if last[0] < r[0] < last[1] and r[1] > last[1]]
        extra += len(ranges) - tiles
    return extra


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_a_window_length_is_proven_once_not_by_every_window_as_long(
    tap: TapRunner, order: str
) -> None:
    # Eight quiet bots (a conversation a day) whose month-long windows are in flight at
    # once, their answers all coming back together. A window's last record is never at its
    # very end, so its answer proves less than its length, and each would check its own
    # tail; one window as long, ending at a last record, proves the length. (In no time
    # order, a first look far into the range already shows long windows complete.)
    bots = tuple(f"quiet-{i}" for i in range(8))
    dataset = generate_dataset(
        seed=4, days=124, bots=bots, conversations_per_bot=[120] * 8,
        day_boundary_conversations=False,
    )  # fmt: skip
    options = SimulatorOptions(rate_limit=None, order=order, latency=0.2)
    with Simulator(dataset, options) as sim:
        config = config_for(
            sim,
            requests_per_second=500,
            max_parallel_windows=16,
            end_date=iso(START + 124 * DAY),
        )
        run = tap.run(config)
        assert_complete_and_exact(run, dataset)
        checks = {endpoint: checks_made(sim, endpoint, START) for endpoint in STREAMS}
    # A request or two a length for the whole run, not one for each window (about one a
    # bot and endpoint: 14).
    assert sum(checks.values()) <= 7, checks


@pytest.mark.parametrize("order", ["asc", "desc", "random"])
def test_a_long_window_whose_answer_reaches_past_its_end_needs_no_check(
    tap: TapRunner, order: str
) -> None:
    # Windows of a few pages, each days long (longer than any shown complete): asked a
    # little past their end, their own answers show them complete. Asked to their end, a
    # window's last record falls short of it and each checks its own tail.
    dataset = generate_dataset(
        seed=5, days=60, bots=("busy",), conversations_per_day=70,
        messages_per_conversation=(1, 1), day_boundary_conversations=False,
    )  # fmt: skip
    with Simulator(dataset, SimulatorOptions(rate_limit=None, order=order)) as sim:
        config = config_for(
            sim, requests_per_second=500, page_size=100, end_date=iso(START + 60 * DAY)
        )
        run = tap.run(config)
        assert_complete_and_exact(run, dataset)
        checks = checks_made(sim, "conversations", START)
    assert checks <= 1, checks
