"""Time parsing: every plausible API format gives the same fixed-width RFC 3339 string."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from tap_deepconverse.timestamps import (
    TimestampError,
    format_timestamp,
    from_unix_seconds,
    normalize_timestamp,
    parse_timestamp,
    to_unix_seconds,
)

SAMPLE = "2025-04-15T20:57:45.000000Z"  # the contract's sample startTime, 1744750665


@pytest.mark.parametrize(
    "value",
    [
        1744750665,
        1744750665.0,
        Decimal("1744750665"),
        "1744750665",
        1744750665000,
        "1744750665000",
        "2025-04-15T20:57:45Z",
        "2025-04-15T20:57:45.000Z",
        "2025-04-15T20:57:45+00:00",
        "2025-04-15T22:57:45+02:00",
        "2025-04-15T15:57:45-0500",
        "2025-04-15 20:57:45",
    ],
)
def test_every_format_of_one_instant_gives_one_string(value: object) -> None:
    assert normalize_timestamp(value) == SAMPLE


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1735690123.457, "2025-01-01T00:08:43.457000Z"),
        (Decimal("1735690123.457"), "2025-01-01T00:08:43.457000Z"),
        (1735690123457, "2025-01-01T00:08:43.457000Z"),
        ("2025-01-01T00:08:43.4571239Z", "2025-01-01T00:08:43.457123Z"),
        ("2025-01-01T00:08:43.5", "2025-01-01T00:08:43.500000Z"),
        ("2025-01-01", "2025-01-01T00:00:00.000000Z"),
        (0, "1970-01-01T00:00:00.000000Z"),
    ],
)
def test_fractions_are_exact(value: object, expected: str) -> None:
    assert normalize_timestamp(value) == expected


@pytest.mark.parametrize(
    "value", [None, True, "", "yesterday", "2025-13-01T00:00:00Z", [], {}, float("nan"), 1e30]
)
def test_garbage_is_rejected(value: object) -> None:
    with pytest.raises(TimestampError):
        parse_timestamp(value)


def test_fixed_width_strings_sort_as_times() -> None:
    values = [1735690123, 1735690123.5, 1735690124, 1735690123.05]
    as_text = sorted(normalize_timestamp(v) for v in values)
    assert as_text == [normalize_timestamp(v) for v in sorted(values)]


def test_unix_seconds_round_trip() -> None:
    moment = from_unix_seconds(1744750665)
    assert moment.tzinfo is not None
    assert to_unix_seconds(moment) == 1744750665
    assert format_timestamp(moment.astimezone(dt.timezone(dt.timedelta(hours=5)))) == SAMPLE
