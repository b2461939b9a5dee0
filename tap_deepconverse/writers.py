"""The tap's Singer message writers, safe for both streams writing at once."""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Any

import msgspec
from singer_sdk.contrib.msgspec import MsgSpecWriter
from singer_sdk.helpers._state import StateWriter
from singer_sdk.helpers.types import TapState
from singer_sdk.singerlib import RecordMessage, StateMessage
from typing_extensions import override

LOGGER_NAME = "tap-deepconverse"


class RecordBatchingWriter(MsgSpecWriter):
    """msgspec writer that gathers RECORD lines and writes them in blocks, flushing at every
    other message: one write per block instead of one per record (stdout is often unbuffered,
    e.g. with PYTHONUNBUFFERED), while a STATE still goes out at once, after its records.

    Both streams write from their own threads: one lock orders every message, so a STATE
    always follows the records gathered before it."""

    BLOCK_BYTES = 64 * 1024

    def __init__(self) -> None:
        super().__init__()
        self._pending = bytearray()
        # Re-entrant: the signal handler writes the last STATE from whatever the main
        # thread was doing, a write included.
        self._lock = threading.RLock()
        self._closed = False

    @override
    def write_message(self, message: Any) -> None:
        with self._lock:
            if self._closed:
                return
            self._pending += self.format_message(message)
            if not isinstance(message, RecordMessage) or len(self._pending) >= self.BLOCK_BYTES:
                self.flush()

    def close(self) -> None:
        """Write what is gathered and nothing after: the last message of a stopped run must
        be its STATE, whatever the other stream's thread still hands over."""
        with self._lock:
            self.flush()
            self._closed = True

    def flush(self) -> None:
        with self._lock:
            try:
                if self._pending:
                    sys.stdout.buffer.write(self._pending)
                    self._pending.clear()
                sys.stdout.flush()
            except BrokenPipeError:
                self._pending.clear()
                # Later writes, Python's own flush at exit included, go nowhere.
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                logging.getLogger(LOGGER_NAME).error(  # noqa: TRY400 - one line
                    "The target closed its input (broken pipe): stopping. The last STATE "
                    "it read covers every window it loaded; rerun to go on from there."
                )
                raise SystemExit(1) from None


class AtomicStateWriter(StateWriter):
    """The SDK's state writer, made safe for two streams writing at once: the state is
    copied in one step (msgspec, which does not yield to other threads) instead of by
    ``deepcopy``, during which the other stream could change it."""

    @override
    def write_state(self, state: TapState) -> None:
        snapshot = msgspec.json.decode(msgspec.json.encode(state))
        if self._last_emitted_state is None or snapshot != self._last_emitted_state:
            self._message_writer.write_message(StateMessage(value=snapshot))
            self._last_emitted_state = snapshot
