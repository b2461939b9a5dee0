"""What a record may hold under the SCHEMA the tap sent: checked per record, so kept cheap.

The rules come from the run's schema (the catalog's, when one is given) once per run: which
top-level fields are declared, and for each the Python types (as JSON is decoded) its JSON
schema allows. A record is then checked with a dictionary lookup and a type test per field.
Nested objects are open JSON and are not walked; an array's items are checked one level down.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
    "null": (type(None),),
}
_ANY = frozenset(kind for kinds in _JSON_TYPES.values() for kind in kinds)


def python_types(schema: Mapping[str, Any]) -> frozenset[type] | None:
    """The exact Python types a JSON schema allows (``bool`` is not an integer here), or None
    when it allows any value or says too little to check (no ``type``, an unknown one)."""
    declared = schema.get("type")
    if declared is None:
        return None
    names = [declared] if isinstance(declared, str) else list(declared)
    if any(name not in _JSON_TYPES for name in names):
        return None
    allowed = frozenset(kind for name in names for kind in _JSON_TYPES[name])
    return None if allowed == _ANY else allowed


class FieldCheck(NamedTuple):
    """The types one top-level field may hold, and those of its items if it is an array."""

    name: str
    types: frozenset[type]
    item_types: frozenset[type] | None


def field_checks(properties: Mapping[str, Any], names: Iterable[str]) -> tuple[FieldCheck, ...]:
    """The checks of the named fields, leaving out fields that may hold anything."""
    checks: list[FieldCheck] = []
    for name in names:
        schema = properties[name]
        types = python_types(schema)
        if types is None:
            continue
        items = schema.get("items")
        item_types = python_types(items) if list in types and isinstance(items, dict) else None
        checks.append(FieldCheck(name, types, item_types))
    return tuple(checks)


_ABSENT = object()  # a field the record does not have (no field value is this object)


def misfits(record: Mapping[str, object], checks: tuple[FieldCheck, ...]) -> list[str] | None:
    """The checked fields of ``record`` whose value the schema does not allow, or None.
    Runs for every record: one lookup and one type test per field in the common case."""
    found: list[str] | None = None
    for name, types, item_types in checks:
        value = record.get(name, _ABSENT)
        if type(value) in types:
            if (
                item_types is None
                or type(value) is not list
                or item_types.issuperset(map(type, value))
            ):
                continue
        elif value is _ABSENT:
            continue
        if found is None:
            found = []
        found.append(name)
    return found
