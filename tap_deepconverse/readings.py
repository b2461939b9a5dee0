"""What one run learns about the Export API from its answers, shared by both streams.

The contract leaves open where the cursor is, how many records a page really holds and how
long a window the API answers completely. None of it is assumed: each is read off the
answers as they come, kept here for the run (one object per run, never module state), and
reported in one line at the end so that an operator sees what the tap went by.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping

from tap_deepconverse.windows import WindowLimit

DAY_SECONDS = 86_400
# Pages of fewer records are not taken for a server's cap on page size: a quiet window's
# page is as large as the largest served early in a run. Fewer when the answer holds a
# value in another field, where a cursor under another name would be; never one record.
SMALLEST_PAGE_CAP = 10
SMALLEST_PAGE_CAP_WITH_CURSOR_SIGN = 2


class EndpointReadings:
    """One endpoint's window lengths: the longest accepted (HTTP 400 above it), the longest
    shown to come back complete, and the length past which answers were found cut short."""

    def __init__(self, trusted: int, remembered: int, accepted: int) -> None:
        self.limit = WindowLimit(accepted)
        # Windows up to this long are taken as complete: window_hours (assumed), or what an
        # answer showed (a record that far into its window), in this run or an earlier one.
        self.complete = max(trusted, remembered)
        self.cut: int | None = None  # windows longer than this came back cut (status 200)

    def complete_length(self) -> int:
        """Windows up to this long are taken as complete; one the API accepted after
        refusing a longer one with HTTP 400 too: an API that refuses long windows does not
        also cut the ones it accepts."""
        accepted = self.limit.longest or 0
        return max(self.complete, accepted if self.cut is None else min(accepted, self.cut))

    def longest(self) -> int | None:
        """The longest window to ask for, once the API has shown a limit; else None."""
        limits = [n for n in (self.limit.longest, self.cut) if n is not None]
        return min(limits) if limits else None


class ApiReadings:
    """What the run has learnt about the API (one API, both endpoints). Thread-safe."""

    def __init__(
        self,
        *,
        trusted_window: int,
        accepted_window: int,
        remembered_windows: Mapping[str, int] | None = None,
    ) -> None:
        """``accepted_window``: windows up to this long are assumed accepted (a 400 for one
        is the request's fault); ``trusted_window``: ... and assumed answered completely."""
        self._lock = threading.Lock()
        self.probing = threading.Lock()  # held while a long window's check probes the API
        self._trusted = trusted_window
        self._accepted = accepted_window
        self._remembered = dict(remembered_windows or {})
        self._endpoints: dict[str, EndpointReadings] = {}
        self.cursor_key_seen = False  # an answer carried the 'cursor' key, null or not
        self.cursor_followed = False  # a page came with a cursor, and it was followed
        self.split_seen = False  # a full page came with no cursor to follow
        self.page_size_served = 0  # the most records seen in one page
        self._warned: set[str] = set()
        self._shown = 0  # the longest window an answer of this run was seen to reach
        self._cut: int | None = None

    def remember(self, windows: Mapping[str, int]) -> None:
        """What earlier runs showed complete, per endpoint (read from the state)."""
        with self._lock:
            self._remembered.update(windows)
            for name, seconds in windows.items():
                found = self._endpoints.get(name)
                if found is not None:
                    found.complete = max(found.complete, seconds)

    def _endpoint(self, name: str) -> EndpointReadings:
        """One endpoint's readings, made at first use. Holds the lock."""
        found = self._endpoints.get(name)
        if found is None:
            remembered = max(self._remembered.get(name, 0), self._shown)
            found = EndpointReadings(self._trusted, remembered, self._accepted)
            found.cut = self._cut
            if self._cut is not None:
                found.complete = min(found.complete, self._cut)
            self._endpoints[name] = found
        return found

    def complete_length(self, endpoint: str) -> int:
        """Windows of ``endpoint`` up to this long are taken as complete."""
        with self._lock:
            return self._endpoint(endpoint).complete_length()

    def longest(self, endpoint: str) -> int | None:
        """The longest window of ``endpoint`` to ask for, once the API has shown a limit."""
        with self._lock:
            return self._endpoint(endpoint).longest()

    def rejected(self, endpoint: str, length: int) -> bool:
        """The API rejected a window of ``length`` seconds with HTTP 400. True when that
        says the window is too long (it is longer than assumed accepted): halve it."""
        with self._lock:
            limit = self._endpoint(endpoint).limit
            if not limit.may_halve(length):
                return False
            limit.reject(length)
            return True

    def accepted(self, endpoint: str, length: int) -> bool:
        """The API accepted a window of ``length`` seconds. True exactly once per endpoint:
        when the limit learnt from a rejection is first reached, which is worth reporting."""
        with self._lock:
            return self._endpoint(endpoint).limit.accept(length)

    @property
    def paging_trusted(self) -> bool:
        """Whether the cursor can be relied on to say a window has more records."""
        return self.cursor_key_seen or self.cursor_followed

    def saw_page(self, count: int, *, cursor_key: bool, cursor: bool) -> None:
        with self._lock:
            self.page_size_served = max(self.page_size_served, count)
            self.cursor_key_seen = self.cursor_key_seen or cursor_key
            self.cursor_followed = self.cursor_followed or cursor

    def is_full(self, count: int, per_page: int, *, cursor_sign: bool = False) -> bool:
        """Whether a page of ``count`` records with no cursor may not be the last one: it
        holds ``per_page``, or, while no cursor's key has been seen, as many as the largest
        page the API has served (it may serve fewer than asked, and nothing would tell).
        ``cursor_sign``: another field of the answer holds a value. Once a cursor has been
        followed, its null is the end, however full the page."""
        if self.cursor_followed:
            return False
        if count >= per_page:
            return True
        if self.cursor_key_seen:
            return False
        smallest = SMALLEST_PAGE_CAP_WITH_CURSOR_SIGN if cursor_sign else SMALLEST_PAGE_CAP
        return count >= max(self.page_size_served, smallest)

    def note_split(self) -> None:
        with self._lock:
            self.split_seen = True

    def first_time(self, warning: str) -> bool:
        """True the first time the run reports ``warning`` (a key)."""
        with self._lock:
            first = warning not in self._warned
            self._warned.add(warning)
            return first

    def shown_complete(self, length: int) -> None:
        """An answer held a record ``length`` seconds into its window: the API answers
        windows at least that long completely (when it cuts, it keeps the first days). One
        API: what either endpoint shows holds for both."""
        with self._lock:
            self._shown = max(self._shown, length)
            for readings in self._endpoints.values():
                if readings.cut is None or length <= readings.cut:
                    readings.complete = max(readings.complete, length)

    def found_cut(self, length: int) -> None:
        """Windows longer than ``length`` came back cut: on either endpoint, windows are at
        most that long from now on (a cut on one endpoint makes the other's suspect)."""
        with self._lock:
            self._cut = length if self._cut is None else min(self._cut, length)
            for readings in self._endpoints.values():
                readings.cut = self._cut
                readings.complete = min(readings.complete, self._cut)

    def summary(self, endpoints: Iterable[str]) -> str:
        """One line: what the run went by."""
        if self.cursor_followed:
            cursor = "'cursor' followed"
        elif self.cursor_key_seen:
            cursor = "'cursor' present, never needed"
        else:
            cursor = "no cursor found (full pages split instead)" if self.split_seen else "unseen"
        parts = [f"cursor: {cursor}", f"largest page served: {self.page_size_served}"]
        for name in endpoints:
            longest = self.longest(name)
            limit = "none seen" if longest is None else length_text(longest)
            parts.append(
                f"{name}: windows shown complete up to "
                f"{length_text(self.complete_length(name))}, limit {limit}"
            )
        return "API readings: " + "; ".join(parts) + "."


def length_text(seconds: int) -> str:
    """A window length for people: days, or hours under a day."""
    if seconds >= DAY_SECONDS:
        return f"{seconds / DAY_SECONDS:.3g} days"
    return f"{seconds / 3600:.3g} hours"
