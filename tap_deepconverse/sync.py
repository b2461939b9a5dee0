"""Both endpoints at once: each selected stream syncs in its own thread.

The API gives each endpoint its own budget of requests per second, so exporting
conversations and then messages takes the sum of two endpoints' times where the busier one
alone would do. Singer lets records of different streams interleave, and that is what is
used here: both streams fetch and write at the same time, each under its own limiter.

Why not keep the SDK's one stream at a time and hold the other stream's pages aside? The
pages held aside would be the whole of one endpoint's export by the time its turn came: on
disk for a long backfill, gigabytes, and lost on a crash. Interleaving holds nothing aside:
memory stays within the run's byte budget (see ``prefetch``), and each stream's progress is
written as it is made. What keeps it correct:
- one lock orders every message (``tap.RecordBatchingWriter``), and a STATE flushes the
  records gathered before it;
- a stream moves its bookmark only after the window's records went to the writer, so a
  STATE written by either stream never claims a window whose records are not out;
- the state is copied in one step when written (``tap.AtomicStateWriter``), and every bot's
  bookmark entry exists before the threads start (the windows are planned here).
Both pipelines start fetching here, before either stream writes a record.
A run that selects one stream syncs it in the calling thread, as the SDK would.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Sequence

from tap_deepconverse.streams import ExportStream

_JOIN_POLL_SECONDS = 0.2
# glibc's mallopt parameters
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
MALLOC_ARENAS = 2
MMAP_THRESHOLD_BYTES = 128 * 1024


def tune_malloc() -> None:
    """Keep glibc's malloc from holding memory the run has freed (elsewhere than glibc there
    is nothing to do). Both settings were measured on the benchmark's memory export:
    - at most two arenas: glibc gives threads that allocate at once arenas of their own, up
      to eight per core; with a thread per window in flight, memory freed in one arena is
      not reused by the others, and the process grows with the threads;
    - blocks of 128 KiB and more (answers being read, pages) mapped on their own, so that
      freeing one gives it back. glibc raises that threshold as large blocks are freed,
      which keeps later answers in the heap: peak RSS was some 7 MiB higher at page size
      1000, for some 3% less CPU."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_ARENA_MAX, MALLOC_ARENAS)
    mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)  # fixed: no longer raised as blocks go


def _sync(stream: ExportStream) -> None:
    stream.sync()
    stream.finalize_state_progress_markers()


def sync_streams(streams: Sequence[ExportStream]) -> None:
    """Sync the streams at once; the first error of any of them is raised here."""
    tune_malloc()  # before any fetching thread starts
    for stream in streams:
        # Plans every bot (creating its bookmark entry) and starts fetching, in this thread.
        stream.start_fetching()
    if len(streams) <= 1:
        for stream in streams:
            _sync(stream)
        return
    errors: list[BaseException] = []

    def run(stream: ExportStream) -> None:
        try:
            _sync(stream)
        except BaseException as exc:  # re-raised in the calling thread
            errors.append(exc)

    # Daemon: a stream still fetching must not keep a failed or stopped run alive.
    threads = [
        threading.Thread(target=run, args=(s,), name=f"sync-{s.name}", daemon=True) for s in streams
    ]
    for thread in threads:
        thread.start()
    # Joined with a timeout so that this thread stays free to handle SIGTERM and SIGINT.
    while not errors and any(thread.is_alive() for thread in threads):
        for thread in threads:
            thread.join(_JOIN_POLL_SECONDS)
    if errors:
        raise errors[0]
