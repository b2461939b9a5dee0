"""A page's records made to fit one stream's schema for the run, and the warnings a window's
records call for. No I/O besides the log.

A record keeps what the API sent: times become RFC 3339 UTC; top-level fields the schema does
not declare, and values of a type it does not allow, move to ``_extra`` (dropped and counted
when ``_extra`` is not selected); records without an ``_id`` or a readable time are skipped
and counted. Of several copies of an ``_id`` in one page, the newest by the stream's time is
kept.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import msgspec

from tap_deepconverse.conformance import FieldCheck, field_checks, misfits
from tap_deepconverse.timestamps import TimestampError, normalize_timestamp

EXTRA_FIELD = "_extra"
BOT_FIELD = "bot_name"

_JSON_ENCODER = msgspec.json.Encoder()


def json_text(value: object) -> str:
    """Compact JSON text of a value, with non-ASCII characters kept as they are."""
    return _JSON_ENCODER.encode(value).decode()


class RecordRules(NamedTuple):
    """What a record may hold under the run's schema."""

    declared: frozenset[str]  # top-level fields besides _extra and bot_name
    keeps_extra: bool  # whether _extra is in the schema and selected
    checks: tuple[FieldCheck, ...]  # types of the selected fields that are checked

    @classmethod
    def of(
        cls,
        properties: Mapping[str, Any],
        selected: Mapping[tuple[str, ...], bool],
        unchecked: Iterable[str],
    ) -> RecordRules:
        """The rules of a schema's ``properties`` (the catalog's, if one was given), with
        its selection; fields in ``unchecked`` are not type-checked (times, JSON text)."""
        declared = frozenset(properties) - {EXTRA_FIELD, BOT_FIELD}
        skip = {"_id", *unchecked}
        checked = [
            name
            for name in properties
            if name in declared
            and name not in skip
            and selected.get(("properties", name), True)  # deselected fields go anyway
        ]
        return cls(
            declared=declared,
            keeps_extra=EXTRA_FIELD in properties
            and selected.get(("properties", EXTRA_FIELD), True),
            checks=field_checks(properties, checked),
        )


class WindowTally:
    """What one window brought, for its summary and warnings."""

    def __init__(self) -> None:
        self.pages = 0
        self.emitted = 0
        self.odd = 0
        self.duplicates = 0  # copies as old as one kept (a record fetched twice at an edge)
        self.older = 0  # copies older than one kept, dropped
        self.renewed = 0  # newer copies emitted after an older one
        self.repaired = 0  # invalid UTF-8 sequences replaced
        self.misfits: Counter[str] = Counter()  # values of a type the schema does not allow
        self.undeclared: Counter[str] = Counter()  # undeclared fields dropped


class RecordShaper:
    """Shapes one stream's records for the run's schema."""

    def __init__(
        self,
        *,
        time_key: str,
        time_fields: frozenset[str],
        json_text_fields: tuple[str, ...],
        rules: RecordRules,
    ) -> None:
        self.time_key = time_key  # the stream's time, by which copies of a record are told apart
        self.time_fields = time_fields
        self.json_text_fields = json_text_fields
        self.rules = rules

    def page_records(self, items: list[object], tally: WindowTally) -> list[dict[str, Any]]:
        """A page's records, shaped, without the odd ones, and with one copy of each ``_id``:
        the newest by the stream's time (the first of equals)."""
        shaped = [self.shape(raw, tally) for raw in items]
        records = [record for record in shaped if record is not None]
        tally.odd += len(shaped) - len(records)
        if len({record["_id"] for record in records}) == len(records):
            return records
        time_key = self.time_key
        newest: dict[str, dict[str, Any]] = {}
        for record in records:
            kept = newest.get(record["_id"])
            if kept is None or record[time_key] > kept[time_key]:
                newest[record["_id"]] = record  # keeps the place of the first copy
            if kept is not None:
                if record[time_key] == kept[time_key]:
                    tally.duplicates += 1
                else:
                    tally.older += 1
        return list(newest.values())

    def shape(self, raw: object, tally: WindowTally) -> dict[str, Any] | None:
        """The record as the API sent it, made to fit the schema; None for a record that
        cannot be keyed or placed in time."""
        if not isinstance(raw, dict):
            return None
        record_id = raw.get("_id")
        if not isinstance(record_id, str) or not record_id:
            return None
        if raw.get(self.time_key) is None:
            return None
        # In place: the page's dicts are ours, and this runs for every record.
        for key in self.time_fields:
            value = raw.get(key)
            if value is not None:
                try:
                    raw[key] = normalize_timestamp(value)
                except TimestampError:
                    return None
        rules = self.rules
        unknown = raw.keys() - rules.declared
        if unknown:
            moved = {key: raw.pop(key) for key in sorted(unknown)}
            if rules.keeps_extra:
                raw[EXTRA_FIELD] = moved
            else:
                tally.undeclared.update(moved.keys())
        wrong = misfits(raw, rules.checks)
        if wrong:
            for name in wrong:
                value = raw.pop(name)
                if rules.keeps_extra:
                    raw.setdefault(EXTRA_FIELD, {})[name] = value
            tally.misfits.update(wrong)
        for key in self.json_text_fields:
            value = raw.get(key)
            if value is not None:
                raw[key] = json_text(value)
        return raw

    def report(self, where: str, tally: WindowTally, logger: logging.Logger) -> None:
        """One warning per window for each thing the API sent that had to be mended."""
        if tally.odd:
            logger.warning(
                "%s: skipped %d record(s) without an '_id' or with an unreadable %s.",
                where,
                tally.odd,
                " or ".join(sorted(self.time_fields)),
            )
        if tally.older or tally.renewed:
            logger.warning(
                "%s: the API sent records more than once with a different %s; the newest copy "
                "of each is kept (%d older copies dropped, %d newer copies emitted after an "
                "older one, which they replace).",
                where,
                self.time_key,
                tally.older,
                tally.renewed,
            )
        if tally.misfits:
            logger.warning(
                "%s: %d value(s) of a type the schema does not allow %s: %s.",
                where,
                sum(tally.misfits.values()),
                "moved to _extra" if self.rules.keeps_extra else "dropped (_extra not selected)",
                _counts(tally.misfits),
            )
        if tally.undeclared:
            logger.warning(
                "%s: %d value(s) of fields the catalog does not declare dropped, as it does not "
                "select _extra: %s.",
                where,
                sum(tally.undeclared.values()),
                _counts(tally.undeclared),
            )
        if tally.repaired:
            logger.warning(
                "%s: %d invalid UTF-8 sequence(s) in strings replaced with U+FFFD.",
                where,
                tally.repaired,
            )


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{name} ({count})" for name, count in counter.most_common())
