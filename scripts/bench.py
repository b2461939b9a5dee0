"""Benchmark: the tap of a baseline git ref ("before") against the working tree's ("new").

Both run against the simulator in the same run; the figures come out as markdown tables.

Windows (the simulator's rate limit off, the tap at 1000 requests/s, so counts come fast):

- three shapes: one busy bot over 60 days; 20 quiet bots over a year (100 conversations
  each); one busy bot with 8 quiet ones over 60 days; each from its first record and from a
  year before it (``LEADS``: users set start_date early). For each, before and new: requests
  made, the floor (sum over bots and endpoints of max(ceil(records / page_size),
  ceil(range / max_window_days))), requests/floor, exit code, records exported against the
  dataset's count (a difference fails the benchmark), wall time, and the time those requests
  take at 3 requests/s (endpoints overlapped: the busier endpoint's requests / 3; one at a
  time: all requests / 3);
- the quiet year for the new code only at the real limit (3 requests/s, 0.3 s latency):
  its real wall time. Skipped with ``--quick``, and when the counts imply it would take
  longer than ``--real-limit-minutes``: the before code is never run there (81 minutes);
- a daily incremental run after a full one: requests per bot and endpoint;
- an outage mid-backfill (the API fails for good after half an export's requests): the
  records the broken run wrote that the rerun from its last STATE writes again.

Concurrency and memory:

- at 3 requests/s and 0.3 s latency, one busy bot and the busy bot with 8 quiet ones, from
  the first record and from a year before: wall time against "the limit" (the busier
  endpoint's floor / 3 s), and requests per endpoint;
- at 1 s latency, one bot with 3,000 conversations and about 15,000 messages, page_size 100,
  from the first record and from a year before: the full run against its ceiling, against a
  run of the messages stream alone (a catalog that selects only it), and each endpoint's
  requests per second in the full run;
- at 1 s latency, an export of 240,000 records of the usual size with the tap's default
  settings: each endpoint's requests per second over a run long enough for its start and
  end to weigh little;
- peak RSS of an export of 240,000 records in which one message in eight carries a 5 KB
  text, and of one twice as long (same density), with the tap's default settings.

Conversations that change after their export (the new code only):

- a daily run after a full one, on data whose conversations last up to three days, with the
  simulator's archive moving on between the runs: conversation requests per bot under each
  reading of the conversations window, against the same run without the re-read
  (``conversation_reread_days`` 0); after a full backfill, and after only 7 days of one.

Usage: ``make bench`` or ``python scripts/bench.py [--quick] [--baseline REF|none]
[--only windows|concurrency|changes|all]``. The baseline (default 1849f3c, windows that grow
on no evidence and page alone) is extracted with ``git
archive`` into a temporary directory and run from there with the same virtualenv; the
simulator always comes from the working tree.

On each simulator the new code runs first, so that the simulator's cold caches count
against it. Any exported count that differs from the dataset's, or a tap that exits non-zero,
is printed as a PROBLEM and makes the benchmark exit 1 after the tables.

Duration on a 2-core machine: about 25 minutes, most of it the runs at 1 s latency;
``--baseline none`` runs only the new code's share. ``--quick``: a few minutes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tap_deepconverse.conversation_changes import (
    duration_text,
    filter_reading,
    reread_seconds,
    seen_in,
)
from tap_deepconverse.simulator import (
    DEFAULT_API_KEY,
    Dataset,
    Simulator,
    SimulatorOptions,
    generate_dataset,
)
from tap_deepconverse.timestamps import parse_timestamp, to_unix_seconds

REPO = Path(__file__).resolve().parents[1]
DAY = 86_400
ENDPOINTS = ("conversations", "messages")
API_RATE = 3.0  # requests per second per endpoint, the API's documented limit
PAGE_SIZE = 1000  # the tap's default page_size
MAX_WINDOW_DAYS = 31  # the tap's default max_window_days
REAL_LATENCY = 0.3
# Users set start_date well before their bot's first record: every scenario that a start
# before the data changes runs from the first record and from a year before it.
LEADS = {"at the first record": 0, "a year before": 365}
FAST = {"requests_per_second": 1000}  # the tap's limiter out of the way
RUN_TIMEOUT = 3600.0


# -- code under test -----------------------------------------------------------------------


@dataclass(frozen=True)
class Code:
    """One version of the tap: a directory holding its ``tap_deepconverse`` package."""

    label: str  # "before" or "new"
    root: Path
    ref: str

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TAP_DEEPCONVERSE_")}
        env["PYTHONPATH"] = str(self.root)
        return env

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "tap_deepconverse", *args]

    def package_dir(self, cwd: Path) -> Path:
        """Where the tap's package is imported from when run as the benchmark runs it."""
        probe = "import tap_deepconverse; print(tap_deepconverse.__file__)"
        done = subprocess.run(
            [sys.executable, "-c", probe],
            env=self.env(),
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        )
        return Path(done.stdout.strip()).parent


def git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def extract_baseline(ref: str, into: Path) -> Code:
    """``git archive <ref> | tar -x -C <into>``."""
    try:
        commit = git("rev-parse", "--verify", "--short", f"{ref}^{{commit}}")
    except subprocess.CalledProcessError:
        raise SystemExit(f"--baseline {ref}: not a commit of this repository") from None
    into.mkdir(parents=True)
    archive = subprocess.Popen(["git", "archive", commit], cwd=REPO, stdout=subprocess.PIPE)
    extract = subprocess.run(["tar", "-x", "-C", str(into)], stdin=archive.stdout, check=False)
    if archive.stdout is not None:
        archive.stdout.close()
    if archive.wait() != 0 or extract.returncode != 0:
        raise SystemExit(f"cannot extract {ref} with git archive")
    return Code("before", into, commit)


def working_tree() -> Code:
    return Code("new", REPO, git("describe", "--always", "--dirty"))


# -- datasets ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """A dataset: conversations per bot (about 5 messages each) spread over some days."""

    title: str
    bots: tuple[str, ...]
    days: int
    conversations: tuple[int, ...]
    long_text_rate: float = 0.0
    long_conversation_rate: float = 0.0  # conversations lasting 1 hour to 3 days

    def build(self) -> Dataset:
        return generate_dataset(
            seed=1,
            bots=self.bots,
            days=self.days,
            conversations_per_bot=self.conversations,
            long_text_rate=self.long_text_rate,
            long_conversation_rate=self.long_conversation_rate,
        )


def quiet(count: int) -> tuple[str, ...]:
    return tuple(f"quiet-{i:02d}" for i in range(1, count + 1))


@dataclass(frozen=True)
class Plan:
    """Every dataset of a run, full size or ``--quick``."""

    busy: Shape
    quiet_year: Shape
    mixed: Shape
    throughput: Shape
    throughput_latency: float
    rates: Shape
    memory: Shape
    memory_twice: Shape
    outage: Shape
    changing: Shape
    changing_busy: Shape

    @staticmethod
    def full() -> Plan:
        return Plan(
            busy=Shape("one busy bot, 60 days", ("busy",), 60, (6100,)),
            quiet_year=Shape("20 quiet bots, 365 days", quiet(20), 365, (100,) * 20),
            mixed=Shape(
                "busy bot + 8 quiet ones, 60 days", ("busy", *quiet(8)), 60, (6100,) + (100,) * 8
            ),
            throughput=Shape("one bot, 30 days, page_size 100", ("busy",), 30, (3000,)),
            throughput_latency=1.0,
            rates=Shape("2 bots, 30 days", ("r3-218210", "support-bot"), 30, (30_000, 10_000)),
            memory=Shape(
                "2 bots, 30 days, 1 message in 8 with 5 KB",
                ("r3-218210", "support-bot"),
                30,
                (30_000, 10_000),
                long_text_rate=0.125,
            ),
            memory_twice=Shape(
                "2 bots, 60 days, 1 message in 8 with 5 KB",
                ("r3-218210", "support-bot"),
                60,
                (60_000, 20_000),
                long_text_rate=0.125,
            ),
            outage=Shape("busy bot + quiet one, 30 days", ("busy", "quiet"), 30, (900, 60)),
            changing=Shape(
                "2 bots, 20 days, 660 conversations, 30% lasting 1 hour to 3 days",
                ("r3-218210", "support-bot"),
                20,
                (495, 165),
                long_conversation_rate=0.3,
            ),
            changing_busy=Shape(
                "one busy bot, 20 days, 30,000 conversations, 30% lasting 1 hour to 3 days",
                ("busy",),
                20,
                (30_000,),
                long_conversation_rate=0.3,
            ),
        )

    @staticmethod
    def quick() -> Plan:
        return Plan(
            busy=Shape("one busy bot, 6 days", ("busy",), 6, (600,)),
            quiet_year=Shape("5 quiet bots, 120 days", quiet(5), 120, (30,) * 5),
            mixed=Shape("busy bot + 3 quiet ones, 6 days", ("busy", *quiet(3)), 6, (600, 5, 5, 5)),
            throughput=Shape("one bot, 3 days, page_size 100", ("busy",), 3, (300,)),
            throughput_latency=0.3,
            rates=Shape("2 bots, 3 days", ("r3-218210", "support-bot"), 3, (3000, 1000)),
            memory=Shape(
                "2 bots, 3 days, 1 message in 8 with 5 KB",
                ("r3-218210", "support-bot"),
                3,
                (3000, 1000),
                long_text_rate=0.125,
            ),
            memory_twice=Shape(
                "2 bots, 6 days, 1 message in 8 with 5 KB",
                ("r3-218210", "support-bot"),
                6,
                (6000, 2000),
                long_text_rate=0.125,
            ),
            outage=Shape("busy bot + quiet one, 10 days", ("busy", "quiet"), 10, (300, 20)),
            changing=Shape(
                "2 bots, 16 days, 300 conversations, 30% lasting 1 hour to 3 days",
                ("r3-218210", "support-bot"),
                16,
                (225, 75),
                long_conversation_rate=0.3,
            ),
            changing_busy=Shape(
                "one busy bot, 16 days, 1,600 conversations, 30% lasting 1 hour to 3 days",
                ("busy",),
                16,
                (1600,),
                long_conversation_rate=0.3,
            ),
        )


def floors(
    dataset: Dataset,
    *,
    per_page: int = PAGE_SIZE,
    max_window_days: int = MAX_WINDOW_DAYS,
    lead_days: int = 0,
) -> dict[str, int]:
    """Fewest requests of a full export, per endpoint: each bot needs a page per per_page
    records and a window per max_window_days of the range, whichever is more."""
    span = dataset.end - dataset.start + lead_days * DAY
    windows = math.ceil(span / (max_window_days * DAY))
    return {
        endpoint: sum(
            max(math.ceil(dataset.count(endpoint, bot) / per_page), windows) for bot in dataset.bots
        )
        for endpoint in ENDPOINTS
    }


def limit_seconds(dataset: Dataset, *, per_page: int = PAGE_SIZE, lead_days: int = 0) -> float:
    """The busier endpoint's floor at the API's rate: no export can be faster."""
    return max(floors(dataset, per_page=per_page, lead_days=lead_days).values()) / API_RATE


# -- running the tap -----------------------------------------------------------------------


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
    by_bot: Counter[tuple[str, str]] = field(default_factory=Counter)
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
    """Runs taps against simulators, keeps every problem seen, and the time spent per part."""

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


def new_first(codes: Sequence[Code]) -> list[Code]:
    """The order of runs on one simulator: the new code first, so that the simulator's cold
    caches (a record's JSON is made when it is first served) count against it, not for it."""
    return sorted(codes, key=lambda code: code.label != "new")


def in_order(codes: Sequence[Code], rows: dict[str, list[str]]) -> list[list[str]]:
    return [rows[code.label] for code in codes if code.label in rows]


# -- formatting ----------------------------------------------------------------------------


def iso(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


def rate_text(per_second: float) -> str:
    """Requests per second, and their share of the API's limit."""
    return f"{per_second:.2f} ({per_second / API_RATE:.2f} of 3)"


def per_endpoint(values: dict[str, int]) -> str:
    return " + ".join(f"{values.get(e, 0):,}" for e in ENDPOINTS)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    print()
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(flush=True)


def describe(shape: Shape, dataset: Dataset) -> str:
    return (
        f"{shape.title}: {len(dataset.bots)} bot(s), "
        f"{dataset.count('conversations'):,} conversations, "
        f"{dataset.count('messages'):,} messages"
    )


@contextmanager
def timed(parts: list[tuple[str, float]], name: str) -> Iterator[None]:
    started = time.monotonic()
    print(f"\n## {name}\n", flush=True)
    try:
        yield
    finally:
        parts.append((name, time.monotonic() - started))


# -- the windows issue ---------------------------------------------------------------------


def windows_issue(
    bench: Bench, codes: list[Code], plan: Plan, args: argparse.Namespace, data: dict[str, Dataset]
) -> None:
    print(
        "Simulator without rate limit or latency, tap at 1000 requests/s: request counts. "
        f"Floor: per bot and endpoint, max(ceil(records / {PAGE_SIZE}), "
        f"ceil(days / {MAX_WINDOW_DAYS})), summed. Requests are conversations + messages."
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
                ])  # fmt: skip
    table(
        [
            "shape", "start_date", "code", "requests", "floor", "requests/floor", "exit",
            "records / dataset", "wall", "at 3 req/s, endpoints overlapped",
            "at 3 req/s, one at a time",
        ],
        rows,
    )  # fmt: skip
    print(
        "Goals for new: requests/floor <= 1.3; the quiet year under 3 min at 3 req/s "
        "(the before code streams one endpoint at a time: its time is the last column)."
    )

    if args.quick or new_quiet is None:
        print("\nQuiet year at the real limit: skipped (--quick or no new code).")
    else:
        real_limit_quiet_year(bench, new_quiet, plan.quiet_year, data["quiet"], args)

    incremental(bench, codes, plan.mixed, data["mixed"])
    outage(bench, codes, plan.outage, data["outage"])


def real_limit_quiet_year(
    bench: Bench, counted: TapRun, shape: Shape, dataset: Dataset, args: argparse.Namespace
) -> None:
    print(f"\n### {shape.title}, new code at the real limit\n")
    estimate = counted.total_requests / API_RATE
    if estimate > args.real_limit_minutes * 60:
        print(
            f"Skipped: the new code made {counted.total_requests:,} requests without a limit, "
            f"up to {duration(estimate)} at 3 requests/s, more than --real-limit-minutes "
            f"{args.real_limit_minutes:g}."
        )
        return
    options = SimulatorOptions(rate_limit=API_RATE, latency=REAL_LATENCY)
    with Simulator(dataset, options) as sim:
        run = bench.run(counted.code, sim, bench.config(sim, dataset))
    limit = limit_seconds(dataset)
    table(
        ["shape", "code", "wall", "the limit", "wall/limit", "requests", "HTTP 429", "exit",
         "records / dataset"],
        [[
            shape.title, "new", duration(run.seconds), duration(limit),
            f"{run.seconds / limit:.2f}", per_endpoint(run.requests), str(run.throttled),
            str(run.exit_code), bench.check_records(run, dataset, f"{shape.title}, real limit",
                                                    streams=ENDPOINTS),
        ]],
    )  # fmt: skip
    print(
        f"Simulator at 3 requests/s per endpoint and {REAL_LATENCY:g} s latency, the tap's "
        "default settings. Goal: under 3 min."
    )


def outage(bench: Bench, codes: list[Code], shape: Shape, dataset: Dataset) -> None:
    print(f"\n### An outage mid-backfill, {shape.title}\n")
    print(
        "page_size 100. A full run counts the requests an export takes; then the API fails for "
        "good after half of them, and a rerun from the last STATE finishes the export. "
        "Records the broken run wrote that the rerun writes again:"
    )
    rows: list[list[str]] = []
    for start, lead in LEADS.items():
        found: dict[str, list[str]] = {}
        with Simulator(dataset, SimulatorOptions(rate_limit=None)) as sim:
            for code in new_first(codes):
                config = bench.config(sim, dataset, lead_days=lead, page_size=100, max_retries=1)
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


def incremental(bench: Bench, codes: list[Code], shape: Shape, dataset: Dataset) -> None:
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


# -- conversations that change after their export -------------------------------------------


def changed_conversations(bench: Bench, code: Code, plan: Plan, data: dict[str, Dataset]) -> None:
    """The cost of re-reading conversations on a daily run, per bot, under each reading of the
    conversations window (the new code only: the setting is new)."""
    print(
        "A full run up to one day before the end of the data, then a daily run to the end from "
        "its state; the simulator's archive as of each run's end, filtering conversations on "
        "the reading shown. Conversation requests of the daily run, per bot, against the same "
        "run with conversation_reread_days 0 (no re-read). Defaults otherwise (page_size 1000)."
    )
    rows: list[list[str]] = []
    for key, shape in (("changing", plan.changing), ("changing_busy", plan.changing_busy)):
        dataset = data[key]
        print(f"- {describe(shape, dataset)}")
        for history, label in (
            (None, "backfill of all but the last day"),
            (7, "7 days of backfill"),
        ):
            backfill_end = dataset.end - DAY if history is None else dataset.start + history * DAY
            daily_end = backfill_end + DAY
            for reading in ("startTime", "lastActionAt"):
                daily: dict[str, TapRun] = {}
                backfill: list[dict[str, Any]] = []  # the state the learnt daily run starts from
                for setting in (None, 0):
                    options = SimulatorOptions(
                        rate_limit=None, conversation_filter=reading, as_of=backfill_end
                    )
                    extra = {} if setting is None else {"conversation_reread_days": setting}
                    with Simulator(dataset, options) as sim:
                        config = bench.config(sim, dataset, **FAST, **extra)
                        first = bench.run(code, sim, {**config, "end_date": iso(backfill_end)})
                        if first.state is None:
                            bench.fail(f"no STATE from the backfill ({shape.title}, {reading})")
                            continue
                        if setting is None:
                            backfill.append(first.state)
                        sim.options.as_of = daily_end
                        daily["learnt" if setting is None else "off"] = bench.run(
                            code, sim, {**config, "end_date": iso(daily_end)}, state=first.state
                        )
                if len(daily) < 2:
                    continue
                for bot in dataset.bots:
                    with_it = daily["learnt"].by_bot[bot, "conversations"]
                    without = daily["off"].by_bot[bot, "conversations"]
                    rows.append([
                        shape.title, label, bot, reading, planned_reread(backfill[0], bot),
                        str(with_it), str(without), f"{with_it - without:+d}",
                        str(daily["learnt"].by_bot[bot, "messages"]),
                    ])  # fmt: skip
    table(
        [
            "shape", "history", "bot", "filter", "re-read", "conversation requests",
            "without re-read", "extra", "message requests",
        ],
        rows,
    )  # fmt: skip


def planned_reread(state: dict[str, Any], bot: str) -> str:
    """The re-read a daily run plans from `state` for `bot`, as the tap computes it."""
    partitions = state["bookmarks"]["conversations"]["partitions"]
    seen = {p["context"]["bot_name"]: seen_in(p) for p in partitions}
    mine = next(p for p in partitions if p["context"] == {"bot_name": bot})
    bookmark = to_unix_seconds(parse_timestamp(mine["replication_key_value"]))
    since = seen[bot].observed_since
    seconds = reread_seconds(
        reading=filter_reading(seen.values()),
        longest_open_seconds=seen[bot].longest_open_seconds,
        history_seconds=None if since is None else bookmark - since,
        setting_days=None,
    )
    return duration_text(seconds) if seconds else "none"


# -- the concurrency and memory issue -------------------------------------------------------


def concurrency_issue(
    bench: Bench, codes: list[Code], plan: Plan, data: dict[str, Dataset]
) -> None:
    print(
        f"Simulator at 3 requests/s per endpoint and {REAL_LATENCY:g} s latency, the tap's "
        "default settings. The limit: the busier endpoint's floor / 3 requests/s."
    )
    rows: list[list[str]] = []
    options = SimulatorOptions(rate_limit=API_RATE, latency=REAL_LATENCY)
    for key, shape in (("busy", plan.busy), ("mixed", plan.mixed)):
        dataset = data[key]
        print(f"- {describe(shape, dataset)}")
        for start, lead in LEADS.items():
            limit = limit_seconds(dataset, lead_days=lead)
            found: dict[str, list[str]] = {}
            with Simulator(dataset, options) as sim:
                for code in new_first(codes):
                    run = bench.run(code, sim, bench.config(sim, dataset, lead_days=lead))
                    found[code.label] = [
                        shape.title, start, code.label, duration(run.seconds), duration(limit),
                        f"{run.seconds / limit:.2f}", per_endpoint(run.requests),
                        per_endpoint(floors(dataset, lead_days=lead)), str(run.throttled),
                        str(run.exit_code),
                        bench.check_records(run, dataset, f"{shape.title}, 3 req/s",
                                            streams=ENDPOINTS),
                    ]  # fmt: skip
            rows += in_order(codes, found)
    table(
        ["shape", "start_date", "code", "wall", "the limit", "wall/limit", "requests", "floor",
         "HTTP 429", "exit", "records / dataset"],
        rows,
    )  # fmt: skip
    print("Goal for new: wall/limit <= 1.3 for the busy bot with 8 quiet ones.")

    throughput(bench, codes, plan.throughput, data["throughput"], plan.throughput_latency)
    endpoint_rates(bench, codes, plan.rates, data["rates"], plan.throughput_latency)
    memory(bench, codes, plan, data)


def throughput(
    bench: Bench, codes: list[Code], shape: Shape, dataset: Dataset, latency: float
) -> None:
    print(f"\n### Both endpoints at once: {describe(shape, dataset)}\n")
    print(
        f"Simulator at 3 requests/s per endpoint and {latency:g} s latency, page_size 100. "
        "A full run, then a run of the messages stream alone (the busier endpoint)."
    )
    rows: list[list[str]] = []
    options = SimulatorOptions(rate_limit=API_RATE, latency=latency)
    for start, lead in LEADS.items():
        found: dict[str, list[str]] = {}
        ceiling = limit_seconds(dataset, per_page=100, lead_days=lead)
        with Simulator(dataset, options) as sim:
            for code in new_first(codes):
                config = bench.config(sim, dataset, lead_days=lead, page_size=100)
                full = bench.run(code, sim, config)
                full_ok = bench.check_records(full, dataset, shape.title, streams=ENDPOINTS)
                catalog = bench.messages_only_catalog(code, sim, dataset)
                alone = bench.run(code, sim, config, catalog=catalog)
                alone_ok = bench.check_records(
                    alone, dataset, f"{shape.title}, messages alone", streams=("messages",)
                )
                rates = [rate_text(full.per_second[e]) for e in ENDPOINTS]
                found[code.label] = [
                    start, code.label, duration(full.seconds), duration(ceiling),
                    f"{full.seconds / ceiling:.2f}", duration(alone.seconds),
                    f"{alone.seconds / full.seconds:.2f}", *rates, per_endpoint(full.requests),
                    str(full.throttled + alone.throttled),
                    f"{full.exit_code} / {alone.exit_code}", f"{full_ok}; {alone_ok}",
                ]  # fmt: skip
        rows += in_order(codes, found)
    table(
        ["start_date", "code", "full run", "ceiling", "full / ceiling", "messages alone",
         "messages alone / full", "conversations req/s", "messages req/s", "requests (full)",
         "HTTP 429", "exit", "records / dataset"],
        rows,
    )  # fmt: skip
    print(
        "The ceiling: the busier endpoint's floor (pages of 100) at 3 requests/s. Goals for "
        f"new: full run within 1.1x of the ceiling, messages alone / full >= 0.85; at "
        f"{latency:g} s latency each endpoint >= 0.9 of 3 requests/s (its mean rate from its "
        "first to its last request)."
    )


def endpoint_rates(
    bench: Bench, codes: list[Code], shape: Shape, dataset: Dataset, latency: float
) -> None:
    """Each endpoint's request rate over a long export, where the start and the end of a
    run weigh little."""
    print(f"\n### Request rate per endpoint: {describe(shape, dataset)}\n")
    print(
        f"Simulator at 3 requests/s per endpoint and {latency:g} s latency, the tap's default "
        "settings. Each endpoint's mean rate from its first to its last request."
    )
    found: dict[str, list[str]] = {}
    options = SimulatorOptions(rate_limit=API_RATE, latency=latency)
    with Simulator(dataset, options) as sim:
        for code in new_first(codes):
            run = bench.run(code, sim, bench.config(sim, dataset))
            ok = bench.check_records(run, dataset, f"{shape.title}, rates", streams=ENDPOINTS)
            rates = [rate_text(run.per_second[e]) for e in ENDPOINTS]
            found[code.label] = [
                code.label, *rates, per_endpoint(run.requests), duration(run.seconds),
                str(run.throttled), str(run.exit_code), ok,
            ]  # fmt: skip
    table(
        ["code", "conversations req/s", "messages req/s", "requests", "wall", "HTTP 429",
         "exit", "records / dataset"],
        in_order(codes, found),
    )  # fmt: skip
    print(f"Goal for new: at {latency:g} s latency each endpoint >= 0.9 of 3 requests/s.")


def memory(bench: Bench, codes: list[Code], plan: Plan, data: dict[str, Dataset]) -> None:
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


# -- main ----------------------------------------------------------------------------------


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
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--baseline",
        default="1849f3c",
        metavar="REF",
        help="git ref of the 'before' tap; 'none' runs the working tree only",
    )
    parser.add_argument(
        "--only", choices=("windows", "concurrency", "changes", "all"), default="all"
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
                "windows": ("busy", "quiet", "mixed", "outage"),
                "concurrency": ("busy", "mixed", "throughput", "rates", "memory", "memory_twice"),
                "changes": ("changing", "changing_busy"),
                "all": tuple(shapes),
            }[args.only]
            data = {key: shapes[key].build() for key in wanted}
            for key in wanted:
                print(f"- {describe(shapes[key], data[key])}, {len(data[key]):,} records")
        bench = Bench(workdir)
        if args.only in ("windows", "all"):
            with timed(parts, "Windows issue"):
                windows_issue(bench, codes, plan, args, data)
        if args.only in ("concurrency", "all"):
            with timed(parts, "Concurrency and memory issue"):
                concurrency_issue(bench, codes, plan, data)
        if args.only in ("changes", "all"):
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
