"""An outage mid-backfill, and the rerun that resumes from the broken run's last STATE.

The simulator without rate limit, the tap at 1000 requests/s and page_size 100. A full run
counts the requests an export takes; then the API fails for good after half of them, and a
rerun from the last STATE finishes the export. The figure: the records the broken run wrote
that the rerun writes again; records missing from both runs together fail the benchmark.
The re-read of conversations that may have changed since their export
(``conversation_reread_days``) is off: it is the cost of every incremental run, measured
apart (``changing_conversations``), not of the outage. Code without the setting ignores it.
"""

from __future__ import annotations

from tap_deepconverse.simulator import Dataset, Simulator, SimulatorOptions

from .plans import ENDPOINTS, LEADS, Shape
from .report import table
from .runner import FAST, Bench
from .versions import Code, in_order, new_first


def outage_and_rerun(bench: Bench, codes: list[Code], shape: Shape, dataset: Dataset) -> None:
    print(f"\n### An outage mid-backfill, {shape.title}\n")
    print(
        "page_size 100. A full run counts the requests an export takes; then the API fails for "
        "good after half of them, and a rerun from the last STATE finishes the export "
        "(conversation_reread_days 0: the re-read of changed conversations is measured apart). "
        "Records the broken run wrote that the rerun writes again:"
    )
    rows: list[list[str]] = []
    for start, lead in LEADS.items():
        found: dict[str, list[str]] = {}
        with Simulator(dataset, SimulatorOptions(rate_limit=None)) as sim:
            for code in new_first(codes):
                config = bench.config(
                    sim,
                    dataset,
                    lead_days=lead,
                    page_size=100,
                    max_retries=1,
                    conversation_reread_days=0,
                )
                whole = bench.run(code, sim, dict(config, **FAST))
                sim.options.fail_after = whole.total_requests // 2
                broken = bench.run(code, sim, dict(config, **FAST), expect_failure=True)
                sim.options.fail_after = None
                rerun = bench.run(code, sim, dict(config, **FAST), state=broken.state)
                complete = all(
                    broken.record_ids[s] | rerun.record_ids[s] == dataset.ids(s) for s in ENDPOINTS
                )
                if not complete:
                    bench.fail(f"{code.label}, {shape.title}: records missing after the rerun")
                ok = "complete" if complete else "**records missing**"
                written = sum(broken.records.values())
                again = sum(len(rerun.record_ids[s] & broken.record_ids[s]) for s in ENDPOINTS)
                found[code.label] = [
                    start, code.label, f"{written:,}", f"{again:,}",
                    f"{again / max(written, 1):.0%}", str(rerun.exit_code), ok,
                ]  # fmt: skip
        rows += in_order(codes, found)
    table(
        ["start_date", "code", "written before the outage", "written again by the rerun",
         "share", "rerun exit", "both runs"],
        rows,
    )  # fmt: skip
    print("Goal for new: about one window (a few pages) per bot and endpoint written again.")
