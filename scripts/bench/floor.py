"""Requests of a full export against the floor, and the time they take at the API's rate.

The simulator's rate limit off, the tap at 1000 requests/s, so counts come fast. Three
shapes: one busy bot over 60 days; 20 quiet bots over a year (100 conversations each); one
busy bot with 8 quiet ones over 60 days; each from its first record and from a year before it
(``LEADS``: users set start_date early). For each, before and new: requests made, the floor
(sum over bots and endpoints of max(ceil(records / page_size), ceil(days of data /
max_window_days)), plus one for an empty range before the data), requests/floor, exit code,
records exported against the dataset's count (a difference fails the benchmark), wall time,
and the time those requests take at 3 requests/s (endpoints overlapped: the busier
endpoint's requests / 3; one at a time: all requests / 3).
"""

from __future__ import annotations

from tap_deepconverse.simulator import Dataset, Simulator, SimulatorOptions

from .plans import (
    API_RATE,
    ENDPOINTS,
    LEADS,
    MAX_WINDOW_DAYS,
    PAGE_SIZE,
    Plan,
    floors,
)
from .report import chains_text, describe, duration, per_endpoint, table
from .runner import FAST, Bench, TapRun
from .versions import Code, new_first


def requests_against_floor(
    bench: Bench, codes: list[Code], plan: Plan, data: dict[str, Dataset]
) -> TapRun | None:
    """The table of request counts; returns the new code's run of the quiet year from its
    first record (its requests tell how long that export takes at the real limit)."""
    print(
        "Simulator without rate limit or latency, tap at 1000 requests/s: request counts. "
        f"Floor: per bot and endpoint, max(ceil(records / {PAGE_SIZE}), "
        f"ceil(days of data / {MAX_WINDOW_DAYS})), plus one for an empty range before the "
        "data, summed. Requests are conversations + messages."
    )
    rows: list[list[str]] = []
    new_quiet: TapRun | None = None
    for key, shape in (("busy", plan.busy), ("quiet", plan.quiet_year), ("mixed", plan.mixed)):
        dataset = data[key]
        print(f"- {describe(shape, dataset)}")
        for start, lead in LEADS.items():
            floor = floors(dataset, lead_days=lead)
            # The new code first: the simulator's page cache is cold for the first run.
            with Simulator(dataset, SimulatorOptions(rate_limit=None)) as sim:
                runs = {
                    c.label: bench.run(c, sim, bench.config(sim, dataset, lead_days=lead, **FAST))
                    for c in new_first(codes)
                }
            for code in codes:
                run = runs[code.label]
                if key == "quiet" and code.label == "new" and not lead:
                    new_quiet = run
                rows.append([
                    shape.title,
                    start,
                    code.label,
                    per_endpoint(run.requests),
                    per_endpoint(floor),
                    f"{run.total_requests / sum(floor.values()):.2f}",
                    str(run.exit_code),
                    bench.check_records(run, dataset, shape.title, streams=ENDPOINTS),
                    duration(run.seconds),
                    duration(max(run.requests.values()) / API_RATE),
                    duration(run.total_requests / API_RATE),
                    chains_text(run.pages_in_a_row),
                ])  # fmt: skip
    table(
        [
            "shape", "start_date", "code", "requests", "floor", "requests/floor", "exit",
            "records / dataset", "wall", "at 3 req/s, endpoints overlapped",
            "at 3 req/s, one at a time", "pages in a row: most; queries over 4",
        ],
        rows,
    )  # fmt: skip
    print(
        "The floor takes the larger of pages and windows of the data; from a year before, "
        "the empty year adds a request per bot and endpoint (one window, as nothing in it is "
        "paged)."
    )
    print(
        "Goals for new: requests/floor <= 1.3; the quiet year under 3 min at 3 req/s "
        "(the before code streams one endpoint at a time: its time is the last column)."
    )
    return new_quiet
