"""What the Export API's answers to ``--diagnose`` say, as one report. Pure: no I/O.

Each endpoint's probe gathers :class:`Findings`; :func:`build_report` turns both into the
report's values, each with the reason it was found or why the data cannot tell (then the
value is null). :func:`table` renders it for people.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tap_deepconverse.timestamps import MILLISECONDS_THRESHOLD

# The keys of the report, in the order they are shown.
KEYS = (
    "cursor_key",
    "page_size_served",
    "start_time_inclusive",
    "end_time_inclusive",
    "time_format",
    "longest_window_days",
    "conversations_filter",
)
TIME_FIELDS = {"conversations": ("startTime", "lastActionAt"), "messages": ("time",)}
_NUMBER = re.compile(r"[+-]?\d+(\.\d+)?")
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")
CURSOR_WORDS = ("cursor", "next", "token", "page")  # names that read as a cursor's


def time_kind(value: object) -> str | None:
    """How one time value is written: ``unix_seconds``, ``unix_milliseconds`` or
    ``iso8601``; None for anything else."""
    if isinstance(value, bool):
        return None
    number: float | None = None
    if isinstance(value, int | float) or (
        isinstance(value, str) and _NUMBER.fullmatch(value.strip())
    ):
        number = float(value)
    elif isinstance(value, str) and _ISO.match(value.strip()):
        return "iso8601"
    if number is None:
        return None
    return "unix_milliseconds" if abs(number) >= MILLISECONDS_THRESHOLD else "unix_seconds"


def find_cursor(document: dict[str, Any]) -> tuple[tuple[str, ...], str | None] | None:
    """Where an answer carries its cursor, and its value: the top-level ``cursor`` when the
    answer has one; else, beside the records, the first value under a name that reads as a
    cursor (cursor, next, token, page), else the first text (depth first)."""
    if "cursor" in document:
        return ("cursor",), cursor_text(document["cursor"])
    leaves = [
        leaf for key, value in document.items() if key != "data" for leaf in _leaves(value, (key,))
    ]
    for path, value in leaves:
        if any(word in path[-1].lower() for word in CURSOR_WORDS):
            return path, cursor_text(value)
    for path, value in leaves:
        if isinstance(value, str) and value:
            return path, value
    return None


def _leaves(value: object, path: tuple[str, ...]) -> list[tuple[tuple[str, ...], object]]:
    """Every value under ``value`` that is not an object, with its path."""
    if isinstance(value, dict):
        return [leaf for key, member in value.items() for leaf in _leaves(member, (*path, key))]
    return [(path, value)]


def value_at(document: object, path: tuple[str, ...]) -> object:
    for key in path:
        if not isinstance(document, dict):
            return None
        document = document.get(key)
    return document


def cursor_text(value: object) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return str(value)
    return value if isinstance(value, str) and value else None


@dataclass
class Answer:
    """One value of the report and how it was found."""

    value: Any
    reason: str


@dataclass
class Findings:
    """What one endpoint's answers showed."""

    endpoint: str
    requests: int = 0
    time_kinds: Counter[tuple[str, str]] = field(default_factory=Counter)  # (field, kind)
    largest_page: int = 0  # most records in one page asked with page_size
    most_in_a_window: int = 0  # most records in one window asked with page_size
    paged_past: bool = False  # a window asked with page_size came in several pages
    cursor_paths: set[str] = field(default_factory=set)  # where cursors were found
    unfollowable: str | None = None  # a full page that came with no cursor anywhere
    needed_cursor: bool = False  # some answer held as many records as asked
    empty_with_cursor: bool = False  # an empty page whose cursor led on
    start_inclusive: Answer | None = None
    end_inclusive: Answer | None = None
    longest_window_days: Answer | None = None
    conversations_filter: Answer | None = None
    skipped: list[str] = field(default_factory=list)  # probes left out, and why

    def saw_times(self, record: dict[str, Any]) -> None:
        for name in TIME_FIELDS[self.endpoint]:
            kind = time_kind(record.get(name))
            if kind is not None:
                self.time_kinds[name, kind] += 1


def build_report(findings: list[Findings], *, page_size: int) -> dict[str, Answer]:
    """The report's answers, from what both endpoints showed."""
    return {
        "cursor_key": _cursor_key(findings),
        "page_size_served": _page_size_served(findings, page_size),
        "start_time_inclusive": _agreed(findings, "start_inclusive", "a record on start_time"),
        "end_time_inclusive": _agreed(findings, "end_inclusive", "a record on end_time"),
        "time_format": _time_format(findings),
        "longest_window_days": _longest_window(findings),
        "conversations_filter": _filter(findings),
    }


def _cursor_key(findings: list[Findings]) -> Answer:
    paths = sorted({p for f in findings for p in f.cursor_paths})
    if len(paths) == 1:
        (path,) = paths
        where = f" (at {path})" if "." in path else ""
        return Answer(
            path.split(".")[0], f"answers with more to come carried the cursor there{where}"
        )
    if paths:
        return Answer(None, f"the answers carried cursors in different places: {paths}")
    unfollowable = [f.unfollowable for f in findings if f.unfollowable]
    if unfollowable:
        return Answer(None, f"no cursor anywhere in the answer: {unfollowable[0]}")
    if any(f.needed_cursor for f in findings):
        return Answer(None, "full pages came with no cursor, and none was followed")
    return Answer(None, "no answer needed one: no window held more than a page")


def _page_size_served(findings: list[Findings], page_size: int) -> Answer:
    largest = max((f.largest_page for f in findings), default=0)
    most = max((f.most_in_a_window for f in findings), default=0)
    if largest >= page_size:
        return Answer(largest, f"pages of {largest} records came when asked for {page_size}")
    if any(f.paged_past for f in findings):
        served = min(f.largest_page for f in findings if f.paged_past)
        return Answer(
            served,
            f"windows of more records came in pages of at most {served} when asked for {page_size}",
        )
    return Answer(
        None,
        f"no window held more than {most} records (asked {page_size} a page): too few to "
        "tell whether the API serves fewer than asked",
    )


def _agreed(findings: list[Findings], name: str, what: str) -> Answer:
    """The endpoints' measure of one thing: theirs if they agree, else null and why."""
    measured: list[tuple[str, Answer]] = [
        (f.endpoint, a) for f in findings if (a := getattr(f, name)) is not None
    ]
    known = [a for _, a in measured if a.value is not None]
    if len({a.value for a in known}) == 1:
        return known[0]
    if known:
        return Answer(None, "the endpoints differ: " + "; ".join(a.reason for a in known))
    if not measured:
        return Answer(None, f"{what} was not probed")
    return Answer(None, "; ".join(f"{endpoint}: {a.reason}" for endpoint, a in measured))


def _time_format(findings: list[Findings]) -> Answer:
    by_field = time_formats(findings)
    kinds = {kind for found in by_field.values() for kind in found}
    read = sum(n for f in findings for n in f.time_kinds.values())
    if not kinds:
        return Answer(None, "no record came back to read a time from")
    if len(kinds) == 1:
        (kind,) = kinds
        return Answer(kind, f"every time read ({read} in {', '.join(by_field)}) is {kind}")
    mixed = "; ".join(f"{name}: {', '.join(found)}" for name, found in by_field.items())
    return Answer(None, f"times come in more than one format ({mixed})")


def _longest_window(findings: list[Findings]) -> Answer:
    """The shortest of the endpoints' longest windows: the one both answer whole."""
    measured = [f.longest_window_days for f in findings if f.longest_window_days is not None]
    known = [a for a in measured if a.value is not None]
    if known:
        return min(known, key=lambda a: float(a.value))
    return measured[0] if measured else Answer(None, "no window length was probed")


def _filter(findings: list[Findings]) -> Answer:
    for f in findings:
        if f.conversations_filter is not None:
            return f.conversations_filter
    return Answer(None, "the conversations endpoint was not probed")


def time_formats(findings: list[Findings]) -> dict[str, list[str]]:
    """The formats each time field came in, by ``endpoint.field``."""
    formats: dict[str, set[str]] = {}
    for f in findings:
        for name, kind in f.time_kinds:
            formats.setdefault(f"{f.endpoint}.{name}", set()).add(kind)
    return {key: sorted(kinds) for key, kinds in sorted(formats.items())}


def as_json(report: dict[str, Answer], details: dict[str, Any]) -> dict[str, Any]:
    """The document written on stdout: each key's value, the reasons, and the details."""
    document: dict[str, Any] = {key: report[key].value for key in KEYS}
    document["reasons"] = {key: report[key].reason for key in KEYS}
    document["details"] = details
    return document


def table(report: dict[str, Answer], heading: str, footer: list[str]) -> str:
    """The report for people: one line per question, its answer, and why."""
    shown = {key: _shown(report[key].value) for key in KEYS}
    key_width = max(len(k) for k in KEYS)
    value_width = max(len("answer"), *(len(v) for v in shown.values()))
    lines = [heading, ""]
    lines.append(f"  {'question':<{key_width}}  {'answer':<{value_width}}  why")
    lines.extend(
        f"  {key:<{key_width}}  {shown[key]:<{value_width}}  {report[key].reason}" for key in KEYS
    )
    return "\n".join([*lines, "", *footer, ""])


def _shown(value: Any) -> str:  # noqa: ANN401 - any value of the report
    if value is None:
        return "unknown"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)
