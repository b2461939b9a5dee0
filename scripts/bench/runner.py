"""Running the tap against the simulator, and checking what it exported.

``Bench`` runs one tap process to its end against a simulator and returns a ``TapRun``: exit
code, wall and CPU time, peak RSS (VmHWM from /proc, watched while it runs), the RECORD lines
per stream and their ids, its last STATE, and what the simulator saw of it (requests per
endpoint and per bot, when each arrived, each endpoint's mean rate, HTTP statuses). It keeps
every problem seen: an exported count that differs from the dataset's, or a tap that exits
non-zero, is printed as a PROBLEM and makes the benchmark exit 1 after the tables.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tap_deepconverse.simulator import DEFAULT_API_KEY, Dataset, Simulator

from .plans import DAY, ENDPOINTS
from .versions import Code

FAST = {"requests_per_second": 1000}  # the tap's limiter out of the way
RUN_TIMEOUT = 3600.0


@dataclass
class TapRun:
    """One tap process and what the simulator saw of it."""

    code: Code
    exit_code: int
    seconds: float
    cpu_seconds: float
    peak_rss_mb: float
    records: Counter[str]
    state: dict[str, Any] | None
    stderr_tail: str
    requests: dict[str, int] = field(default_factory=dict)
    per_second: dict[str, float] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    pages_in_a_row: dict[str, dict[str, int]] = field(default_factory=dict)
    by_bot: Counter[tuple[str, str]] = field(default_factory=Counter)
    arrivals: dict[str, list[float]] = field(default_factory=dict)  # per endpoint, in order
    record_ids: dict[str, set[str]] = field(default_factory=dict)

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    @property
    def throttled(self) -> int:
        return self.statuses.get("429", 0)


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


RECORD = b'{"type":"RECORD"'
ID = b'"_id":"'
STATE = b'{"type":"STATE"'
STREAM = b'"stream":"'


def record_stream(line: bytes) -> str:
    start = line.find(STREAM, 0, 200) + len(STREAM)
    return line[start : line.find(b'"', start)].decode()


class Bench:
    """Runs taps against simulators, and keeps every problem seen."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.problems: list[str] = []
        self.runs = 0
        self.catalogs: dict[str, Path] = {}

    def fail(self, problem: str) -> None:
        self.problems.append(problem)
        print(f"\n**PROBLEM**: {problem}\n", flush=True)

    def config(
        self, sim: Simulator, dataset: Dataset, *, lead_days: int = 0, **overrides: Any
    ) -> dict[str, Any]:
        config: dict[str, Any] = {
            "api_key": DEFAULT_API_KEY,
            "api_url": sim.url,
            "bot_names": list(dataset.bots),
            "start_date": iso(dataset.start - lead_days * DAY),
            "end_date": iso(dataset.end),
        }
        config.update(overrides)
        return config

    def run(
        self,
        code: Code,
        sim: Simulator,
        config: dict[str, Any],
        *,
        state: dict[str, Any] | None = None,
        catalog: Path | None = None,
        expect_failure: bool = False,
    ) -> TapRun:
        """Run one tap process to its end; the simulator's log covers this run only."""
        self.runs += 1
        config_path = self.workdir / f"config-{self.runs}.json"
        config_path.write_text(json.dumps(config))
        args = ["--config", str(config_path)]
        if state is not None:
            state_path = self.workdir / f"state-{self.runs}.json"
            state_path.write_text(json.dumps(state))
            args += ["--state", str(state_path)]
        if catalog is not None:
            args += ["--catalog", str(catalog)]
        sim.reset_log()
        run = self._process(code, code.command(*args))
        stats = sim.stats()
        run.requests = dict(stats["requests"])
        run.per_second = dict(stats["mean_per_second"])
        run.statuses = dict(stats["statuses"])
        run.pages_in_a_row = dict(stats["pages_in_a_row"])
        run.arrivals = {
            endpoint: [entry.arrived for entry in sim.requests if entry.endpoint == endpoint]
            for endpoint in ENDPOINTS
        }
        run.by_bot = Counter(
            (entry.params.get("bot_name", ""), entry.endpoint)
            for entry in sim.requests
            if entry.endpoint in ENDPOINTS
        )
        if (run.exit_code != 0) != expect_failure:
            self.fail(
                f"{code.label} tap exited {run.exit_code}; end of its log:\n{run.stderr_tail}"
            )
        return run

    def _process(self, code: Code, command: list[str]) -> TapRun:
        """Run a command, counting RECORD lines per stream; CPU from wait4, peak RSS from
        /proc, the last STATE kept."""
        stderr_path = self.workdir / f"stderr-{self.runs}.log"
        started = time.monotonic()
        with stderr_path.open("wb") as stderr:
            process = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=stderr, env=code.env(), cwd=self.workdir
            )
        assert process.stdout is not None
        peak = [0.0]
        done = threading.Event()

        def watch() -> None:
            deadline = started + RUN_TIMEOUT
            while not done.wait(0.05):
                peak[0] = max(peak[0], peak_rss_mb(process.pid))
                if time.monotonic() > deadline:
                    process.kill()
                    return

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        records: Counter[str] = Counter()
        ids: dict[str, set[str]] = {stream: set() for stream in ENDPOINTS}
        last_state = b""
        for line in process.stdout:
            if line.startswith(RECORD):
                stream = record_stream(line)
                records[stream] += 1
                at = line.find(ID) + len(ID)
                ids.setdefault(stream, set()).add(line[at : line.find(b'"', at)].decode())
            elif line.startswith(STATE):
                last_state = line
        # The high-water mark only grows, and the process is still there (a zombie keeps no
        # /proc status, so read it before reaping).
        peak[0] = max(peak[0], peak_rss_mb(process.pid))
        done.set()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        tail = stderr_path.read_text(errors="replace").splitlines()[-12:]
        return TapRun(
            code=code,
            exit_code=process.returncode,
            seconds=time.monotonic() - started,
            cpu_seconds=usage.ru_utime + usage.ru_stime,
            peak_rss_mb=peak[0],
            records=records,
            record_ids=ids,
            state=json.loads(last_state)["value"] if last_state else None,
            stderr_tail="\n".join(tail),
        )

    def check_records(
        self, run: TapRun, dataset: Dataset, what: str, *, streams: Sequence[str]
    ) -> str:
        """`exported / expected`, and a problem when they differ."""
        expected = sum(dataset.count(s) for s in streams)
        exported = sum(run.records.values())
        unexpected = {s: n for s, n in run.records.items() if s not in streams}
        per_stream_ok = all(run.records[s] == dataset.count(s) for s in streams)
        if unexpected or not per_stream_ok:
            got = ", ".join(f"{s} {n}" for s, n in sorted(run.records.items()))
            want = ", ".join(f"{s} {dataset.count(s)}" for s in streams)
            self.fail(f"{run.code.label}, {what}: exported {got or 'nothing'}; dataset: {want}")
            return f"**{exported:,} / {expected:,}**"
        return f"{exported:,} / {expected:,}"

    def messages_only_catalog(self, code: Code, sim: Simulator, dataset: Dataset) -> Path:
        """The code's own discovered catalog, with only the messages stream selected."""
        found = self.catalogs.get(code.label)
        if found is not None:
            return found
        config_path = self.workdir / f"discover-{code.label}.json"
        config_path.write_text(json.dumps(self.config(sim, dataset)))
        done = subprocess.run(
            code.command("--config", str(config_path), "--discover"),
            env=code.env(),
            cwd=self.workdir,
            capture_output=True,
            check=True,
        )
        catalog = json.loads(done.stdout)
        for stream in catalog["streams"]:
            for entry in stream["metadata"]:
                if entry["breadcrumb"] == []:
                    entry["metadata"]["selected"] = stream["tap_stream_id"] == "messages"
        path = self.workdir / f"catalog-messages-{code.label}.json"
        path.write_text(json.dumps(catalog))
        self.catalogs[code.label] = path
        return path


def iso(seconds: int) -> str:
    """A Unix time as the tap's start_date and end_date settings take it."""
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
