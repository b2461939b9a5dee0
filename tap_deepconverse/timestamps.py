"""Parse the API's timestamps, whatever their format, and write them as RFC 3339 UTC.

The contract's only sample is integer Unix seconds, but milliseconds, floats and ISO 8601
strings are all plausible. Parsing is exact (integer microseconds, no float drift) so the
same instant always gives the same string, and the output has a fixed width so strings
sort as times.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from decimal import Decimal, InvalidOperation
from functools import lru_cache

UTC = dt.timezone.utc
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
MICROS_PER_DAY = 86_400_000_000
# Supported range: what datetime can hold (years 1 to 9999).
ONE_MICROSECOND = dt.timedelta(microseconds=1)
MIN_MICROS: int = (dt.datetime(1, 1, 1, tzinfo=UTC) - EPOCH) // ONE_MICROSECOND
MAX_MICROS: int = (dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC) - EPOCH) // ONE_MICROSECOND

# Above this a number is taken as milliseconds: 1e11 s is the year 5138, 1e11 ms is 1973.
MILLISECONDS_THRESHOLD = 100_000_000_000

_ISO = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?)?"
    r"\s*([Zz]|[+-]\d{2}(?::?\d{2})?)?"
)
_NUMBER = re.compile(r"[+-]?\d+(\.\d+)?")


class TimestampError(ValueError):
    """A value that is not a timestamp in any format the tap understands."""


def epoch_microseconds(value: object) -> int:
    """Microseconds since the Unix epoch of an API time value.

    Accepts Unix seconds or milliseconds (int, float, Decimal or a numeric string) and
    ISO 8601 strings (naive ones are taken as UTC).
    """
    micros: int
    if isinstance(value, bool) or value is None:
        raise TimestampError(f"not a timestamp: {value!r}")
    if isinstance(value, int):
        micros = value * _scale(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise TimestampError(f"not a timestamp: {value!r}")
        # Exact to the microsecond for any float that holds a time to the millisecond.
        micros = round(value * _scale(value))
    elif isinstance(value, Decimal):
        micros = _decimal_micros(value)
    elif isinstance(value, str):
        text = value.strip()
        number = _NUMBER.fullmatch(text)
        micros = _decimal_micros(Decimal(text)) if number else _iso_micros(text)
    else:
        raise TimestampError(f"not a timestamp: {value!r}")
    if not MIN_MICROS <= micros <= MAX_MICROS:
        raise TimestampError(f"timestamp out of range: {value!r}")
    return micros


def _scale(number: float | Decimal) -> int:
    return 1_000 if abs(float(number)) >= MILLISECONDS_THRESHOLD else 1_000_000


def _decimal_micros(number: Decimal) -> int:
    try:
        return int((number * _scale(number)).to_integral_value())
    except (InvalidOperation, OverflowError, ValueError) as exc:
        raise TimestampError(f"not a timestamp: {number!r}") from exc


def _iso_micros(text: str) -> int:
    match = _ISO.fullmatch(text)
    if not match:
        raise TimestampError(f"not a timestamp: {text!r}")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    try:
        moment = dt.datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            micro,
            tzinfo=_zone(offset),
        )
        return (moment - EPOCH) // ONE_MICROSECOND
    except (ValueError, OverflowError) as exc:
        raise TimestampError(f"not a timestamp: {text!r}") from exc


def _zone(offset: str | None) -> dt.timezone:
    if offset is None or offset in {"Z", "z"}:
        return UTC
    sign = -1 if offset[0] == "-" else 1
    digits = offset[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:4] or 0)
    return dt.timezone(sign * dt.timedelta(hours=hours, minutes=minutes))


@lru_cache(maxsize=8192)
def _day_text(days: int) -> str:
    day = EPOCH + dt.timedelta(days=days)
    return f"{day.year:04d}-{day.month:02d}-{day.day:02d}"


def format_microseconds(micros: int) -> str:
    """RFC 3339 UTC with a fixed width (microseconds and ``Z``), e.g.
    ``2025-04-15T20:57:45.000000Z``. Arithmetic rather than datetime: it runs per record."""
    days, rest = divmod(micros, MICROS_PER_DAY)
    seconds, micro = divmod(rest, 1_000_000)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    return f"{_day_text(days)}T{hours:02d}:{minutes:02d}:{seconds:02d}.{micro:06d}Z"


def normalize_timestamp(value: object) -> str:
    """An API time value as fixed-width RFC 3339 UTC."""
    return format_microseconds(epoch_microseconds(value))


def parse_timestamp(value: object) -> dt.datetime:
    """An API or config time value as an aware UTC datetime."""
    return EPOCH + dt.timedelta(microseconds=epoch_microseconds(value))


def format_timestamp(moment: dt.datetime) -> str:
    """An aware datetime as fixed-width RFC 3339 UTC."""
    return format_microseconds((moment - EPOCH) // ONE_MICROSECOND)


def to_unix_seconds(moment: dt.datetime) -> int:
    """Whole Unix seconds (floor) of an aware datetime."""
    return (moment - EPOCH) // dt.timedelta(seconds=1)


def from_unix_seconds(seconds: int) -> dt.datetime:
    """The UTC datetime of whole Unix seconds."""
    return EPOCH + dt.timedelta(seconds=seconds)
