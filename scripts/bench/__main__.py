"""Benchmark: the tap of a baseline git ref ("before") against the working tree's ("new").

Both run against the simulator in the same run; the figures come out as markdown tables, in
three parts (``--only`` runs one of them):

- request counts (``--only requests``, or ``windows``): a full export's requests against the
  floor (``floor``), the quiet year at the real limit (``real_limit``), a daily incremental
  run (``daily_run``), an outage mid-backfill and the rerun (``outage``);
- wall time and memory (``--only time-and-memory``, or ``concurrency``): wall time at the
  real limit (``real_limit``), both endpoints at once and each one's request rate
  (``both_endpoints``), peak RSS (``memory``);
- conversations that change after their export (``--only changes``), the new code only
  (``changing_conversations``).

Each of those modules describes its figures. The datasets and their floors are in ``plans``,
the versions of the tap in ``versions``, the tap's runs and the checks of what they export in
``runner``, the tables in ``report``.

Usage, from the repository's root: ``make bench`` or ``python -m scripts.bench [--quick]
[--baseline REF|none] [--only requests|time-and-memory|changes|all]``. The baseline (default
1849f3c, windows that grow on no evidence and page alone) is extracted with ``git archive``
into a temporary directory and run from there with the same virtualenv; the simulator always
comes from the working tree.

On each simulator the new code runs first, so that the simulator's cold caches count
against it. Any exported count that differs from the dataset's, or a tap that exits non-zero,
is printed as a PROBLEM and makes the benchmark exit 1 after the tables.

Duration on a 2-core machine: about 25 minutes, most of it the runs at 1 s latency;
``--baseline none`` runs only the new code's share. ``--quick``: a few minutes.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

from tap_deepconverse.simulator import Dataset

from .both_endpoints import both_endpoints_at_once, request_rate_per_endpoint
from .changing_conversations import changed_conversations
from .daily_run import daily_incremental
from .floor import requests_against_floor
from .memory import peak_memory
from .outage import outage_and_rerun
from .plans import Plan
from .real_limit import quiet_year_at_real_limit, wall_time_against_limit
from .report import describe, duration, table, timed
from .runner import Bench
from .versions import Code, extract_baseline, working_tree

# The names ``--only`` first had, after the parts' former titles.
FORMER_PART_NAMES = {"windows": "requests", "concurrency": "time-and-memory"}


def request_counts(
    bench: Bench, codes: list[Code], plan: Plan, args: argparse.Namespace, data: dict[str, Dataset]
) -> None:
    """Requests of full exports against the floor, of a daily run, and after an outage."""
    new_quiet = requests_against_floor(bench, codes, plan, data)
    if args.quick or new_quiet is None:
        print("\nQuiet year at the real limit: skipped (--quick or no new code).")
    else:
        quiet_year_at_real_limit(
            bench, new_quiet, plan.quiet_year, data["quiet"], args.real_limit_minutes
        )
    daily_incremental(bench, codes, plan.mixed, data["mixed"])
    outage_and_rerun(bench, codes, plan.outage, data["outage"])


def time_and_memory(bench: Bench, codes: list[Code], plan: Plan, data: dict[str, Dataset]) -> None:
    """Wall time at the API's rate limit, each endpoint's request rate, and peak RSS."""
    wall_time_against_limit(bench, codes, plan, data)
    both_endpoints_at_once(
        bench, codes, plan.throughput, data["throughput"], plan.throughput_latency
    )
    request_rate_per_endpoint(bench, codes, plan.rates, data["rates"], plan.throughput_latency)
    peak_memory(bench, codes, plan, data)


def machine() -> str:
    model = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores, {model}, Python {platform.python_version()}"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.bench", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument(
        "--baseline",
        default="1849f3c",
        metavar="REF",
        help="git ref of the 'before' tap; 'none' runs the working tree only",
    )
    parser.add_argument(
        "--only",
        choices=("requests", "time-and-memory", "changes", "all", *FORMER_PART_NAMES),
        default="all",
        help="one part: requests (or windows), time-and-memory (or concurrency), changes",
    )
    parser.add_argument("--quick", action="store_true", help="small versions of every scenario")
    parser.add_argument(
        "--real-limit-minutes",
        type=float,
        default=10.0,
        help="skip the quiet year at the real limit if the counts imply longer than this",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    only = FORMER_PART_NAMES.get(args.only, args.only)
    started = time.monotonic()
    plan = Plan.quick() if args.quick else Plan.full()
    workdir = Path(tempfile.mkdtemp(prefix="tap-deepconverse-bench-"))
    try:
        codes = [working_tree()]
        if args.baseline.lower() != "none":
            codes.insert(0, extract_baseline(args.baseline, workdir / "baseline"))
        print("# tap-deepconverse benchmark\n")
        print(f"- Machine: {machine()}")
        for code in codes:
            where = code.package_dir(workdir)
            if not where.is_relative_to(code.root):
                raise SystemExit(f"{code.label}: the tap would be imported from {where}")
            print(f"- {code.label}: {code.ref}, tap imported from {where}")
        print(f"- {'quick' if args.quick else 'full'} run, parts: {args.only}", flush=True)

        parts: list[tuple[str, float]] = []
        with timed(parts, "Datasets"):
            shapes = {
                "busy": plan.busy,
                "quiet": plan.quiet_year,
                "mixed": plan.mixed,
                "throughput": plan.throughput,
                "rates": plan.rates,
                "memory": plan.memory,
                "memory_twice": plan.memory_twice,
                "outage": plan.outage,
                "changing": plan.changing,
                "changing_busy": plan.changing_busy,
            }
            wanted = {
                "requests": ("busy", "quiet", "mixed", "outage"),
                "time-and-memory": (
                    "busy",
                    "mixed",
                    "throughput",
                    "rates",
                    "memory",
                    "memory_twice",
                ),
                "changes": ("changing", "changing_busy"),
                "all": tuple(shapes),
            }[only]
            data = {key: shapes[key].build() for key in wanted}
            for key in wanted:
                print(f"- {describe(shapes[key], data[key])}, {len(data[key]):,} records")
        bench = Bench(workdir)
        if only in ("requests", "all"):
            with timed(parts, "Request counts: full exports, a daily run, an outage"):
                request_counts(bench, codes, plan, args, data)
        if only in ("time-and-memory", "all"):
            with timed(parts, "Wall time and request rates at the rate limit, and memory"):
                time_and_memory(bench, codes, plan, data)
        if only in ("changes", "all"):
            with timed(parts, "Conversations that change after their export"):
                changed_conversations(bench, codes[-1], plan, data)

        parts.append(("all", time.monotonic() - started))
        table(["part", "time"], [[name, duration(seconds)] for name, seconds in parts])
        if bench.problems:
            print(f"{len(bench.problems)} problem(s):", file=sys.stderr)
            for problem in bench.problems:
                print(f"- {problem}", file=sys.stderr)
            raise SystemExit(1)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
