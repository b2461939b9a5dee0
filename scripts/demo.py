"""`make demo`: the tap, run by Meltano, from the project's simulator into DuckDB.

The first run exports the simulator's last 7 days; every later run is incremental, from the
state Meltano keeps in .meltano/, and says how little it fetched. The simulator serves the
same seeded data each time (its start is remembered in .meltano/demo.json), so the second
run re-reads only the lookback window and whatever became due since the first.

Usage: .venv/bin/python scripts/demo.py (what `make demo` runs after `make install`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb

ROOT = Path(__file__).resolve().parent.parent
# Not resolved: the venv's python is a symlink, and its folder is what holds meltano.
BIN = Path(sys.executable).parent
ENVIRONMENT = "simulator"
STATE_ID = f"{ENVIRONMENT}:tap-deepconverse-to-target-duckdb"
OUTPUT = ROOT / "output"
# Not deepconverse.duckdb: a catalog named like the schema makes `deepconverse.messages`
# ambiguous in DuckDB.
DATABASE = OUTPUT / "warehouse.duckdb"
RUN_LOG = OUTPUT / "demo-meltano-run.log"
MEMORY = ROOT / ".meltano" / "demo.json"
SCHEMA = "deepconverse"
STREAMS = ("conversations", "messages")
PLUGINS = (
    ROOT / ".meltano/extractors/tap-deepconverse/venv/bin/tap-deepconverse",
    ROOT / ".meltano/loaders/target-duckdb/venv/bin/target-duckdb",
)

SEED = 42
DAYS_BACK = 7
CONVERSATIONS_PER_DAY = 100
PREFERRED_PORT = 8787
DAY = 86_400
LOOKBACK_MINUTES = 60  # the tap's default; the demo does not change it

SUMMARY = re.compile(
    r"Summary of (?P<stream>\w+): (?P<records>\d+) records, (?P<windows>\d+) windows, "
    r"(?P<pages>\d+) pages, (?P<requests>\d+) requests"
)
PROGRESS = re.compile(r"window\(s\) from|window \[.*\) done|already up to date|Summary of ")
PLANNED = re.compile(r"^(\w+) for bot '(.+)': (\d+) window\(s\) from (\S+) to (\S+)\.$")
WINDOW_DONE = re.compile(r"window \[(\S+), (\S+)\) done: (\d+) records")
ELAPSED = re.compile(r"([\d.]+)s\.?$")
LOADED = re.compile(r"Loading (\d+) rows into '(.+)'")
LONG_TIME = re.compile(r"(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)(?:\.\d+)?Z")

# Spelled out: the schema is target-duckdb's default_target_schema in meltano.yml.
ROWS_SQL = {
    "conversations": "SELECT count(*) FROM deepconverse.conversations",
    "messages": "SELECT count(*) FROM deepconverse.messages",
}
STARTED_SQL = "SELECT min(starttime), max(starttime) FROM deepconverse.conversations"
SENT_SQL = "SELECT min(time), max(time) FROM deepconverse.messages"
TYPES_SQL = "SELECT type, count(*) AS n FROM deepconverse.messages GROUP BY type ORDER BY n DESC"
EXAMPLE_SQL = (
    "SELECT metadata->>'__sys_channel' AS channel, count(*) AS conversations "
    "FROM deepconverse.conversations GROUP BY channel ORDER BY conversations DESC"
)


class DemoError(Exception):
    """A step failed; the message says which and where to look."""


@dataclass
class Figures:
    """What the tap fetched in one run, from its 'Summary of ...' lines."""

    records: int = 0
    requests: int = 0
    windows: int = 0
    seconds: float = 0.0


@dataclass
class Memory:
    """What a later run needs from the first: the data's start and the first run's costs."""

    start: int
    first_run: dict[str, Figures] = field(default_factory=dict)

    @classmethod
    def load(cls) -> Memory | None:
        try:
            raw = json.loads(MEMORY.read_text(encoding="utf-8"))
            return cls(
                start=int(raw["start"]),
                first_run={k: Figures(**v) for k, v in raw["first_run"].items()},
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save(self) -> None:
        MEMORY.parent.mkdir(parents=True, exist_ok=True)
        runs = {stream: asdict(figures) for stream, figures in self.first_run.items()}
        document = {"start": self.start, "first_run": runs}
        MEMORY.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


# Output


def say(text: str = "") -> None:
    print(text, flush=True)


def step(number: int, text: str) -> None:
    say()
    say(f"[{number}/4] {text}")


def when(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def iso(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def short_times(text: str) -> str:
    return LONG_TIME.sub(r"\1 \2", text)


def count(value: int) -> str:
    return f"{value:,}"


# Processes


def run_quietly(
    command: Sequence[str | Path], env: Mapping[str, str], timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run a command of our own (fixed arguments, no shell)."""
    return subprocess.run(
        [str(part) for part in command],
        cwd=ROOT,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def demo_env() -> dict[str, str]:
    """The caller's environment without settings that would steer the demo elsewhere."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TAP_DEEPCONVERSE_", "TARGET_DUCKDB_", "MELTANO_"))
    }
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["MELTANO_SEND_ANONYMOUS_USAGE_STATS"] = "false"
    # Plugin venvs are built by uv, which skips bytecode unless asked: every tap start
    # would recompile its imports where PYTHONDONTWRITEBYTECODE is set.
    env["UV_COMPILE_BYTECODE"] = "1"
    return env


def meltano(*args: str) -> list[str]:
    return [str(BIN / "meltano"), f"--environment={ENVIRONMENT}", *args]


def ensure_plugins(env: Mapping[str, str]) -> None:
    if all(path.exists() for path in PLUGINS):
        say("      tap-deepconverse and target-duckdb are installed in .meltano/ already.")
        return
    say("      meltano install tap-deepconverse target-duckdb (first run only) ...")
    started = time.monotonic()
    done = run_quietly(meltano("install", "tap-deepconverse", "target-duckdb"), env)
    if done.returncode != 0:
        say(done.stdout + done.stderr)
        raise DemoError("meltano install failed (its output is above).")
    say(f"      installed in {time.monotonic() - started:.1f}s, no Meltano Hub needed.")


def saved_state(env: Mapping[str, str]) -> dict[str, Any]:
    """The state Meltano keeps for the demo's pipeline, or {} before the first run."""
    done = run_quietly(meltano("state", "get", STATE_ID), env, timeout=60)
    if done.returncode != 0:
        return {}
    try:
        state = json.loads(done.stdout.strip() or "{}")
    except ValueError:
        return {}
    return state if isinstance(state, dict) else {}


def bookmarks(state: Mapping[str, Any]) -> list[str]:
    found = []
    streams = state.get("singer_state", {}).get("bookmarks", {})
    for stream in streams.values():
        for partition in stream.get("partitions", []):
            value = partition.get("replication_key_value")
            if isinstance(value, str):
                found.append(value)
    return sorted(found)


def wait_for_url(process: subprocess.Popen[str], deadline: float) -> str | None:
    """The URL from the simulator's first line, or None if it exited first."""
    assert process.stdout is not None
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.2)
        if ready:
            line = process.stdout.readline()
            if not line:
                return None
            found = re.search(r"https?://[\w.\-]+:\d+", line)
            if found:
                return found.group(0)
        elif process.poll() is not None:
            return None
    raise DemoError("the simulator did not start within 30 seconds.")


@contextlib.contextmanager
def simulator(start: int, env: Mapping[str, str]) -> Iterator[str]:
    """Serve the seeded data from `start` to a day past now; yield the base URL."""
    days = (int(time.time()) - start) // DAY + 2
    process: subprocess.Popen[str] | None = None
    url = None
    with tempfile.TemporaryFile("w+") as errors:
        for port in (PREFERRED_PORT, 0):
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tap_deepconverse.simulator",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--seed",
                    str(SEED),
                    "--start",
                    str(start),
                    "--days",
                    str(days),
                    "--conversations-per-day",
                    str(CONVERSATIONS_PER_DAY),
                ],
                cwd=ROOT,
                env=dict(env),
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
            )
            url = wait_for_url(process, time.monotonic() + 30)
            if url:
                break
            process.wait()
            if port:
                say(f"      port {port} is taken; the simulator takes a free port instead.")
        if not url or process is None:
            errors.seek(0)
            raise DemoError(f"the simulator did not start: {errors.read().strip()}")
        say(
            f"      simulator on {url}: seed {SEED}, bots r3-218210 and support-bot, "
            f"about {CONVERSATIONS_PER_DAY} conversations a day from {when(start)}."
        )
        try:
            yield url
        finally:
            stop(process)
            say("      simulator stopped.")


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout is not None:
        process.stdout.close()


@dataclass
class RunResult:
    exit_code: int
    seconds: float
    figures: dict[str, Figures]
    tail: list[str]


def show(entry: Mapping[str, Any], figures: dict[str, Figures]) -> None:
    """Print the lines of a Meltano JSON log entry that tell a person what happens."""
    text = str(entry.get("event", "")).strip()
    level = str(entry.get("level", "info")).lower()
    source = str(entry.get("string_id") or entry.get("name") or "meltano")
    if source == "tap-deepconverse" and (found := SUMMARY.search(text)):
        figures[found["stream"]] = Figures(
            records=int(found["records"]),
            requests=int(found["requests"]),
            windows=int(found["windows"]),
            seconds=float(seconds[1]) if (seconds := ELAPSED.search(text)) else 0.0,
        )
    if level in ("warning", "error", "critical") and "No state was found" not in text:
        say(f"      ! {source}: {short_times(text)}")
    elif source == "tap-deepconverse" and PROGRESS.search(text):
        say(f"      tap    | {progress(text)}")
    elif source == "target-duckdb" and (loaded := LOADED.search(text)):
        table = loaded[2].replace('"', "").rsplit(".", 1)[-1]
        say(f"      target | loaded {count(int(loaded[1]))} rows into {table}")
    elif "state has been updated" in text:
        say("      meltano| state saved in .meltano/ for the next run")


def progress(text: str) -> str:
    """A progress line of the tap, shortened; unknown shapes pass as they are."""
    if planned := PLANNED.search(text):
        stream, bot, windows, first, last = planned.groups()
        return (
            f"{stream} of {bot}: {windows} window(s), {short_times(first)} to {short_times(last)}"
        )
    if done := WINDOW_DONE.search(text):
        first, last, records = done.groups()
        return (
            f"  [{short_times(first)[5:16]}, {short_times(last)[5:16]}) "
            f"{int(records):>6} record{'' if int(records) == 1 else 's'}"
        )
    return short_times(text)


def meltano_run(env: Mapping[str, str], full_refresh: bool) -> RunResult:
    command = meltano("--log-format=json", "run")
    command += ["--full-refresh"] if full_refresh else []
    command += ["tap-deepconverse", "target-duckdb"]
    say(
        f"      $ meltano --environment={ENVIRONMENT} run {'--full-refresh ' * full_refresh}"
        "tap-deepconverse target-duckdb"
    )
    figures: dict[str, Figures] = {}
    tail: list[str] = []
    started = time.monotonic()
    with RUN_LOG.open("w", encoding="utf-8") as log:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=dict(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert process.stdout is not None
        for line in process.stdout:
            log.write(line)
            tail = [*tail[-39:], line.rstrip("\n")]
            try:
                entry = json.loads(line)
            except ValueError:
                entry = {"event": line, "level": "info"}
            if isinstance(entry, dict):
                show(entry, figures)
        exit_code = process.wait()
    return RunResult(exit_code, time.monotonic() - started, figures, tail)


# DuckDB


def connect() -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(DATABASE), read_only=True)


def table_rows() -> dict[str, int]:
    if not DATABASE.exists():
        return {}
    rows = {}
    with connect() as db:
        for name, sql in ROWS_SQL.items():
            try:
                result = db.execute(sql).fetchone()
            except duckdb.CatalogException:  # that stream has not landed (yet)
                continue
            rows[name] = int(result[0]) if result else 0
    return rows


def scalar_pair(db: duckdb.DuckDBPyConnection, sql: str) -> tuple[Any, Any]:
    result = db.execute(sql).fetchone()
    return (result[0], result[1]) if result else (None, None)


def stamp(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value is not None else "-"


def describe_database() -> None:
    for name, number in table_rows().items():
        say(f"      {SCHEMA}.{name:<14}{count(number):>8} rows")
    with connect() as db:
        first, last = scalar_pair(db, STARTED_SQL)
        say(f"      conversations started  {stamp(first)}  to  {stamp(last)}")
        first, last = scalar_pair(db, SENT_SQL)
        say(f"      messages sent          {stamp(first)}  to  {stamp(last)}")
        say("      messages per type:")
        for kind, number in db.execute(TYPES_SQL).fetchall():
            say(f"        {kind!s:<14}{count(int(number)):>8}")
        say()
        say("      Ask your own question, e.g. conversations per channel (a key of the")
        say("      metadata JSON):")
        path = DATABASE.relative_to(ROOT)
        python = Path(os.path.relpath(BIN / "python", ROOT))
        say(
            f"        {python} -c \"import duckdb; db = duckdb.connect('{path}', read_only=True); "
            f"db.sql('''{EXAMPLE_SQL}''').show()\""
        )
        if shutil.which("duckdb"):
            say(f'      or: duckdb -readonly {path} "{EXAMPLE_SQL}"')
        say("      which prints:")
        for kind, number in db.execute(EXAMPLE_SQL).fetchall()[:6]:
            say(f"        {kind!s:<14}{count(int(number)):>8}")
        say("      (outMsg and userInput are JSON text: outmsg::JSON ->> 'text' reads one.)")


# The demo


def compare(this: dict[str, Figures], first: dict[str, Figures]) -> None:
    say("      fetched        this run                       first run")
    for stream in STREAMS:
        now, then = this.get(stream, Figures()), first.get(stream, Figures())
        say(
            f"      {stream:<14} {count(now.records):>6} records, {now.requests:>3} requests"
            f"      {count(then.records):>6} records, {then.requests:>3} requests"
        )
    records = sum(f.records for f in this.values())
    requests = sum(f.requests for f in this.values())
    first_records = sum(f.records for f in first.values()) or 1
    first_requests = sum(f.requests for f in first.values()) or 1
    say(
        f"      = {records / first_records:.1%} of the first run's records, "
        f"{requests / first_requests:.0%} of its requests."
    )


def plan(env: Mapping[str, str], memory: Memory | None) -> tuple[Memory, bool, bool]:
    """The data's start, whether this run is incremental, whether to ignore the state."""
    state = saved_state(env)
    if state and memory is not None and DATABASE.exists():
        marks = bookmarks(state)
        say(
            f"      Meltano has the state of the last run: bookmarks up to "
            f"{short_times(marks[-1]) if marks else '?'} UTC."
        )
        say(
            f"      INCREMENTAL run: each bot and stream starts {LOOKBACK_MINUTES} minutes before "
            "its bookmark"
        )
        say("      (lookback_minutes, for records that reach the archive late), not at start_date.")
        return memory, True, False
    if state:
        say("      The demo's database or its notes are gone while Meltano still has a state:")
        say("      starting over with --full-refresh.")
    else:
        say(
            "      No state yet: a FULL export of the simulator's last "
            f"{DAYS_BACK} days, in 24-hour windows."
        )
    for stale in (DATABASE, DATABASE.with_name(DATABASE.name + ".wal")):
        stale.unlink(missing_ok=True)
    start = int(time.time()) // 3600 * 3600 - DAYS_BACK * DAY
    return Memory(start=start), False, bool(state)


def main() -> int:
    started = time.monotonic()
    env = demo_env()
    say("tap-deepconverse demo: the Export API simulator -> Meltano -> DuckDB")
    step(1, "Meltano plugins")
    ensure_plugins(env)
    step(2, "What this run will do")
    memory, incremental, full_refresh = plan(env, Memory.load())
    rows_before = table_rows() if incremental else {}
    OUTPUT.mkdir(exist_ok=True)
    env |= {
        "TAP_DEEPCONVERSE_START_DATE": iso(memory.start),
        "TARGET_DUCKDB_FILEPATH": str(DATABASE),
    }
    step(3, "meltano run tap-deepconverse target-duckdb")
    with simulator(memory.start, env) as url:
        env["TAP_DEEPCONVERSE_API_URL"] = url
        result = meltano_run(env, full_refresh)
    if result.exit_code != 0:
        say("\n".join(["", "      The run failed; the end of its log:", *result.tail]))
        say(f"      Whole log: {RUN_LOG.relative_to(ROOT)}")
        return result.exit_code or 1
    say(f"      meltano run finished in {result.seconds:.1f}s (log: {RUN_LOG.relative_to(ROOT)}).")
    if incremental:
        say()
        compare(result.figures, memory.first_run)
        after = table_rows()
        added = sum(after.values()) - sum(rows_before.values())
        fetched = sum(figures.records for figures in result.figures.values())
        changes = ", ".join(
            f"{name} {count(rows_before.get(name, 0))} -> {count(number)}"
            for name, number in after.items()
        )
        say(f"      rows in DuckDB: {changes}.")
        again = max(fetched - added, 0)
        say(
            f"      Of the {count(fetched)} records fetched, {count(added)} were new and "
            f"{count(again)} were read again in the lookback"
        )
        say("      window: those were updated in place (target-duckdb upserts on _id).")
    else:
        memory.first_run = result.figures
        memory.save()
    step(4, f"What landed in {DATABASE.relative_to(ROOT)}")
    describe_database()
    say()
    if incremental:
        say(
            f"Done in {time.monotonic() - started:.0f}s. Each `make demo` from now on fetches "
            "only what is new since the last."
        )
    else:
        say(
            f"Done in {time.monotonic() - started:.0f}s. Run `make demo` again: that run is "
            "incremental and says how little it fetched."
        )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except DemoError as exc:
        print(f"\nmake demo failed: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:  # the simulator was stopped on the way out
        sys.exit(130)
