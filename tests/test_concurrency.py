"""Both endpoints at once, memory bounded by bytes, and state that never runs ahead."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from tap_deepconverse.fetching import WindowSource
from tap_deepconverse.prefetch import ByteBudget, Pipeline
from tap_deepconverse.readings import ApiReadings
from tap_deepconverse.simulator import Simulator, SimulatorOptions, generate_dataset
from tap_deepconverse.timestamps import normalize_timestamp
from tap_deepconverse.windows import WindowPlanner
from tests.conftest import TapRunner, bookmark, config_for
from tests.test_export import assert_complete_and_exact

STREAMS = ("conversations", "messages")
TIME_FIELD = {"conversations": "startTime", "messages": "time"}


def test_both_endpoints_are_fetched_at_once_and_state_never_runs_ahead(tap: TapRunner) -> None:
    dataset = generate_dataset(seed=11, days=4, conversations_per_day=60)
    options = SimulatorOptions(rate_limit=3, latency=0.2)
    with Simulator(dataset, options) as sim:
        run = tap.run(config_for(sim, page_size=25, end_date="2025-01-05T00:00:00Z"))
        arrivals = {e: [r.arrived for r in sim.requests if r.endpoint == e] for e in STREAMS}
        statuses = {r.status for r in sim.requests}
    assert_complete_and_exact(run, dataset)
    assert 429 not in statuses
    # The two endpoints' requests overlap in time instead of following each other.
    overlap = min(max(arrivals[e]) for e in STREAMS) - max(min(arrivals[e]) for e in STREAMS)
    shorter = min(max(arrivals[e]) - min(arrivals[e]) for e in STREAMS)
    assert overlap > 0.8 * shorter, (overlap, shorter)
    # Records of both streams are in the one output (in which order depends on how fast
    # each endpoint's windows come: a dense first window is fetched as pieces first).
    streams = {m["stream"] for m in run.messages if m["type"] == "RECORD"}
    assert streams == set(STREAMS)
    # Every STATE comes after every record it claims, for both streams and every bot.
    written: dict[tuple[str, str], list[str]] = {}
    for message in run.messages:
        if message["type"] == "RECORD":
            record = message["record"]
            key = (message["stream"], record["bot_name"])
            written.setdefault(key, []).append(record["_id"])
        elif message["type"] == "STATE":
            for stream in STREAMS:
                for bot in dataset.bots:
                    claimed = bookmark(message["value"], stream, bot)
                    if claimed is None:
                        continue
                    records = (
                        dataset.conversations(bot)
                        if stream == "conversations"
                        else dataset.messages(bot)
                    )
                    expected = {
                        r["_id"]
                        for r in records
                        if normalize_timestamp(r[TIME_FIELD[stream]]) < claimed
                    }
                    missing = expected - set(written.get((stream, bot), []))
                    assert not missing, f"STATE claims {stream}/{bot} up to {claimed} too early"


def test_a_run_of_one_stream_fetches_only_that_endpoint(tap: TapRunner, small_dataset) -> None:
    with Simulator(small_dataset, SimulatorOptions(rate_limit=None)) as sim:
        config = config_for(sim, requests_per_second=200, page_size=40)
        discovered = tap.run(config, extra_args=("--discover",))
        catalog = json.loads(discovered.stdout)
        for entry in catalog["streams"]:
            for metadata in entry["metadata"]:
                if metadata["breadcrumb"] == []:
                    metadata["metadata"]["selected"] = entry["tap_stream_id"] == "messages"
        catalog_path = tap.workdir / "catalog.json"
        catalog_path.write_text(json.dumps(catalog))
        run = tap.run(config, extra_args=("--catalog", str(catalog_path)))
        endpoints = {r.endpoint for r in sim.requests}
    assert run.exit_code == 0, run.stderr[-2000:]
    assert endpoints == {"messages"}
    assert set(run.records) == {"messages"}
    assert set(run.ids("messages")) == {m["_id"] for m in small_dataset.messages()}


class _Windows:
    """A job source of ``count`` jobs in one partition."""

    def __init__(self, count: int) -> None:
        self.left = list(range(count))

    def next_job(self, only: str | None = None) -> int | None:
        if not self.left or only not in (None, "bot"):
            return None
        return self.left.pop(0)

    def all_planned(self, key: str) -> bool:
        return not self.left

    def unblocked(self) -> bool:
        return False


class _PeakBudget(ByteBudget):
    """A byte budget that remembers the most it held."""

    peak = 0

    def take(self, size: int, exempt: Callable[[], bool], stop: threading.Event) -> bool:
        taken = super().take(size, exempt, stop)
        self.peak = max(self.peak, self.used)
        return taken


def _one_partition(job: int) -> str:
    return "bot"


@pytest.mark.parametrize("page_bytes", [10_000, 300_000])
def test_pages_waiting_for_a_slow_writer_stay_within_the_byte_budget(page_bytes: int) -> None:
    budget = _PeakBudget(1_000_000)

    def produce(job: int) -> Iterator[bytes]:
        for page in range(5):
            yield bytes([job % 256, page]) * (page_bytes // 2)

    pipeline: Pipeline[str, int, bytes] = Pipeline(
        _Windows(30), produce, partition_of=_one_partition, size=len, max_parallel=8, budget=budget
    )
    pipeline.fill()
    seen: list[tuple[int, int]] = []
    for job, pages in pipeline.partition("bot"):
        for page in pages:
            seen.append((job, page[1]))
            time.sleep(0.002)  # a writer slower than the fetching
    pipeline.close()
    # Everything, in order, and never more held than the budget plus the page being read.
    assert seen == [(job, page) for job in range(30) for page in range(5)]
    assert budget.peak <= budget.limit + page_bytes
    assert budget.used == 0


def test_a_failed_job_raises_after_the_items_it_produced() -> None:
    def produce(job: int) -> Iterator[int]:
        yield job
        if job == 2:
            raise RuntimeError("boom")

    pipeline: Pipeline[str, int, int] = Pipeline(
        _Windows(5),
        produce,
        partition_of=_one_partition,
        size=lambda _: 1,
        max_parallel=3,
        budget=ByteBudget(100),
    )
    got: list[int] = []

    def read_all() -> None:
        for _, items in pipeline.partition("bot"):
            got.extend(items)

    with pytest.raises(RuntimeError, match="boom"):
        read_all()
    pipeline.close()
    assert got == [0, 1, 2]
    assert threading.active_count() < 20


def test_a_job_that_shows_the_source_can_plan_more_does_not_hold_it_back() -> None:
    # A window planned alone (it may hold far more than the ones before) whose first page
    # shows it dense: windows as long may now be planned, while its chain goes on.
    class GrowingWindows:
        def __init__(self) -> None:
            self.planned = 0
            self.dense = threading.Event()

        def next_job(self, only: str | None = None) -> int | None:
            if self.planned == 0 or (self.dense.is_set() and self.planned < 3):
                self.planned += 1
                return self.planned
            return None

        def all_planned(self, key: str) -> bool:
            return self.planned >= 3

        def unblocked(self) -> bool:
            return self.dense.is_set() and self.planned == 1

    source = GrowingWindows()
    others_started = threading.Event()

    def produce(job: int) -> Iterator[int]:
        if job != 1:
            others_started.set()
            yield job
            return
        time.sleep(0.2)  # the consumer is reading it by now: nothing else asks to plan
        source.dense.set()  # its first page has a cursor
        yield 10
        # The rest of its chain: the other windows are fetched meanwhile, not after it.
        yield 11 if others_started.wait(timeout=5) else -1

    pipeline: Pipeline[str, int, int] = Pipeline(
        source,
        produce,
        partition_of=_one_partition,
        size=lambda _: 1,
        max_parallel=4,
        budget=ByteBudget(100),
    )
    pipeline.fill()
    got = [item for _, items in pipeline.partition("bot") for item in items]
    pipeline.close()
    assert got == [10, 11, 2, 3]


def test_a_window_found_dense_unblocks_planning_once() -> None:
    day = 86_400
    planner = WindowPlanner(0, 30 * day, first_length=day, longest=31 * day)
    readings = ApiReadings(trusted_window=day, accepted_window=day)
    source = WindowSource({"bot": planner}, readings, "messages")
    first = source.next_job()
    assert first is not None
    assert source.next_job() is None  # the first window's length is a guess: it goes alone
    assert not source.unblocked()
    source.note_dense(first)  # its first page came with a cursor
    assert source.unblocked()
    assert not source.unblocked()  # told once
    assert source.next_job() is not None
