"""The per-record type check, from JSON schema to Python types."""

from __future__ import annotations

from typing import Any

from singer_sdk import typing as th

from tap_deepconverse.conformance import field_checks, misfits, python_types
from tap_deepconverse.streams import ConversationsStream, MessagesStream, any_json


def test_json_types_map_to_exact_python_types() -> None:
    assert python_types({"type": ["string", "null"]}) == {str, type(None)}
    assert python_types({"type": "integer"}) == {int}
    assert python_types({"type": ["number"]}) == {int, float}
    assert python_types({"type": ["boolean", "null"]}) == {bool, type(None)}
    # Says nothing, any value, or a type unknown here: not checked.
    assert python_types({}) is None
    assert python_types(any_json("x")) is None
    assert python_types({"type": ["string", "uuid"]}) is None


def checks_of(schema: dict[str, Any]) -> Any:
    properties = schema["properties"]
    return field_checks(properties, list(properties))


def test_a_record_of_the_declared_types_fits() -> None:
    checks = checks_of(ConversationsStream.schema)
    record = {
        "_id": "5c80416892d94e40a64cea7dc6406e25",
        "startTime": "2025-04-15T20:57:45.000000Z",
        "lastActionAt": "2025-04-15T20:58:00.000000Z",
        "locale": "en_us",
        "tags": ["resolved", "liveChat"],
        "metadata": {"__sys_channel": "web", "n": [1, {"a": None}]},
    }
    assert misfits(record, checks) is None
    assert misfits({"_id": "a", "tags": None, "locale": None}, checks) is None
    assert misfits({"_id": "a"}, checks) is None  # absent is not wrong


def test_values_of_another_type_are_named() -> None:
    checks = checks_of(ConversationsStream.schema)
    wrong = {"_id": "a", "tags": "resolved", "locale": 5, "metadata": "x"}
    assert sorted(misfits(wrong, checks) or []) == ["locale", "metadata", "tags"]
    assert misfits({"_id": "a", "tags": ["ok", 3]}, checks) == ["tags"]
    assert misfits({"_id": 7}, checks) == ["_id"]
    messages = checks_of(MessagesStream.schema)
    assert misfits({"_id": "a", "outMsg": {"x": [1]}, "userInput": 3.5}, messages) is None
    assert misfits({"_id": "a", "type": True}, messages) == ["type"]


def test_booleans_are_not_numbers_here() -> None:
    schema = th.PropertiesList(
        th.Property("n", th.IntegerType), th.Property("x", th.NumberType)
    ).to_dict()
    checks = checks_of(schema)
    assert misfits({"n": 3, "x": 2.5}, checks) is None
    assert misfits({"n": True, "x": 1}, checks) == ["n"]
    assert misfits({"n": 1.0, "x": False}, checks) == ["n", "x"]
