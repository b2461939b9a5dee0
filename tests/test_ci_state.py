"""The pattern examples/github-actions/deepconverse-daily.yml relies on: a scheduled job starts
on a fresh machine every time, so Meltano keeps the state in a system database outside it.

Two runs, each from a fresh copy of a user's project (its meltano.yml, no `.meltano/`), each
`meltano install` then `meltano --environment=prod run`, with MELTANO_DATABASE_URI pointing at
a PostgreSQL database of the session's private cluster, as the workflow's secret does. The
first run exports everything; the second must start from the state the first left there.
"""

from __future__ import annotations

import json
import shutil
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from tap_deepconverse.simulator import Simulator, SimulatorOptions, generate_dataset
from tap_deepconverse.timestamps import parse_timestamp, to_unix_seconds
from tests.conftest import DAY, iso
from tests.meltano_project import ROOT, MeltanoProject
from tests.pg_cluster import PostgresServer

pytestmark = pytest.mark.targets

WORKFLOW = ROOT / "examples" / "github-actions" / "deepconverse-daily.yml"
DATABASE = "meltano_system"
ENVIRONMENT = "prod"
PIPELINE = ("tap-deepconverse", "target-jsonl")
STATE_ID = f"{ENVIRONMENT}:tap-deepconverse-to-target-jsonl"
LOOKBACK = 3600  # lookback_minutes, the tap's default
STREAMS = {"conversations": "startTime", "messages": "time"}  # the field the API filters on


def scheduled_run(
    project: MeltanoProject, root: Path, env: dict[str, str]
) -> dict[str, list[dict[str, Any]]]:
    """One job on a fresh runner: check out, install, run; what it loaded, by stream."""
    checkout = project.fresh_copy(root)
    assert sorted(path.name for path in root.iterdir()) == ["meltano.yml"]
    checkout.meltano("install", *PIPELINE, env=env)
    checkout.meltano(f"--environment={ENVIRONMENT}", "run", *PIPELINE, env=env)
    assert not (root / ".meltano" / "meltano.db").exists(), "state went to a local SQLite"
    loaded = {
        stream: [
            json.loads(line)
            for line in (root / "output" / f"{stream}.jsonl").read_text("utf-8").splitlines()
        ]
        for stream in STREAMS
    }
    shutil.rmtree(root)  # the runner is gone
    return loaded


def stored_bookmarks(postgres: PostgresServer) -> dict[tuple[str, str], int]:
    """(stream, bot) -> bookmark, from the state Meltano keeps in the system database."""
    (row,) = postgres.rows(
        f"SELECT completed_state FROM state WHERE state_id = '{STATE_ID}'", DATABASE
    )
    state = row["completed_state"]
    state = json.loads(state) if isinstance(state, str) else state
    found = {}
    for stream, entry in state["singer_state"]["bookmarks"].items():
        for partition in entry["partitions"]:
            moment = parse_timestamp(partition["replication_key_value"])
            found[stream, partition["context"]["bot_name"]] = to_unix_seconds(moment)
    return found


def test_a_fresh_checkout_resumes_from_the_state_in_the_system_database(
    user_project: MeltanoProject, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    postgres_server.create_database(DATABASE)
    end = int(time.time()) // 3600 * 3600
    dataset = generate_dataset(seed=41, start=end - 2 * DAY, days=2, conversations_per_day=30)
    with Simulator(dataset, SimulatorOptions()) as sim:
        env = {
            "MELTANO_DATABASE_URI": postgres_server.sqlalchemy_url(DATABASE),
            "TAP_DEEPCONVERSE_API_URL": sim.url,
            "TAP_DEEPCONVERSE_START_DATE": iso(dataset.start),
            # Only the lookback: re-reading changed conversations has its own tests.
            "TAP_DEEPCONVERSE_CONVERSATION_REREAD_DAYS": "0",
        }
        everything = {stream: dataset.ids(stream) for stream in STREAMS}
        first = scheduled_run(user_project, tmp_path / "run-1", env)
        bookmarks = stored_bookmarks(postgres_server)
        # Late data: it reaches the archive after the first run, 20 minutes before the
        # bookmarks (its messages follow within 10), inside the lookback window.
        late, late_messages = dataset.add_conversation(
            "support-bot", min(bookmarks.values()) - 1200, n_messages=2
        )
        sim.reset_log()
        second = scheduled_run(user_project, tmp_path / "run-2", env)
        requests = [entry for entry in sim.requests if entry.endpoint in STREAMS]

    # The first run exported everything there was.
    for stream in STREAMS:
        assert sorted(r["_id"] for r in first[stream]) == sorted(everything[stream]), stream
    assert {stream for stream, _bot in bookmarks} == set(STREAMS)
    assert {bot for _stream, bot in bookmarks} == set(dataset.bots)

    # The second started from those bookmarks, less the lookback, and not from start_date.
    assert requests
    for entry in requests:
        bookmark = bookmarks[entry.endpoint, entry.params["bot_name"]]
        assert int(entry.params["start_time"]) >= bookmark - LOOKBACK - 1, entry.params
    for stream, field in STREAMS.items():
        earliest = min(bookmarks[stream, bot] for bot in dataset.bots) - LOOKBACK - 1
        times = [to_unix_seconds(parse_timestamp(r[field])) for r in second[stream]]
        assert all(moment >= earliest for moment in times), stream
        assert len(second[stream]) < len(first[stream]) / 5, stream
    # ... and picked up what arrived late.
    assert late["_id"] in {r["_id"] for r in second["conversations"]}
    assert {m["_id"] for m in late_messages} <= {r["_id"] for r in second["messages"]}

    # The state moved on, in the same database.
    after = stored_bookmarks(postgres_server)
    assert all(after[key] >= value for key, value in bookmarks.items())


def test_the_example_workflow_is_the_pattern_tested() -> None:
    """Same Meltano (with the PostgreSQL driver), state in MELTANO_DATABASE_URI, secrets from
    the CI's store, a fresh checkout, `meltano install` then the same `meltano run`."""
    workflow = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    (job,) = workflow["jobs"].values()
    env = job["env"]
    assert env["MELTANO_DATABASE_URI"].startswith("${{ secrets.")
    assert env["TAP_DEEPCONVERSE_API_KEY"].startswith("${{ secrets.")
    assert "schedule" in workflow[True]  # YAML 1.1 reads the key `on` as true
    commands = [step["run"] for step in job["steps"] if "run" in step]
    assert f'"meltano[postgres]=={version("meltano")}"' in commands[0]
    install, run = commands[1:]
    loader = run.split()[-1]
    assert install == f"meltano install {PIPELINE[0]} {loader}"
    assert run == f"meltano --environment={ENVIRONMENT} run {PIPELINE[0]} {loader}"
