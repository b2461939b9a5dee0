"""Checks of a state given to the tap: one it cannot use stops the run with what is wrong,
before anything is fetched, rather than skipping or repeating data."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import IO, Any

from singer_sdk import Stream

from tap_deepconverse.conversation_changes import STATE_KEY as CHANGES_STATE_KEY
from tap_deepconverse.conversation_changes import state_problem
from tap_deepconverse.errors import StateError
from tap_deepconverse.streams import COMPLETE_WINDOW_KEY, DENSITY_KEY
from tap_deepconverse.timestamps import TimestampError, parse_timestamp


def state_problems(state: object, streams: Sequence[Stream]) -> list[str]:
    """Why a state cannot be this tap's, or nothing."""
    if not isinstance(state, dict):
        return ["it is not a JSON object"]
    bookmarks = state.get("bookmarks", {})
    if not isinstance(bookmarks, dict):
        return ["its 'bookmarks' is not an object"]
    by_name = {stream.name: stream for stream in streams}
    unknown = sorted(set(bookmarks) - set(by_name))
    if unknown:
        return [
            f"it has bookmarks for streams this tap does not have ({', '.join(unknown)}); "
            "is it another tap's state?"
        ]
    problems: list[str] = []
    for name, stream_state in bookmarks.items():
        if not isinstance(stream_state, dict):
            problems.append(f"the bookmark of '{name}' is not an object")
            continue
        if "replication_key_value" in stream_state:
            problems.append(f"'{name}' has a bookmark that is not kept per bot")
        partitions = stream_state.get("partitions", [])
        if not isinstance(partitions, list):
            problems.append(f"'{name}' partitions is not a list")
            continue
        for partition in partitions:
            problems.extend(_partition_problems(name, by_name[name], partition))
    return problems


def _partition_problems(name: str, stream: Stream, partition: object) -> list[str]:
    context = partition.get("context") if isinstance(partition, dict) else None
    if not isinstance(context, dict) or set(context) != {"bot_name"}:
        return [f"'{name}' has a partition that is not keyed by bot_name: {context!r}"]
    assert isinstance(partition, dict)
    where = f"'{name}' for bot {context['bot_name']!r}"
    key = partition.get("replication_key")
    if key is not None and key != stream.replication_key:
        return [f"{where} is bookmarked on {key!r}, not {stream.replication_key!r}"]
    for learnt in (COMPLETE_WINDOW_KEY, DENSITY_KEY):
        number = partition.get(learnt)
        if number is not None and not _non_negative(number):
            return [f"{where} has a {learnt} that is not a non-negative number: {number!r}"]
    value = partition.get("replication_key_value")
    if value is not None:
        problem = _bookmark_problem(value)
        if problem:
            shown = value if isinstance(value, Decimal) else repr(value)  # JSON numbers load so
            return [f"{where} has a bookmark that is {problem}: {shown}"]
    if CHANGES_STATE_KEY in partition:
        problem = state_problem(partition[CHANGES_STATE_KEY])
        if problem is not None:
            return [f"{where} has a {CHANGES_STATE_KEY!r} that {problem}"]
    return []


def _non_negative(value: object) -> bool:
    # The SDK reads numbers in the state as Decimal.
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool) and value >= 0


def remembered_window(state: Mapping[str, Any], stream: str) -> int:
    """The longest window an earlier run saw the API answer completely, for ``stream``."""
    stream_state = state.get("bookmarks", {}).get(stream, {})
    lengths = [
        int(partition.get(COMPLETE_WINDOW_KEY) or 0)
        for partition in stream_state.get("partitions", [])
    ]
    return max(lengths, default=0)


def _bookmark_problem(value: object) -> str | None:
    """Why a bookmark is not one this tap writes (an RFC 3339 date-time string), or None.
    A number is refused rather than read as Unix seconds: no run of this tap writes one,
    and seconds or milliseconds cannot be told apart for sure."""
    number = "a number, not a date-time (e.g. 2025-01-02T00:00:00Z)"
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return number
    if not isinstance(value, str):
        return "not a date-time string"
    try:
        float(value)
    except ValueError:
        pass
    else:
        return number
    try:
        parse_timestamp(value)
    except TimestampError:
        return "not a time"
    return None


def checked_state_file(state: IO[str] | None) -> IO[str] | None:
    if state is None:
        return None
    text = state.read() or "{}"
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        problem = f"is not valid JSON ({exc.msg} at line {exc.lineno})"
    else:
        if isinstance(document, dict):
            return io.StringIO(text)
        problem = "is not a JSON object"
    raise StateError(
        f"The state file {problem}. Fix it or clear it to export from start_date again."
    )
