"""`make demo`: the tap, run by Meltano, from the project's simulator into DuckDB.

The first run exports the simulator's last 7 days; every later run is incremental, from the
state Meltano keeps in .meltano/. The simulator serves the same seeded data each time (its
start is remembered in .meltano/demo.json), so the second run re-reads only the lookback
window, the recent conversations (which may have changed since their export), and whatever
became due since the first.

What the demo reports comes from what landed (the DuckDB file, whose `_sdc_extracted_at`
column tells the rows this run wrote) and from Meltano's state (`meltano state get`), never
from the wording of log lines. The tap's own closing lines are shown as it printed them: the
last line of each stream's logger, found through the fields of Meltano's JSON log.

Usage: .venv/bin/python scripts/demo.py (what `make demo` runs after `make install`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

ROOT = Path(__file__).resolve().parent.parent
# Not resolved: the venv's python is a symlink, and its folder is what holds meltano.
BIN = Path(sys.executable).parent
ENVIRONMENT = "simulator"
# target-duckdb 0.8 needs json_as_text: meltano.yml's tap-deepconverse--duckdb sets it.
EXTRACTOR, LOADER = "tap-deepconverse--duckdb", "target-duckdb"
STATE_ID = f"{ENVIRONMENT}:{EXTRACTOR}-to-{LOADER}"
OUTPUT = ROOT / "output"
# Not deepconverse.duckdb: a catalog named like the schema makes `deepconverse.messages`
# ambiguous in DuckDB.
DATABASE = OUTPUT / "warehouse.duckdb"
RUN_LOG = OUTPUT / "demo-meltano-run.log"
MEMORY = ROOT / ".meltano" / "demo.json"
SCHEMA = "deepconverse"  # target-duckdb's default_target_schema in meltano.yml
STREAMS = ("conversations", "messages")
TAP_LOGGERS = {f"tap-deepconverse.{stream}" for stream in STREAMS}
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

# Spelled out: the schema is target-duckdb's default_target_schema in meltano.yml.
ROWS_SQL = {
    "conversations": "SELECT count(*) FROM deepconverse.conversations",
    "messages": "SELECT count(*) FROM deepconverse.messages",
}
# Rows this run wrote: target-duckdb sets _sdc_extracted_at from the tap's RECORD messages.
WRITTEN_SQL = {
    "conversations": (
        "SELECT count(*) FROM deepconverse.conversations WHERE _sdc_extracted_at >= ?"
    ),
    "messages": "SELECT count(*) FROM deepconverse.messages WHERE _sdc_extracted_at >= ?",
}
STARTED_SQL = "SELECT min(starttime), max(starttime) FROM deepconverse.conversations"
SENT_SQL = "SELECT min(time), max(time) FROM deepconverse.messages"
TYPES_SQL = "SELECT type, count(*) AS n FROM deepconverse.messages GROUP BY type ORDER BY n DESC"
EXAMPLE_SQL = (
    "SELECT metadata->>'__sys_channel' AS channel, count(*) AS conversations "
    "FROM deepconverse.conversations GROUP BY channel ORDER BY conversations DESC"
)
TEXT_SQL = (
    "SELECT (outmsg::JSON)->>'text' AS text FROM deepconverse.messages "
    "WHERE ((outmsg::JSON)->>'text') IS NOT NULL LIMIT 1"
)


class DemoError(Exception):
    """A step failed; the message says which and where to look."""


@dataclass
class Memory:
    """What a later run needs from the first: the data's start and the rows it wrote."""

    start: int
    first_run: dict[str, int] = field(default_factory=dict)

    @classmethod
    def load(cls) -> Memory | None:
        try:
            raw = json.loads(MEMORY.read_text(encoding="utf-8"))
            return cls(
                start=int(raw["start"]),
                first_run={str(k): int(v) for k, v in raw["first_run"].items()},
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def save(self) -> None:
        MEMORY.parent.mkdir(parents=True, exist_ok=True)
        document = {"start": self.start, "first_run": self.first_run}
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


# Meltano's state


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


def bookmarks(state: Mapping[str, Any]) -> dict[tuple[str, str], str]:
    """(stream, bot) -> bookmark, from a state Meltano keeps."""
    found = {}
    streams = state.get("singer_state", {}).get("bookmarks", {})
    for stream, entry in streams.items():
        for partition in entry.get("partitions", []):
            value = partition.get("replication_key_value")
            bot = partition.get("context", {}).get("bot_name")
            if isinstance(value, str) and isinstance(bot, str):
                found[stream, bot] = value
    return found


def describe_bookmarks(marks: Mapping[tuple[str, str], str]) -> str:
    if not marks:
        return "none"
    bots = {bot for _stream, bot in marks}
    latest = max(marks.values())
    return (
        f"{len(marks)} bookmarks ({len(bots)} bots x {len(marks) // len(bots)} streams), "
        f"up to {latest[:10]} {latest[11:16]} UTC"
    )


# The simulator


def wait_for_url(process: subprocess.Popen[str], deadline: float) -> str | None:
    """The URL the simulator prints first ("... on http://host:port (...)"), or None if it
    exited first."""
    assert process.stdout is not None
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.2)
        if ready:
            line = process.stdout.readline()
            if not line:
                return None
            for word in line.split():
                if word.startswith(("http://", "https://")):
                    return word
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
                    *("--host", "127.0.0.1", "--port", str(port), "--seed", str(SEED)),
                    *("--start", str(start), "--days", str(days)),
                    *("--conversations-per-day", str(CONVERSATIONS_PER_DAY)),
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


# The run


@dataclass
class RunResult:
    exit_code: int
    seconds: float
    started: dt.datetime  # naive UTC, as DuckDB's TIMESTAMP columns hold times
    closing: dict[str, str]  # the last line each stream's logger printed
    tail: list[str]


def meltano_run(env: Mapping[str, str], full_refresh: bool) -> RunResult:
    command = meltano("--log-format=json", "run")
    command += ["--full-refresh"] if full_refresh else []
    command += [EXTRACTOR, LOADER]
    say(
        f"      $ meltano --environment={ENVIRONMENT} run {'--full-refresh ' * full_refresh}"
        f"{EXTRACTOR} {LOADER}"
    )
    say(f"      (the whole log goes to {RUN_LOG.relative_to(ROOT)})")
    closing: dict[str, str] = {}
    tail: list[str] = []
    started = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    clock = time.monotonic()
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
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if isinstance(entry, dict):
                    notice(entry, closing)
        exit_code = process.wait()
    return RunResult(exit_code, time.monotonic() - clock, started, closing, tail)


def notice(entry: Mapping[str, Any], closing: dict[str, str]) -> None:
    """Print warnings and errors as they come; keep each tap stream logger's last line."""
    text = str(entry.get("event", "")).strip()
    level = str(entry.get("level", "info")).lower()
    source = str(entry.get("string_id") or entry.get("name") or "meltano")
    if level in ("warning", "error", "critical"):
        say(f"      ! {source}: {text}")
    logger = entry.get("plugin_logger")
    if isinstance(logger, str) and logger in TAP_LOGGERS and level == "info":
        closing[logger] = text


# DuckDB


def connect() -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(DATABASE), read_only=True)


def table_rows(since: dt.datetime | None = None) -> dict[str, int]:
    """Rows per stream table; with `since`, only those written (extracted) since then."""
    if not DATABASE.exists():
        return {}
    rows = {}
    with connect() as db:
        for stream in STREAMS:
            try:
                if since is None:
                    result = db.execute(ROWS_SQL[stream]).fetchone()
                else:
                    result = db.execute(WRITTEN_SQL[stream], [since]).fetchone()
            except duckdb.CatalogException:  # that stream has not landed (yet)
                continue
            rows[stream] = int(result[0]) if result else 0
    return rows


def scalar_pair(db: duckdb.DuckDBPyConnection, sql: str) -> tuple[Any, Any]:
    result = db.execute(sql).fetchone()
    return (result[0], result[1]) if result else (None, None)


def stamp(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value is not None else "-"


def describe_tables(before: Mapping[str, int], written: Mapping[str, int]) -> None:
    after = table_rows()
    say(f"      {'table':<27}{'rows before':>12}{'rows now':>10}{'written by this run':>21}")
    for stream in STREAMS:
        say(
            f"      {SCHEMA + '.' + stream:<27}{count(before.get(stream, 0)):>12}"
            f"{count(after.get(stream, 0)):>10}{count(written.get(stream, 0)):>21}"
        )


def describe_data() -> None:
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
        say()
        say("      outMsg and userInput are JSON text here (json_as_text); outmsg::JSON reads one:")
        example = db.execute(TEXT_SQL).fetchone()
        if example:
            say(f"        (outmsg::JSON)->>'text' = {str(example[0])[:60]!r}")


# The demo


def plan(env: Mapping[str, str], memory: Memory | None) -> tuple[Memory, bool, bool, str]:
    """The data's start, whether this run is incremental, whether to ignore the state, and
    the bookmarks Meltano holds before the run."""
    state = saved_state(env)
    marks = describe_bookmarks(bookmarks(state))
    if state and memory is not None and DATABASE.exists():
        say(f"      Meltano's state ({STATE_ID}): {marks}.")
        say(
            f"      INCREMENTAL run: each bot and stream starts {LOOKBACK_MINUTES} minutes before "
            "its bookmark"
        )
        say("      (lookback_minutes, for records that reach the archive late), not at start_date;")
        say("      conversations also re-read the recent days, for the ones changed since their")
        say("      export (conversation_reread_days; the tap's log says how far and why).")
        return memory, True, False, marks
    if state:
        say("      The demo's database or its notes are gone while Meltano still has a state:")
        say("      starting over with --full-refresh.")
    else:
        say(
            f"      Meltano has no state for {STATE_ID} yet: a FULL export of the simulator's "
            f"last {DAYS_BACK} days."
        )
    for stale in (DATABASE, DATABASE.with_name(DATABASE.name + ".wal")):
        stale.unlink(missing_ok=True)
    start = int(time.time()) // 3600 * 3600 - DAYS_BACK * DAY
    return Memory(start=start), False, bool(state), "none"


def compare(written: Mapping[str, int], before: Mapping[str, int], memory: Memory) -> None:
    after = table_rows()
    total = sum(written.values())
    first = sum(memory.first_run.values()) or 1
    new = sum(after.values()) - sum(before.values())
    say(
        f"      This run wrote {count(total)} rows, {total / first:.1%} of the first run's "
        f"{count(first)}: {count(new)} new, and {count(max(total - new, 0))} read again in the"
    )
    say("      lookback window or among recent conversations, and updated in place (target-duckdb")
    say("      upserts on _id).")


def main() -> int:
    started = time.monotonic()
    env = demo_env()
    say(f"tap-deepconverse demo: the Export API simulator -> Meltano -> DuckDB ({LOADER})")
    step(1, "Meltano plugins")
    ensure_plugins(env)
    step(2, "What this run will do, from Meltano's state")
    memory, incremental, full_refresh, marks_before = plan(env, Memory.load())
    rows_before = table_rows() if incremental else {}
    OUTPUT.mkdir(exist_ok=True)
    env |= {
        "TAP_DEEPCONVERSE_START_DATE": iso(memory.start),
        "TARGET_DUCKDB_FILEPATH": str(DATABASE),
    }
    step(3, f"meltano run {EXTRACTOR} {LOADER}")
    with simulator(memory.start, env) as url:
        env["TAP_DEEPCONVERSE_API_URL"] = url
        result = meltano_run(env, full_refresh)
    if result.exit_code != 0:
        say("\n".join(["", "      The run failed; the end of its log:", *result.tail]))
        say(f"      Whole log: {RUN_LOG.relative_to(ROOT)}")
        return result.exit_code or 1
    say(f"      meltano run finished in {result.seconds:.1f}s. The tap's closing lines:")
    for logger in sorted(result.closing):
        say(f"        {result.closing[logger]}")
    step(4, f"What landed in {DATABASE.relative_to(ROOT)}, and Meltano's state")
    written = table_rows(since=result.started)
    describe_tables(rows_before, written)
    marks_after = describe_bookmarks(bookmarks(saved_state(env)))
    say(f"      Meltano's state: {marks_after} (before this run: {marks_before}).")
    if incremental:
        compare(written, rows_before, memory)
    else:
        memory.first_run = written
        memory.save()
    say()
    describe_data()
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
