"""What one run of the tap shares and learns: one object per tap instance, handed to both
streams. Nothing of a run lives in module state, so two taps in one process (or two tests
in one pytest process) share nothing."""

from __future__ import annotations

from tap_deepconverse.client import Limiters
from tap_deepconverse.conversation_changes import ConversationWatch, Seen
from tap_deepconverse.fetching import WindowSource
from tap_deepconverse.prefetch import ByteBudget
from tap_deepconverse.readings import ApiReadings
from tap_deepconverse.windows import WindowPlanner

# Fetched pages waiting to be written, across both streams: the tap's memory beyond this is
# about one page per window in flight.
BUFFER_BUDGET_BYTES = 16 * 1024 * 1024


class ExportRun:
    """When the run started and the tap's version, the run's rate limiters (one per
    endpoint), its byte budget for pages waiting to be written, what it learns about the API,
    each stream's window planners, and what the conversations show of the field their window
    filters on."""

    def __init__(self, *, started: int, version: str, readings: ApiReadings) -> None:
        self.started = started  # Unix seconds: no window of the run ends later
        self.version = version
        self.readings = readings
        self.limiters = Limiters()
        self.budget = ByteBudget(BUFFER_BUDGET_BYTES)
        self.windows: dict[str, WindowSource] = {}
        self.conversations: ConversationWatch | None = None

    def plan(self, endpoint: str, planners: dict[str, WindowPlanner]) -> WindowSource:
        """The windows of ``endpoint`` for this run, one planner per bot."""
        source = WindowSource(planners, self.readings, endpoint)
        self.windows[endpoint] = source
        return source

    def watch_conversations(
        self, seen: dict[str, Seen], setting_days: int | None
    ) -> ConversationWatch:
        """What each bot's conversations show, from what earlier runs saw (``seen``)."""
        self.conversations = ConversationWatch(seen, setting_days=setting_days)
        return self.conversations
