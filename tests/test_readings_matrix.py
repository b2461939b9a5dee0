"""End to end over seeded random combinations of the readings the API contract leaves open
(order, bounds, time format, conversations filter, long windows cut short, pages capped,
the cursor's key, empty pages, faults) and of settings (page size, a start_date before the
data, windows in parallel): an exit 0 is a complete and exact export, any other exit is one
line that says what the tap saw; and a run stopped by an outage resumes to a complete
export."""

from __future__ import annotations

import random
from typing import Any

import pytest

from tap_deepconverse.simulator import Dataset, Simulator, SimulatorOptions, generate_dataset
from tests.conftest import DAY, TapRun, TapRunner, config_for, iso
from tests.test_export import STREAMS, assert_complete_and_exact, expected_records

# What a stop may say: the only answers the tap cannot export completely are full pages
# (or empty ones) whose cursor it cannot follow.
KNOWN_STOPS = ("One second cannot be split further", "with an empty page, no 'cursor'")


def random_case(seed: int) -> tuple[Dataset, SimulatorOptions, dict[str, Any]]:
    rnd = random.Random(seed)
    days = rnd.choice([2, 5, 12])
    bots = tuple(f"bot-{i}" for i in range(rnd.choice([1, 1, 2])))
    dataset = generate_dataset(
        seed=rnd.randrange(10**6),
        days=days,
        bots=bots,
        conversations_per_bot=[rnd.choice([3, 40, 300]) for _ in bots],
        long_conversation_rate=rnd.choice([0.0, 0.3]),
    )
    options = SimulatorOptions(
        rate_limit=None,
        order=rnd.choice(["random", "asc", "desc"]),
        bounds=rnd.choice(["[)", "(]", "[]", "()"]),
        time_format=rnd.choice(["seconds", "millis", "iso", "float"]),
        conversation_filter=rnd.choice(["startTime", "lastActionAt"]),
        cut_window_seconds=rnd.choice([None, 2 * DAY]),
        page_cap=rnd.choice([None, None, 7]),
        cursor_key=rnd.choice(["cursor", "cursor", "next"]),
        empty_pages=rnd.choice([False, True]),
        fault_rate=rnd.choice([0.0, 0.03]),
        fault_kinds=("500", "503", "reset"),
        seed=rnd.randrange(1000),
    )
    lead = rnd.choice([0, 3600, 30 * DAY, 365 * DAY])
    settings = {
        "start_date": iso(dataset.start - lead),
        "end_date": iso(dataset.start + days * DAY),
        "page_size": rnd.choice([10, 25, 100]),
        "requests_per_second": 500,
        "max_parallel_windows": rnd.choice([1, 3, 8]),
        "max_retries": 8,
    }
    return dataset, options, settings


def assert_stopped_saying_why(run: TapRun) -> None:
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    errors = [line for line in run.stderr.splitlines() if "| ERROR" in line]
    assert len(errors) == 1, errors
    assert any(reason in errors[0] for reason in KNOWN_STOPS), errors[0]


@pytest.mark.parametrize("seed", range(12))
def test_every_reading_is_exported_whole_or_stops_saying_why(tap: TapRunner, seed: int) -> None:
    dataset, options, settings = random_case(seed)
    with Simulator(dataset, options) as sim:
        run = tap.run(config_for(sim, **settings))
    if run.exit_code == 0 or options.cursor_key == "cursor":
        assert_complete_and_exact(run, dataset)
    else:
        assert_stopped_saying_why(run)


# Cases whose outage comes mid-export, after some records are out.
@pytest.mark.parametrize("seed", [102, 103, 106, 107, 109, 116])
def test_a_run_stopped_by_an_outage_resumes_to_a_whole_export(tap: TapRunner, seed: int) -> None:
    dataset, options, settings = random_case(seed)
    options.cursor_key = "cursor"  # a stop of its own would hide the outage's
    options.fail_after = random.Random(seed).randint(2, 40)
    with Simulator(dataset, options) as sim:
        first = tap.run(config_for(sim, **{**settings, "max_retries": 1}))
        options.fail_after = None
        sim.reset_log()
        state = first.states[-1] if first.states else None
        rerun = tap.run(config_for(sim, **settings), state)
    assert first.exit_code != 0  # the outage stopped it
    assert rerun.exit_code == 0, rerun.stderr[-3000:]
    for stream in STREAMS:
        for run in (first, rerun):
            ids = run.ids(stream)
            assert len(ids) == len(set(ids)), f"{stream}: a record was emitted twice in a run"
        written = set(first.ids(stream)) | set(rerun.ids(stream))
        assert written == set(expected_records(dataset, stream)), stream
