"""The private parts of singer-sdk the tap relies on, checked against the installed SDK.

Where the SDK offers no public hook, the tap overrides or uses a private member (each override
is marked ``@override``). If a new SDK renamed one, the tap would not fail: it would silently
fall back to the SDK's own behaviour (for the state writer, the race it exists to prevent).
These tests fail instead, naming the member, so that an SDK upgrade says what to re-check.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from singer_sdk import Stream, Tap
from singer_sdk.contrib.msgspec import MsgSpecWriter
from singer_sdk.helpers._state import StateWriter
from singer_sdk.plugin_base import PluginBase

from tap_deepconverse.streams import SDK_SYNC_FAILED
from tap_deepconverse.tap import TapDeepConverse
from tap_deepconverse.writers import AtomicStateWriter, RecordBatchingWriter

SDK_CLASSES = (Tap, Stream, StateWriter, MsgSpecWriter)
PACKAGE = Path(__file__).resolve().parents[1] / "tap_deepconverse"

# Each private SDK member the tap uses: where it lives, its parameters as the tap relies on
# them (None for an attribute), and why the tap touches it.
METHODS: dict[str, tuple[Any, str, str]] = {
    "_increment_stream_state": (
        Stream,
        "(self, latest_record, *, context=None)",
        "overridden to turn off per-record bookmarks: a window's end is the bookmark",
    ),
    "_write_state_message": (Stream, "(self)", "writes the STATE after each finished window"),
    "_write_record_message": (
        Stream,
        "(self, record)",
        "overridden: the SDK's record path without its walk of the selection (CPU)",
    ),
    "_handle_termination": (
        Tap,
        "(self, signum, frame)",
        "overridden: a stopped run writes its state and exits non-zero",
    ),
    "_validate_config": (
        PluginBase,
        "(self, *, raise_errors=True)",
        "overridden: cross-setting checks with messages that name the setting",
    ),
    "_reset_state_progress_markers": (Tap, "(self)", "called by the tap's own sync_all"),
}
ATTRIBUTES: dict[str, str] = {
    "_tap": "the stream's tap, through which its RECORD messages are written",
    "_stream_version": "the version of the stream's RECORD messages, as the SDK writes it",
    "_state_writer": "the tap's state writer, replaced by one that copies the state atomically",
    "_config": "the settings as given, validated by the tap's _validate_config",
    "_last_emitted_state": "read and set by AtomicStateWriter, as StateWriter does",
    "_message_writer": "StateWriter's writer, used by AtomicStateWriter",
}
CONFIG = {
    "api_key": "key",
    "bot_names": ["bot"],
    "start_date": "2025-01-01T00:00:00Z",
    "api_url": "http://127.0.0.1:9",
}


def private_sdk_names() -> set[str]:
    """The names ``_x`` the tap's modules use that the SDK's classes or objects also have."""
    used: set[str] = set()
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            name = getattr(node, "attr", None) or getattr(node, "name", None)
            if isinstance(name, str) and name.startswith("_") and not name.startswith("__"):
                used.add(name)
    tap = TapDeepConverse(config=CONFIG, parse_env_config=False)
    writer = MsgSpecWriter()
    sdk_objects: list[object] = [Tap, Stream, StateWriter, MsgSpecWriter, writer]
    sdk_objects.append(StateWriter(writer))
    found = {name for name in used if any(hasattr(o, name) for o in sdk_objects)}
    # Instance attributes the SDK's __init__ sets, which the tap's classes do not define.
    stream = tap.streams["messages"]
    for instance, own in ((tap, TapDeepConverse), (stream, type(stream))):
        found |= {name for name in used if name in vars(instance) and not hasattr(own, name)}
    return found


def bare_signature(member: Callable[..., Any]) -> str:
    """Parameter names, kinds and defaults, without annotations."""
    signature = inspect.signature(member)
    parameters = [
        p.replace(annotation=inspect.Parameter.empty) for p in signature.parameters.values()
    ]
    return str(signature.replace(parameters=parameters, return_annotation=inspect.Signature.empty))


def test_every_private_sdk_member_the_tap_uses_is_listed_here() -> None:
    listed = set(METHODS) | set(ATTRIBUTES)
    used = private_sdk_names()
    assert not used - listed, f"private SDK members used but not checked here: {used - listed}"
    assert not listed - used, f"listed here but no longer used by the tap: {listed - used}"


@pytest.mark.parametrize("name", sorted(METHODS))
def test_private_sdk_method_is_still_there_with_its_signature(name: str) -> None:
    owner, expected, why = METHODS[name]
    member = getattr(owner, name, None)
    assert member is not None, f"singer-sdk no longer has {owner.__name__}.{name} ({why})"
    assert bare_signature(member) == expected, (
        f"singer-sdk changed the signature of {owner.__name__}.{name} ({why})"
    )


def test_private_sdk_attributes_are_still_set_and_used() -> None:
    tap = TapDeepConverse(config=CONFIG, parse_env_config=False)
    for name in ("_state_writer", "_config"):
        assert name in vars(tap), f"singer-sdk no longer sets Tap.{name} ({ATTRIBUTES[name]})"
    # The SDK writes every STATE through the writer the tap put in place.
    assert isinstance(tap.state_writer, AtomicStateWriter), "Tap.state_writer is not _state_writer"
    assert isinstance(tap.message_writer, RecordBatchingWriter)
    stream = tap.streams["messages"]
    for name in ("_tap", "_stream_version"):
        assert name in vars(stream), f"singer-sdk no longer sets Stream.{name} ({ATTRIBUTES[name]})"
    writer = StateWriter(MsgSpecWriter())
    for name in ("_last_emitted_state", "_message_writer"):
        assert name in vars(writer), f"singer-sdk no longer sets StateWriter.{name}"


@pytest.mark.parametrize(
    ("caller", "call", "why"),
    [
        (Stream._sync_records, "self._increment_stream_state(", "per-record bookmarks"),
        (Stream._sync_records, "self._write_record_message(", "the record path"),
        (Stream._generate_record_messages, "version=self._stream_version", "RECORD version"),
        (Stream._write_state_message, "self._tap.state_writer.write_state(", "state writer"),
        (Stream.sync, SDK_SYNC_FAILED, "the ERROR line the tap leaves out for explained stops"),
        (Tap.sync_all, "self._reset_state_progress_markers()", "what the tap's sync_all repeats"),
        (Tap.invoke, "tap.sync_all()", "the tap's sync_all runs both streams at once"),
        (PluginBase._setup_signal_handlers, "self._handle_termination", "signals stop the run"),
        (PluginBase.__init__, "self._validate_config(", "settings checked at start"),
    ],
)
def test_the_sdk_still_calls_what_the_tap_overrides(
    caller: Callable[..., Any], call: str, why: str
) -> None:
    assert call in inspect.getsource(caller), (
        f"singer-sdk's {caller.__qualname__} no longer uses {call!r} ({why})"
    )


def test_every_override_of_the_sdk_is_marked() -> None:
    """A method of the tap's SDK subclasses that replaces one of the SDK carries @override."""
    unmarked = []
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ClassDef):
                continue
            for item in node.body:
                if not isinstance(item, ast.FunctionDef) or item.name.startswith("__"):
                    continue
                decorators = {ast.unparse(d) for d in item.decorator_list}
                replaces = any(hasattr(base, item.name) for base in SDK_CLASSES)
                if replaces and "override" not in decorators and _is_sdk_subclass(path, node.name):
                    unmarked.append(f"{path.name}: {node.name}.{item.name}")
    assert not unmarked, f"overrides without @override: {unmarked}"


def _is_sdk_subclass(path: Path, class_name: str) -> bool:
    found = getattr(importlib.import_module(f"tap_deepconverse.{path.stem}"), class_name)
    return isinstance(found, type) and issubclass(found, SDK_CLASSES)
