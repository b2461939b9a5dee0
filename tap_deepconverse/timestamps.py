"""Parse the API's timestamps, whatever their format, and write them as RFC 3339 UTC.

The contract's only sample is integer Unix seconds, but milliseconds, floats and ISO 8601
strings are all plausible. Parsing is exact (integer microseconds, no float rounding) so
the same instant always gives the same string.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from decimal import Decimal, InvalidOperation

UTC = dt.timezone.utc
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)

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


def parse_timestamp(value: object) -> dt.datetime:
    """Return the UTC datetime for an API time value.

    Accepts Unix seconds or milliseconds (int, float, Decimal or a numeric string) and
    ISO 8601 strings (naive ones are taken as UTC).
    """
    if isinstance(value, bool) or value is None:
        raise TimestampError(f"not a timestamp: {value!r}")
    if isinstance(value, int):
        scale = 1_000 if abs(value) >= MILLISECONDS_THRESHOLD else 1_000_000
        return _from_microseconds(value * scale)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TimestampError(f"not a timestamp: {value!r}")
        # Exact to the microsecond for any float that holds a time to the millisecond.
        scale = 1_000 if abs(value) >= MILLISECONDS_THRESHOLD else 1_000_000
        return _from_microseconds(round(value * scale))
    if isinstance(value, Decimal):
        return _from_number(value)
    if isinstance(value, str):
        text = value.strip()
        if _NUMBER.fullmatch(text):
            return _from_number(Decimal(text))
        return _from_iso(text)
    raise TimestampError(f"not a timestamp: {value!r}")


def _from_number(number: Decimal) -> dt.datetime:
    try:
        return _from_microseconds(_epoch_microseconds(number))
    except (InvalidOperation, OverflowError, ValueError) as exc:
        raise TimestampError(f"not a timestamp: {number!r}") from exc


def _epoch_microseconds(number: Decimal) -> int:
    if not number.is_finite():
        raise TimestampError(f"not a timestamp: {number!r}")
    scale = 1_000 if abs(number) >= MILLISECONDS_THRESHOLD else 1_000_000
    return int((number * scale).to_integral_value())


def _from_microseconds(microseconds: int) -> dt.datetime:
    try:
        return EPOCH + dt.timedelta(microseconds=microseconds)
    except (OverflowError, ValueError) as exc:
        raise TimestampError(f"timestamp out of range: {microseconds} us") from exc


def _from_iso(text: str) -> dt.datetime:
    match = _ISO.fullmatch(text)
    if not match:
        raise TimestampError(f"not a timestamp: {text!r}")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    try:
        local = dt.datetime(
            int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0),
            micro, tzinfo=_zone(offset),
        )
    except ValueError as exc:
        raise TimestampError(f"not a timestamp: {text!r}") from exc
    return local.astimezone(UTC)


def _zone(offset: str | None) -> dt.timezone:
    if offset is None or offset in {"Z", "z"}:
        return UTC
    sign = -1 if offset[0] == "-" else 1
    digits = offset[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:4] or 0)
    return dt.timezone(sign * dt.timedelta(hours=hours, minutes=minutes))


def format_timestamp(moment: dt.datetime) -> str:
    """RFC 3339 in UTC with a fixed width (microseconds, ``Z``) so strings sort as times."""
    utc = moment.astimezone(UTC)
    return (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T"
        f"{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}.{utc.microsecond:06d}Z"
    )


def normalize_timestamp(value: object) -> str:
    """Parse an API time value and return it as fixed-width RFC 3339 UTC."""
    return format_timestamp(parse_timestamp(value))


def to_unix_seconds(moment: dt.datetime) -> int:
    """Whole Unix seconds (floor) for an aware datetime."""
    delta = moment.astimezone(UTC) - EPOCH
    return delta.days * 86_400 + delta.seconds


def from_unix_seconds(seconds: int) -> dt.datetime:
    """The UTC datetime of whole Unix seconds."""
    return EPOCH + dt.timedelta(seconds=seconds)
