"""Benchmark of the tap against the simulator: throughput, CPU per record, memory, increments.

Prints, from one run:
- requests per second per endpoint, and the ratio to the API's 3, with the simulator
  answering each request after ``--latency`` seconds under its 3 requests/s limit;
- records per CPU-second of the tap and of a bare ``requests`` + ``json`` loop fetching the
  same pages from the same simulator, and their ratio;
- the tap's peak RSS for the full export and for one half as long (flat memory: equal);
- the requests of a daily incremental run against those of the full export;
- wall times.

Usage: ``make bench`` or ``python scripts/bench.py`` (about 3 minutes on 2 cores); ``--quick``
for a small smoke run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tap_deepconverse.simulator import (
    DEFAULT_API_KEY,
    Dataset,
    Simulator,
    SimulatorOptions,
    generate_dataset,
)
from tap_deepconverse.timestamps import format_timestamp, from_unix_seconds
from tap_deepconverse.windows import plan_windows

DAY = 86_400
ENDPOINTS = ("conversations", "messages")
PATHS = {e: f"/conversations/export/v1/{e}" for e in ENDPOINTS}
MESSAGES_PER_CONVERSATION = 5  # the generator's mean for (2, 8)


@dataclass
class ProcessRun:
    seconds: float
    cpu_seconds: float
    peak_rss_mb: float
    records: int
    stdout_tail: list[str]
    exit_code: int


def peak_rss_mb(pid: int) -> float:
    """The process's RSS high-water mark. Read from /proc (VmHWM), not from wait4: the forked
    child's RSS before exec is this big benchmark process's, which wait4 would report."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run_process(command: list[str], *, count_records: bool) -> ProcessRun:
    """Run a command, counting RECORD lines on its stdout; CPU from wait4, peak RSS from /proc."""
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert process.stdout is not None
    peak = [0.0]
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], peak_rss_mb(process.pid))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    records = 0
    tail: list[str] = []
    for line in process.stdout:
        if count_records and line.startswith(b'{"type":"RECORD"'):
            records += 1
        elif not line.startswith(b'{"type":"RECORD"'):
            tail = [*tail[-20:], line.decode()]
    # The high-water mark only grows, and the process is still there (a zombie keeps no
    # /proc status, so read it before reaping).
    peak[0] = max(peak[0], peak_rss_mb(process.pid))
    done.set()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return ProcessRun(
        seconds=time.monotonic() - started,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        peak_rss_mb=peak[0],
        records=records,
        stdout_tail=tail,
        exit_code=process.returncode,
    )


def tap_config(sim: Simulator, dataset: Dataset, **overrides: Any) -> dict[str, Any]:
    config = {
        "api_key": DEFAULT_API_KEY,
        "api_url": sim.url,
        "bot_names": list(dataset.bots),
        "start_date": format_timestamp(from_unix_seconds(dataset.start)),
        "end_date": format_timestamp(from_unix_seconds(dataset.end)),
        "window_hours": 24,
    }
    config.update(overrides)
    return config


def run_tap(
    workdir: Path, config: dict[str, Any], state: dict[str, Any] | None = None
) -> ProcessRun:
    config_path = workdir / "config.json"
    config_path.write_text(json.dumps(config))
    command = [sys.executable, "-m", "tap_deepconverse", "--config", str(config_path)]
    if state is not None:
        state_path = workdir / "state.json"
        state_path.write_text(json.dumps(state))
        command += ["--state", str(state_path)]
    run = run_process(command, count_records=True)
    if run.exit_code != 0:
        raise SystemExit(f"tap failed ({run.exit_code}): {''.join(run.stdout_tail)}")
    return run


def last_state(run: ProcessRun) -> dict[str, Any]:
    states = [json.loads(line) for line in run.stdout_tail if line.startswith('{"type":"STATE"')]
    return dict(states[-1]["value"])


BARE_LOOP = """
import json, sys, requests
url, key, bots, windows = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
session = requests.Session()
session.headers["x-api-key"] = key
records = 0
for path in ("/conversations/export/v1/conversations", "/conversations/export/v1/messages"):
    for bot in bots:
        for start, end in windows:
            params = {"bot_name": bot, "start_time": start, "end_time": end, "per_page": 1000}
            while True:
                page = json.loads(session.get(url + path, params=params, timeout=60).content)
                records += len(page["data"])
                if not page.get("cursor"):
                    break
                params["cursor"] = page["cursor"]
print(json.dumps({"type": "BARE", "records": records}))
"""


def bare_loop(sim: Simulator, dataset: Dataset) -> ProcessRun:
    windows = [w.request_bounds for w in plan_windows(dataset.start, dataset.end, DAY)]
    command = [
        sys.executable,
        "-c",
        BARE_LOOP,
        sim.url,
        DEFAULT_API_KEY,
        json.dumps(list(dataset.bots)),
        json.dumps(windows),
    ]
    run = run_process(command, count_records=False)
    run.records = json.loads(run.stdout_tail[-1])["records"]
    return run


def make_dataset(records: int, days: int) -> Dataset:
    per_day = max(1, records // (days * (1 + MESSAGES_PER_CONVERSATION)))
    return generate_dataset(seed=1, days=days, conversations_per_day=per_day)


def machine() -> str:
    model = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores, {model}, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=240_000, help="records in the export")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--latency", type=float, default=1.0, help="seconds per answer")
    parser.add_argument("--parallel", type=int, default=None, help="max_parallel_windows")
    parser.add_argument("--quick", action="store_true", help="small and fast, for a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.records, args.days, args.latency = 12_000, 6, 0.2

    print(f"Machine: {machine()}")
    full = make_dataset(args.records, args.days)
    print(f"Dataset: {len(full)} records over {args.days} days, {len(full.bots)} bots")
    workdir = Path(tempfile.mkdtemp(prefix="tap-deepconverse-bench-"))
    parallel = {} if args.parallel is None else {"max_parallel_windows": args.parallel}

    # 1. Throughput under the real limit, with slow answers.
    with Simulator(full, SimulatorOptions(latency=args.latency, rate_limit=3)) as sim:
        throughput = run_tap(workdir, tap_config(sim, full, **parallel))
        stats = sim.stats()
    rates = stats["mean_per_second"]

    # 2. CPU and memory: no latency, no limit, so the tap's own cost is what is measured.
    fast_options = SimulatorOptions(rate_limit=None)
    unlimited = {"requests_per_second": 1000, **parallel}
    with Simulator(full, fast_options) as sim:
        bare = bare_loop(sim, full)
        tap_full = run_tap(workdir, tap_config(sim, full, **unlimited))
        full_requests = sum(sim.stats()["requests"].values())

        # 4. A daily incremental run after a run that stopped one day earlier.
        sim.reset_log()
        day_before = tap_config(sim, full, **unlimited, end_date=_iso(full.end - DAY))
        first = run_tap(workdir, day_before)
        sim.reset_log()
        run_tap(workdir, tap_config(sim, full, **unlimited), last_state(first))
        incremental_requests = sum(sim.stats()["requests"].values())

    # Same density over half the days: flat memory means the same peak for a shorter export.
    half = make_dataset(args.records // 2, args.days // 2)
    with Simulator(half, fast_options) as sim:
        tap_half = run_tap(workdir, tap_config(sim, half, **unlimited))

    tap_rate = tap_full.records / tap_full.cpu_seconds
    bare_rate = bare.records / bare.cpu_seconds
    print()
    print("| figure | value | goal |")
    print("|---|---|---|")
    for endpoint in ENDPOINTS:
        rate = rates[endpoint]
        print(
            f"| {endpoint}: requests/s at {args.latency:g} s latency | {rate:.2f} "
            f"({rate / 3:.2f} of 3) | >= 0.9 of 3 |"
        )
    print(f"| HTTP 429 provoked | {stats['statuses'].get('429', 0)} | 0 |")
    print(
        f"| throughput export | {throughput.records} records, {throughput.seconds:.0f} s wall "
        f"({sum(stats['requests'].values())} requests) | |"
    )
    print(f"| tap records per CPU-second | {tap_rate:,.0f} | |")
    print(f"| bare requests+json loop records per CPU-second | {bare_rate:,.0f} | |")
    print(f"| ratio tap / bare loop | {tap_rate / bare_rate:.2f} | >= 0.6 |")
    print(
        f"| tap peak RSS, {tap_full.records} records | {tap_full.peak_rss_mb:.0f} MB | < 100 MB |"
    )
    print(f"| tap peak RSS, {tap_half.records} records | {tap_half.peak_rss_mb:.0f} MB | flat |")
    print(
        f"| full export of {args.days} days, no latency | {tap_full.seconds:.1f} s wall, "
        f"{tap_full.cpu_seconds:.1f} s CPU, {full_requests} requests | |"
    )
    print(
        f"| daily incremental run | {incremental_requests} requests "
        f"({incremental_requests / full_requests:.1%} of the full export) | < 10% |"
    )
    if tap_full.records != len(full):
        raise SystemExit(f"incomplete export: {tap_full.records} of {len(full)} records")


def _iso(seconds: int) -> str:
    return format_timestamp(from_unix_seconds(seconds))


if __name__ == "__main__":
    main()
