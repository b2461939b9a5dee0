"""The two export streams: what each endpoint is (its path, schema, times and query), and
how the SDK sees them (partitions by bot, bookmarks per bot in the state).

Each bot is a state partition. A run walks that bot's windows in order: their lengths are
planned as the data comes (``windows.WindowPlanner``, from the state), several are fetched at
once across bots (``fetching``, ``prefetch``), and the records come out window by window
(``extraction``). The bookmark moves to a window's end only once its records are out, so a
STATE message never claims a window whose records are not all out.
"""

from __future__ import annotations

import datetime
import logging
import math
import sys
from collections.abc import Iterable, Iterator
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from singer_sdk import Stream
from singer_sdk import typing as th
from singer_sdk.exceptions import AbortedSyncExceptionBase
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.helpers.types import Context
from singer_sdk.singerlib import RecordMessage
from typing_extensions import override

from tap_deepconverse.client import Counters, ExportClient, Page, WindowQueries
from tap_deepconverse.conversation_changes import STATE_KEY as CHANGES_STATE_KEY
from tap_deepconverse.conversation_changes import ConversationWatch, Note, seen_in
from tap_deepconverse.errors import DeepConverseError, RecordTooDeepError
from tap_deepconverse.extraction import Extraction, WindowDone, log_time
from tap_deepconverse.fetching import WindowFetcher, WindowJob, WindowSplit
from tap_deepconverse.prefetch import Pipeline
from tap_deepconverse.readings import DAY_SECONDS
from tap_deepconverse.records import BOT_FIELD, EXTRA_FIELD, RecordRules, RecordShaper
from tap_deepconverse.run import ExportRun
from tap_deepconverse.timestamps import (
    UTC,
    format_timestamp,
    from_unix_seconds,
    parse_timestamp,
    to_unix_seconds,
)
from tap_deepconverse.windows import Window, WindowPlanner, resume_from

if TYPE_CHECKING:
    from singer_sdk import Tap

# Beside each bot's bookmark: the longest window the API has shown to answer completely, so
# that later runs need not check it again.
COMPLETE_WINDOW_KEY = "complete_window_seconds"
# ... and how many records a day the bot's last window held, to size the next run's windows.
DENSITY_KEY = "records_per_day"

EXTRA_PROPERTY = th.Property(
    EXTRA_FIELD,
    th.ObjectType(),
    description=(
        "Top-level fields the API sent that this tap's schema does not declare yet, kept "
        "as they came so that no customer data is lost."
    ),
)
BOT_PROPERTY = th.Property(
    BOT_FIELD, th.StringType, required=True, description="The bot (name or id) exported."
)
# What the SDK logs at ERROR when a stream's sync raises (Stream.sync, singer-sdk 0.54).
SDK_SYNC_FAILED = "An unhandled error occurred while syncing '%s'"
# Errors that end a run with a line of their own: the SDK's line before it would add nothing.
EXPLAINED_STOPS = (DeepConverseError, AbortedSyncExceptionBase)


def any_json(description: str) -> dict[str, Any]:
    """Schema of a field that may hold any JSON value. Every type is listed rather than
    ``{}``, which some targets drop; SQL targets make such a column JSON (JSONB in Postgres)."""
    types = ["object", "array", "string", "number", "boolean", "null"]
    return {"type": types, "description": description}


def as_json_text(schema: dict[str, Any], fields: Iterable[str]) -> dict[str, Any]:
    """A copy of a stream schema in which `fields` are typed as JSON text (json_as_text)."""
    properties = dict(schema["properties"])
    for name in fields:
        description = properties[name].get("description", "")
        properties[name] = {
            "type": ["string", "null"],
            "description": f"{description} Emitted as JSON text (json_as_text).".strip(),
        }
    return {**schema, "properties": properties}


class ExportStream(Stream):
    """One Export API endpoint, exported window by window for each configured bot."""

    path: ClassVar[str]
    time_fields: ClassVar[frozenset[str]]
    primary_keys: ClassVar[tuple[str, ...]] = ("_id",)
    is_sorted = False
    # Fields that may hold any JSON value (see any_json).
    any_json_fields: ClassVar[tuple[str, ...]] = ()
    # Records are shaped to the run's schema before they are yielded (``records``): the
    # SDK's conformance pass would find nothing (see also _write_record_message).
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE

    def __init__(self, tap: Tap, run: ExportRun) -> None:
        super().__init__(tap)
        self.run = run

    @cached_property
    def json_text_fields(self) -> tuple[str, ...]:
        """The any-JSON fields written as JSON text, with json_as_text."""
        return self.any_json_fields if self.config.get("json_as_text") else ()

    @cached_property
    def counters(self) -> Counters:
        return Counters()

    @property
    @override
    def partitions(self) -> list[dict[str, Any]]:
        return [{"bot_name": bot} for bot in self.config["bot_names"]]

    @override
    def log(self, message: str, *args: Any, level: int = logging.INFO, **kwargs: Any) -> None:
        """The SDK's stream log, without the ERROR line the SDK writes when a sync raises an
        error this tap explains in a line of its own (or the abort that ends ``--test``)."""
        if message == SDK_SYNC_FAILED and isinstance(sys.exc_info()[1], EXPLAINED_STOPS):
            return
        super().log(message, *args, level=level, **kwargs)

    @override
    def generate_child_contexts(
        self,
        record: dict[str, Any],
        context: Context | None,
    ) -> Iterator[Context]:
        """No child streams: skip the SDK's per-record child bookkeeping."""
        return iter(())

    @override
    def get_replication_key_signpost(self, context: Context | None = None) -> None:
        """No signpost: the window plan already bounds what a run claims."""
        return

    @override
    def _increment_stream_state(
        self,
        latest_record: dict[str, Any],
        *,
        context: Context | None = None,
    ) -> None:
        """Progress is the end of the last finished window, not a per-record maximum (records
        arrive in no particular order), so the SDK's per-record bookkeeping is off."""

    # Planning

    def planner(self, context: Context) -> WindowPlanner:
        """The planner of one bot's windows for this run, from the state it started with.

        No window ends after the time the run started, whatever ``end_date`` says: a bookmark
        in the future would skip the records timed before it that reach the archive later.
        For the same reason a bookmark in the state that is later than that is not trusted
        (no run of this tap writes one: a clock was wrong, or the state was edited). How
        far the export it stands for really went is unknown, so the run starts again from
        ``start_date``: only that loses nothing, at the cost of exporting again what the
        target already has (it upserts on ``_id``)."""
        config = self.config
        start_date = to_unix_seconds(parse_timestamp(config["start_date"]))
        state = self.get_context_state(context)
        bookmark_text = state.get("replication_key_value")
        density = state.get(DENSITY_KEY)
        bookmark = to_unix_seconds(parse_timestamp(bookmark_text)) if bookmark_text else None
        if bookmark is not None and bookmark > self.run.started:
            self.logger.warning(
                "%s for bot '%s': the state's bookmark %s is later than this run's start (%s), "
                "which no run of this tap writes; not trusting it, the export starts again "
                "from start_date (%s) so that nothing is skipped.",
                self.name,
                context["bot_name"],
                bookmark_text,
                log_time(self.run.started),
                config["start_date"],
            )
            bookmark = None
        start = resume_from(start_date, bookmark, self.reread_seconds(context))
        return WindowPlanner(
            start,
            self.run_stop,
            first_length=int(config["window_hours"]) * 3600,
            longest=int(config["max_window_days"]) * DAY_SECONDS,
            density=float(density) / DAY_SECONDS if density is not None else None,
        )

    def reread_seconds(self, context: Context) -> int:  # noqa: ARG002 - a bot's, in subclasses
        """How far before its bookmark an incremental run starts: the lookback, for records
        that reached the archive late."""
        return int(self.config["lookback_minutes"]) * 60

    @cached_property
    def run_stop(self) -> int:
        """Where this run's windows end: ``end_date``, but never after the run's start."""
        end_date = self.config.get("end_date")
        if not end_date:
            return self.run.started
        stop = to_unix_seconds(parse_timestamp(end_date))
        if stop > self.run.started:
            self.logger.info(
                "%s: end_date %s is later than this run's start; the run stops at its start, "
                "%s, and a later run exports what reaches the archive after it.",
                self.name,
                end_date,
                log_time(self.run.started),
            )
            return self.run.started
        return stop

    def queries(self) -> WindowQueries:
        """How the endpoint is asked for a window."""
        return WindowQueries(self.name, int(self.config["page_size"]))

    # Extraction

    @cached_property
    def extraction(self) -> Extraction:
        """The stream's windows planned (every bot's state entry made), and its fetching and
        shaping wired, once per run. Made after the catalog was applied: the record rules
        follow the run's schema and selection."""
        config = self.config
        windows = self.run.plan(
            self.name, {c["bot_name"]: self.planner(c) for c in self.partitions}
        )
        client = ExportClient.from_settings(
            config,
            self.path,
            limiters=self.run.limiters,
            version=self.run.version,
            pool_size=int(config["max_parallel_windows"]),
            counters=self.counters,
            logger=self.logger,
        )
        fetcher = WindowFetcher(
            client=client,
            queries=self.queries(),
            source=windows,
            readings=self.run.readings,
            time_fields=sorted(self.time_fields),
            logger=self.logger,
        )
        pipeline: Pipeline[str, WindowJob, Page | WindowSplit] = Pipeline(
            windows,
            fetcher.window_pages,
            partition_of=_bot_of,
            size=_page_size,
            max_parallel=int(config["max_parallel_windows"]),
            budget=self.run.budget,
        )
        assert self.replication_key is not None
        shaper = RecordShaper(
            time_key=self.replication_key,
            time_fields=self.time_fields,
            json_text_fields=self.json_text_fields,
            rules=RecordRules.of(
                self.effective_schema["properties"],
                self.mask,
                unchecked={*self.time_fields, *self.json_text_fields},
            ),
        )
        return Extraction(
            stream_name=self.name,
            pipeline=pipeline,
            windows=windows,
            client=client,
            shaper=shaper,
            counters=self.counters,
            logger=self.logger,
        )

    def start_fetching(self) -> None:
        """Plan every bot and start fetching windows ahead."""
        self.extraction.pipeline.fill()

    def stop_fetching(self) -> None:
        """Stop the fetching threads, if fetching was started."""
        if "extraction" in self.__dict__:
            self.extraction.pipeline.close()

    @override
    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        assert context is not None  # always partitioned by bot
        bot_name = context["bot_name"]
        for item in self.extraction.bot_records(bot_name):
            if isinstance(item, WindowDone):
                self.finish_window(context, item.window)
                continue
            bounds, record = item
            self.observe(bot_name, bounds, record)
            yield record

    def observe(self, bot_name: str, bounds: tuple[int, int], record: dict[str, Any]) -> None:
        """A shaped record of ``bot_name`` returned for ``bounds`` (the ``start_time`` and
        ``end_time`` asked), about to be emitted."""

    @cached_property
    def deselected_fields(self) -> tuple[str, ...]:
        mask = self.mask
        return tuple(f for f in self.schema["properties"] if not mask[("properties", f)])

    @override
    def _write_record_message(self, record: dict[str, Any]) -> None:
        """The SDK's record path without its recursive walk of the selection, which costs a
        third of the tap's CPU per record (measured: 1.4x the CPU of a 90,000-record export
        with it): only top-level fields can be deselected here, nested objects being open
        JSON. The SDK's path stays correct should this override ever not be called."""
        for field in self.deselected_fields:
            record.pop(field, None)
        try:
            for stream_map in self.stream_maps:
                mapped = stream_map.transform(record)
                if mapped is not None:
                    self._tap.write_message(
                        RecordMessage(
                            stream=stream_map.stream_alias,
                            record=mapped,
                            version=self._stream_version,
                            time_extracted=datetime.datetime.now(UTC),
                        )
                    )
        except RecursionError:
            raise RecordTooDeepError(
                f"A record of {self.name} is nested too deep to be written; stopping. "
                "Please report the answer's shape."
            ) from None
        self.state_manager.is_flushed = False

    def finish_window(self, context: Context, window: Window) -> None:
        """Every record of ``window`` is out: move the bot's bookmark to its end and emit it
        as a STATE message."""
        state = self.get_context_state(context)
        state["replication_key"] = self.replication_key
        state["replication_key_value"] = format_timestamp(from_unix_seconds(window.end))
        state[COMPLETE_WINDOW_KEY] = self.run.readings.complete_length(self.name)
        density = self.run.windows[self.name].density(context["bot_name"], window)
        if density is not None:
            # A whole number: loaders read the state back with Decimal and some (SDK targets)
            # cannot write a Decimal out again.
            state[DENSITY_KEY] = math.ceil(density * DAY_SECONDS)
        self.state_manager.is_flushed = False
        self._write_state_message()

    @override
    def log_sync_costs(self) -> None:
        """End-of-run summary of the stream."""
        figures = self.counters
        if figures.requests:
            self.logger.info(
                "Summary of %s: %d records, %d windows, %d pages, %d requests, %d retries, "
                "%d duplicates dropped, %d odd records skipped, %.1fs.",
                self.name,
                figures.records,
                figures.windows,
                figures.pages,
                figures.requests,
                figures.retries,
                figures.duplicates,
                figures.odd_records,
                figures.finished - figures.started,
            )
        super().log_sync_costs()


class ConversationsStream(ExportStream):
    """Chatbot conversations."""

    name = "conversations"
    path = "/conversations/export/v1/conversations"
    # A conversation's last action time is its version: a target keeping the latest copy of
    # an `_id` wants it, and progress is tracked per window whichever field the API filters on.
    replication_key = "lastActionAt"
    time_fields = frozenset({"startTime", "lastActionAt"})
    schema = th.PropertiesList(
        th.Property("_id", th.StringType, required=True, description="Conversation id (32 hex)."),
        BOT_PROPERTY,
        th.Property("startTime", th.DateTimeType, description="When the conversation started."),
        th.Property(
            "lastActionAt", th.DateTimeType, required=True, description="Time of the last update."
        ),
        th.Property("locale", th.StringType, description="Locale, e.g. en_us."),
        th.Property(
            "tags", th.ArrayType(th.StringType), description="e.g. resolved, informed, liveChat."
        ),
        th.Property(
            "metadata",
            th.ObjectType(),
            description="System parameters (__sys_*) and the bot's custom parameters, any JSON.",
        ),
        EXTRA_PROPERTY,
    ).to_dict()

    # Conversations that change after they are exported: see conversation_changes.

    @cached_property
    def watch(self) -> ConversationWatch:
        """What each bot's conversations showed, from the state the run started with."""
        return self.run.watch_conversations(
            {c["bot_name"]: seen_in(self.get_context_state(c)) for c in self.partitions},
            setting_days=self.config.get("conversation_reread_days"),
        )

    @override
    def reread_seconds(self, context: Context) -> int:
        """The lookback, plus the conversations that may have changed since their export."""
        lookback = super().reread_seconds(context)
        bookmark = self.get_context_state(context).get("replication_key_value")
        if bookmark is None:
            return lookback  # a first run reads everything anyway
        bookmark_seconds = to_unix_seconds(parse_timestamp(bookmark))
        reread, notes = self.watch.plan(context["bot_name"], lookback, bookmark_seconds)
        self.log_notes(notes)
        return reread

    @override
    def observe(self, bot_name: str, bounds: tuple[int, int], record: dict[str, Any]) -> None:
        self.watch.observe(bot_name, bounds, record.get("startTime"), record["lastActionAt"])

    @override
    def finish_window(self, context: Context, window: Window) -> None:
        """What the window's conversations showed goes into the state with its bookmark."""
        self.watch.window_done(context["bot_name"], window.start)
        seen = self.watch.seen(context["bot_name"])
        self.get_context_state(context)[CHANGES_STATE_KEY] = seen.to_state()
        super().finish_window(context, window)

    @override
    def log_sync_costs(self) -> None:
        self.log_notes(self.watch.notes())
        super().log_sync_costs()

    def log_notes(self, notes: list[Note]) -> None:
        for note in notes:
            (self.logger.warning if note.warning else self.logger.info)("%s", note.text)


class MessagesStream(ExportStream):
    """Messages of the conversations, from the user, the bot or an agent."""

    name = "messages"
    path = "/conversations/export/v1/messages"
    replication_key = "time"
    time_fields = frozenset({"time"})
    schema = th.PropertiesList(
        th.Property("_id", th.StringType, required=True, description="Message id."),
        BOT_PROPERTY,
        th.Property("time", th.DateTimeType, required=True, description="When it was sent."),
        th.Property("conversationId", th.StringType, description="The conversation's _id."),
        th.Property("type", th.StringType, description="e.g. UserInput."),
        th.Property(
            "userActionType", th.StringType, description="How the user answered (UserInput only)."
        ),
        EXTRA_PROPERTY,
    ).to_dict()
    schema["properties"].update(
        {
            "outMsg": any_json("The bot's message data, any JSON."),
            "userInput": any_json(
                "What the user typed, picked as quick reply, or filled in a form; any JSON."
            ),
        }
    )
    any_json_fields = ("outMsg", "userInput")

    def __init__(self, tap: Tap, run: ExportRun) -> None:
        super().__init__(tap, run)
        if self.json_text_fields:
            # This run's schema, so that discovery, the catalog and SCHEMA messages agree
            # with the records; the class attribute keeps the any-JSON typing.
            self.schema = as_json_text(type(self).schema, self.json_text_fields)

    @override
    def queries(self) -> WindowQueries:
        """With ``conversation_ids`` set, one query per conversation in each window."""
        conversation_ids: list[str] = self.config.get("conversation_ids") or []
        return WindowQueries(self.name, int(self.config["page_size"]), tuple(conversation_ids))


def _bot_of(job: WindowJob) -> str:
    return job.bot


def _page_size(item: Page | WindowSplit) -> int:
    return item.size if isinstance(item, Page) else 0


STREAM_TYPES: tuple[type[ExportStream], ...] = (ConversationsStream, MessagesStream)
