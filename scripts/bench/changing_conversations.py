"""Conversations that change after their export: the cost of re-reading them (new code only).

A daily run after a full one, on data whose conversations last up to three days, with the
simulator's archive moving on between the runs: conversation requests per bot under each
reading of the conversations window, against the same run without the re-read
(``conversation_reread_days`` 0); after a full backfill, and after only 7 days of one. The
re-read each daily run plans is shown as the tap computes it from the backfill's state.
"""

from __future__ import annotations

from typing import Any

from tap_deepconverse.conversation_changes import (
    duration_text,
    filter_reading,
    reread_seconds,
    seen_in,
)
from tap_deepconverse.simulator import Dataset, Simulator, SimulatorOptions
from tap_deepconverse.timestamps import parse_timestamp, to_unix_seconds

from .plans import DAY, Plan
from .report import describe, table
from .runner import FAST, Bench, TapRun, iso
from .versions import Code


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
