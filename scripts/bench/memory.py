"""Memory: peak RSS of the tap process, and its CPU time per record.

An export of 240,000 records in which one message in eight carries a 5 KB text, and one twice
as long (same density), with the tap's default settings (the simulator without rate limit or
latency, the tap at 1000 requests/s).
"""

from __future__ import annotations

from tap_deepconverse.simulator import Dataset, Simulator, SimulatorOptions

from .plans import ENDPOINTS, Plan
from .report import duration, table
from .runner import FAST, Bench
from .versions import Code, in_order, new_first


def peak_memory(bench: Bench, codes: list[Code], plan: Plan, data: dict[str, Dataset]) -> None:
    print("\n### Memory\n")
    print(
        "Simulator without rate limit or latency, tap at 1000 requests/s, otherwise its "
        "default settings. Peak RSS of the tap process (VmHWM). The wall time of the first "
        "run on each simulator (the new code's) includes the simulator encoding every record "
        "once; CPU is the tap process's own."
    )
    rows: list[list[str]] = []
    for key, shape in (("memory", plan.memory), ("memory_twice", plan.memory_twice)):
        dataset = data[key]
        found: dict[str, list[str]] = {}
        with Simulator(dataset, SimulatorOptions(rate_limit=None)) as sim:
            for code in new_first(codes):
                run = bench.run(code, sim, bench.config(sim, dataset, **FAST))
                ok = bench.check_records(run, dataset, shape.title, streams=ENDPOINTS)
                found[code.label] = [
                    shape.title, code.label, f"{run.peak_rss_mb:.0f} MB", ok,
                    duration(run.seconds), f"{run.cpu_seconds:.1f} s",
                    f"{sum(run.records.values()) / max(run.cpu_seconds, 1e-9):,.0f}",
                    str(run.exit_code),
                ]  # fmt: skip
        rows += in_order(codes, found)
    table(
        ["export", "code", "peak RSS", "records / dataset", "wall", "CPU",
         "records per CPU-second", "exit"],
        rows,
    )  # fmt: skip
    print("Goal for new: peak RSS < 100 MB, and flat (the same for the export twice as long).")
