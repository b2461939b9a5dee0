"""A daily incremental run after a full one: requests per bot and endpoint.

The simulator without rate limit, the tap at 1000 requests/s. A full run up to one day
before the end of the data, then a run to the end from its state (the last day is new, plus
the lookback); the figures are the second run's requests, per bot and endpoint, and the full
run's for scale.
"""

from __future__ import annotations

from collections import Counter

from tap_deepconverse.simulator import Dataset, Simulator, SimulatorOptions

from .plans import DAY, ENDPOINTS, Shape
from .report import table
from .runner import FAST, Bench, iso
from .versions import Code


def daily_incremental(bench: Bench, codes: list[Code], shape: Shape, dataset: Dataset) -> None:
    print(f"\n### Daily incremental run, {shape.title}\n")
    print(
        "A full run up to one day before the end of the data, then a run to the end from its "
        "state (the last day is new, plus the lookback). Requests of the second run."
    )
    by_bot: dict[str, Counter[tuple[str, str]]] = {}
    full: dict[str, int] = {}
    with Simulator(dataset, SimulatorOptions(rate_limit=None)) as sim:
        for code in codes:
            first = bench.run(
                code, sim, bench.config(sim, dataset, **FAST, end_date=iso(dataset.end - DAY))
            )
            full[code.label] = first.total_requests
            if first.state is None:
                bench.fail(f"{code.label}: no STATE from the first run of the incremental test")
                continue
            second = bench.run(code, sim, bench.config(sim, dataset, **FAST), state=first.state)
            by_bot[code.label] = second.by_bot
    labels = [c.label for c in codes if c.label in by_bot]
    header = ["bot"] + [f"{label}: {e}" for label in labels for e in ENDPOINTS]
    rows = [
        [bot] + [str(by_bot[label][bot, e]) for label in labels for e in ENDPOINTS]
        for bot in dataset.bots
    ]
    rows.append(
        ["**all bots**"]
        + [
            f"{sum(n for (_, ep), n in by_bot[label].items() if ep == e)}"
            for label in labels
            for e in ENDPOINTS
        ]
    )
    rows.append(
        ["full run before it (both endpoints)"]
        + [x for label in labels for x in (f"{full[label]:,}", "")]
    )
    table(header, rows)
    print("Goal: about one request per bot and endpoint when little is new.")
