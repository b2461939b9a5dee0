"""What the benchmark prints: markdown tables, durations, rates, and each part's heading."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from tap_deepconverse.simulator import Dataset

from .plans import API_RATE, ENDPOINTS, Shape

CHAIN_GOAL = 4  # the goal: no query asked for more than about 4 pages one after the other


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


def rate_text(per_second: float) -> str:
    """Requests per second, and their share of the API's limit."""
    return f"{per_second:.2f} ({per_second / API_RATE:.2f} of 3)"


def per_endpoint(values: dict[str, int]) -> str:
    return " + ".join(f"{values.get(e, 0):,}" for e in ENDPOINTS)


def chains_text(pages_in_a_row: dict[str, dict[str, int]]) -> str:
    """Both endpoints' queries by pages asked one after the other: the most, and how many
    of all went past 4 pages."""
    counts = Counter[int]()
    for found in pages_in_a_row.values():
        counts.update({int(pages): queries for pages, queries in found.items()})
    if not counts:
        return "-"
    over = sum(queries for pages, queries in counts.items() if pages > CHAIN_GOAL)
    return f"{max(counts)}; {over} of {counts.total()} over {CHAIN_GOAL}"


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
