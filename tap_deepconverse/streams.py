"""The two export streams, and the window-by-window extraction they share.

Each bot is a state partition. A run walks that bot's windows in order: their lengths are
planned as the data comes (``windows.WindowPlanner``), several are fetched at once
(``max_parallel_windows``, across bots), and each is fetched completely whatever the API
does with its cursor (``fetching``). Records and the bookmark after each window still come
out in window order, so a STATE message never claims a window whose records are not all out.
"""

from __future__ import annotations

import datetime
import logging
import math
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import msgspec
from singer_sdk import Stream
from singer_sdk import typing as th
from singer_sdk.exceptions import AbortedSyncExceptionBase
from singer_sdk.helpers.types import Context
from singer_sdk.singerlib import RecordMessage

from tap_deepconverse.client import Counters, ExportClient, Page, Query
from tap_deepconverse.conformance import FieldCheck, field_checks, misfits
from tap_deepconverse.conversation_changes import STATE_KEY as CHANGES_STATE_KEY
from tap_deepconverse.conversation_changes import ConversationWatch, Note, seen_in
from tap_deepconverse.errors import DeepConverseError, RecordTooDeepError
from tap_deepconverse.fetching import WindowFetcher, WindowJob, WindowSource, WindowSplit
from tap_deepconverse.prefetch import ByteBudget, Pipeline
from tap_deepconverse.readings import DAY_SECONDS, ApiReadings
from tap_deepconverse.timestamps import (
    EPOCH,
    TimestampError,
    format_timestamp,
    from_unix_seconds,
    normalize_timestamp,
    parse_timestamp,
    to_unix_seconds,
)
from tap_deepconverse.windows import RecentIds, Window, WindowPlanner, resume_from

if TYPE_CHECKING:
    from singer_sdk import Tap

EXTRA_FIELD = "_extra"
# Beside each bot's bookmark: the longest window the API has shown to answer completely, so
# that later runs need not check it again.
COMPLETE_WINDOW_KEY = "complete_window_seconds"
# ... and how many records a day the bot's last window held, to size the next run's windows.
DENSITY_KEY = "records_per_day"
# Fetched pages waiting to be written, across both streams: the tap's memory beyond this is
# about one page per window in flight.
BUFFER_BUDGET_BYTES = 16 * 1024 * 1024


class RunShared:
    """What the streams of one run share: what it learns about the API, and one budget of
    bytes for the pages waiting to be written."""

    def __init__(self, readings: ApiReadings) -> None:
        self.readings = readings
        self.budget = ByteBudget(BUFFER_BUDGET_BYTES)


EXTRA_PROPERTY = th.Property(
    EXTRA_FIELD,
    th.ObjectType(),
    description=(
        "Top-level fields the API sent that this tap's schema does not declare yet, kept "
        "as they came so that no customer data is lost."
    ),
)
BOT_PROPERTY = th.Property(
    "bot_name", th.StringType, required=True, description="The bot (name or id) exported."
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


_JSON_ENCODER = msgspec.json.Encoder()


def json_text(value: object) -> str:
    """Compact JSON text of a value, with non-ASCII characters kept as they are."""
    return _JSON_ENCODER.encode(value).decode()


class ExportStream(Stream):
    """One Export API endpoint, exported window by window for each configured bot."""

    path: ClassVar[str]
    time_fields: ClassVar[frozenset[str]]
    primary_keys: ClassVar[tuple[str, ...]] = ("_id",)
    is_sorted = False
    # Fields that may hold any JSON value (see any_json).
    any_json_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, tap: Tap, shared: RunShared) -> None:
        super().__init__(tap)
        self.shared = shared

    @cached_property
    def json_text_fields(self) -> tuple[str, ...]:
        """The fields `shape` turns into JSON text: the any-JSON ones with json_as_text."""
        return self.any_json_fields if self.config.get("json_as_text") else ()

    @cached_property
    def counters(self) -> Counters:
        return Counters()

    @cached_property
    def time_key(self) -> str:
        """The stream's time, by which copies of a record are told apart: its replication key."""
        assert self.replication_key is not None
        return self.replication_key

    @cached_property
    def rules(self) -> RecordRules:
        """What records may hold, from this run's schema (the catalog's, if one was given):
        made at the first record, after the catalog was applied."""
        properties: dict[str, Any] = self.effective_schema["properties"]
        mask = self.mask
        declared = frozenset(properties) - {EXTRA_FIELD, "bot_name"}
        checked = [
            name
            for name in properties
            if name in declared
            and name != "_id"
            and name not in self.time_fields
            and name not in self.json_text_fields
            and mask.get(("properties", name), True)  # deselected fields are dropped anyway
        ]
        return RecordRules(
            declared=declared,
            keeps_extra=EXTRA_FIELD in properties and mask.get(("properties", EXTRA_FIELD), True),
            checks=field_checks(properties, checked),
        )

    def log(self, message: str, *args: Any, level: int = logging.INFO, **kwargs: Any) -> None:  # noqa: ANN401 - the SDK's
        """The SDK's stream log, without the ERROR line the SDK writes when a sync raises an
        error this tap explains in a line of its own (or the abort that ends ``--test``)."""
        if message == SDK_SYNC_FAILED and isinstance(sys.exc_info()[1], EXPLAINED_STOPS):
            return
        super().log(message, *args, level=level, **kwargs)

    @cached_property
    def client(self) -> ExportClient:
        return ExportClient.from_settings(
            self.config,
            self.path,
            version=self._tap.plugin_version,
            pool_size=int(self.config["max_parallel_windows"]),
            counters=self.counters,
            logger=self.logger,
        )

    @property
    def partitions(self) -> list[dict[str, Any]]:
        return [{"bot_name": bot} for bot in self.config["bot_names"]]

    page_fetched_at: datetime.datetime = EPOCH  # time_extracted of the records being emitted
    current_window: Window = Window(0, 1)  # the window whose records are being emitted

    def generate_child_contexts(
        self,
        record: dict[str, Any],  # noqa: ARG002
        context: Context | None,  # noqa: ARG002
    ) -> Iterator[Context]:
        """No child streams: skip the SDK's per-record child bookkeeping."""
        return iter(())

    def get_replication_key_signpost(self, context: Context | None = None) -> None:  # noqa: ARG002
        """No signpost: the window plan already bounds what a run claims."""
        return

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
        if bookmark is not None and bookmark > self.run_started:
            self.logger.warning(
                "%s for bot '%s': the state's bookmark %s is later than this run's start (%s), "
                "which no run of this tap writes; not trusting it, the export starts again "
                "from start_date (%s) so that nothing is skipped.",
                self.name,
                context["bot_name"],
                bookmark_text,
                _log_time(self.run_started),
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
    def run_started(self) -> int:
        """The time the run started (Unix seconds), the same for both streams."""
        return self._initialized_at // 1000

    @cached_property
    def run_stop(self) -> int:
        """Where this run's windows end: ``end_date``, but never after the run's start."""
        end_date = self.config.get("end_date")
        if not end_date:
            return self.run_started
        stop = to_unix_seconds(parse_timestamp(end_date))
        if stop > self.run_started:
            self.logger.info(
                "%s: end_date %s is later than this run's start; the run stops at its start, "
                "%s, and a later run exports what reaches the archive after it.",
                self.name,
                end_date,
                _log_time(self.run_started),
            )
            return self.run_started
        return stop

    @cached_property
    def windows(self) -> WindowSource:
        """Every bot's planner, made once per run."""
        planners = {context["bot_name"]: self.planner(context) for context in self.partitions}
        return WindowSource(planners, self.shared.readings, self.name)

    @cached_property
    def fetcher(self) -> WindowFetcher:
        return WindowFetcher(
            stream_name=self.name,
            client=self.client,
            queries=self.queries,
            source=self.windows,
            readings=self.shared.readings,
            time_fields=sorted(self.time_fields),
            per_page=int(self.config["page_size"]),
            counters=self.counters,
            logger=self.logger,
        )

    @cached_property
    def pipeline(self) -> Pipeline[str, WindowJob, Page | WindowSplit]:
        """Windows fetched ahead across bots; started on first use, closed after the sync."""
        pipeline: Pipeline[str, WindowJob, Page | WindowSplit] = Pipeline(
            self.windows,
            self.fetcher.window_pages,
            size=_page_size,
            max_parallel=int(self.config["max_parallel_windows"]),
            budget=self.shared.budget,
        )
        pipeline.fill()
        return pipeline

    def query(self, bot_name: str, window: Window, **extra: str) -> Query:
        """The paged query of one window (or piece of one)."""
        start_time, end_time = window.request_bounds
        params: dict[str, str | int] = {
            "bot_name": bot_name,
            "start_time": start_time,
            "end_time": end_time,
            "per_page": int(self.config["page_size"]),
            **extra,
        }
        return Query(self.name, bot_name, params, window)

    def queries(self, bot_name: str, window: Window) -> list[Query]:
        """The paged queries that together return one window."""
        return [self.query(bot_name, window)]

    # Extraction

    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        assert context is not None  # always partitioned by bot
        bot_name = context["bot_name"]
        planner = self.windows.planners[bot_name]
        first, stop = planner.start, planner.stop
        if first >= stop:
            self.logger.info("%s for bot '%s': already up to date.", self.name, bot_name)
            return
        self.logger.info(
            "%s for bot '%s': from %s to %s, in windows sized to the data.",
            self.name,
            bot_name,
            _log_time(first),
            _log_time(stop),
        )
        recent = RecentIds()
        time_key = self.time_key
        release_at: int | None = None  # where the pieces of a window cut mid-chain end
        started = last = time.monotonic()
        for job, pages in self.pipeline.partition(bot_name):
            window = job.window
            self.current_window = window
            tally = WindowTally()
            split: WindowSplit | None = None
            for page in pages:
                if isinstance(page, WindowSplit):
                    split = page
                    continue
                if not tally.pages:
                    # Ids of the range before this window's: a window replaced whole by
                    # pieces has none of its own, and its first piece borders that range.
                    recent.next_window()
                tally.pages += 1
                self.page_fetched_at = page.fetched_at
                for record in self.page_records(page, tally):
                    seen = recent.add(record["_id"], record[time_key])
                    if seen > 0:
                        tally.emitted += 1
                        tally.renewed += seen == RecentIds.NEWER
                        self.observe(bot_name, window, record)
                        yield record
                    elif seen == RecentIds.SAME:
                        tally.duplicates += 1
                    else:
                        tally.older += 1
            self.counters.add(
                records=tally.emitted,
                duplicates=tally.duplicates + tally.older,
                odd_records=tally.odd,
                windows=1,
            )
            self.report_window(bot_name, window, tally)
            if release_at is not None and window.end >= release_at:
                recent.release()
                release_at = None
            if split is not None:
                if tally.pages:
                    recent.hold()
                    release_at = max(job.window.end for job in split.jobs)
                # The pieces cover the rest: the bookmark moves only as they are written.
                if split.done_until > window.start:
                    self.finish_window(context, Window(window.start, split.done_until))
                self.logger.debug(
                    "%s for bot '%s', window %s fetched as %d pieces from %s.",
                    self.name,
                    bot_name,
                    _window_text(window),
                    len(split.jobs),
                    _log_time(split.done_until),
                )
                continue
            self.finish_window(context, window)
            now = time.monotonic()
            done = (window.end - first) / (stop - first)
            self.logger.info(
                "%s for bot '%s', window %s done: %d records, %d pages, %.1fs; "
                "%.0f%% of the bot's range, about %s to go.",
                self.name,
                bot_name,
                _window_text(window),
                tally.emitted,
                tally.pages,
                now - last,
                100 * done,
                _duration((now - started) / done * (1 - done)),
            )
            last = now

    def observe(self, bot_name: str, window: Window, record: dict[str, Any]) -> None:
        """A shaped record of ``bot_name`` that ``window`` returned, about to be emitted."""

    def page_records(self, page: Page, tally: WindowTally) -> list[dict[str, Any]]:
        """A page's records, shaped, without the odd ones, and with one copy of each ``_id``:
        the newest by the stream's time (the first of equals)."""
        decoded = self.client.records(page)
        tally.repaired += decoded.repaired
        try:
            shaped = [self.shape(raw, tally) for raw in decoded.items]
        except RecursionError:
            raise self.too_deep() from None
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

    def report_window(self, bot_name: str, window: Window, tally: WindowTally) -> None:
        """One warning per window for each thing the API sent that the tap had to mend."""
        where = f"{self.name} for bot '{bot_name}', window {_window_text(window)}"
        if tally.odd:
            self.logger.warning(
                "%s: skipped %d record(s) without an '_id' or with an unreadable %s.",
                where,
                tally.odd,
                " or ".join(sorted(self.time_fields)),
            )
        if tally.older or tally.renewed:
            self.logger.warning(
                "%s: the API sent records more than once with a different %s; the newest copy "
                "of each is kept (%d older copies dropped, %d newer copies emitted after an "
                "older one, which they replace).",
                where,
                self.replication_key,
                tally.older,
                tally.renewed,
            )
        if tally.misfits:
            self.logger.warning(
                "%s: %d value(s) of a type the schema does not allow %s: %s.",
                where,
                sum(tally.misfits.values()),
                "moved to _extra" if self.rules.keeps_extra else "dropped (_extra not selected)",
                _counts(tally.misfits),
            )
        if tally.undeclared:
            self.logger.warning(
                "%s: %d value(s) of fields the catalog does not declare dropped, as it does not "
                "select _extra: %s.",
                where,
                sum(tally.undeclared.values()),
                _counts(tally.undeclared),
            )
        if tally.repaired:
            self.logger.warning(
                "%s: %d invalid UTF-8 sequence(s) in strings replaced with U+FFFD.",
                where,
                tally.repaired,
            )

    def too_deep(self) -> RecordTooDeepError:
        return RecordTooDeepError(
            f"A record of {self.name}, window {_window_text(self.current_window)}, is nested "
            "too deep to be written; stopping. Please report the answer's shape."
        )

    def stop_fetching(self) -> None:
        """Stop the window pipeline's workers, if it was started."""
        if "pipeline" in self.__dict__:
            self.pipeline.close()

    def shape(self, raw: object, tally: WindowTally) -> dict[str, Any] | None:
        """The record as the API sent it, made to fit the run's schema: times as RFC 3339
        UTC; fields the schema does not declare, and values of a type it does not allow,
        moved to ``_extra`` (dropped, and counted, when ``_extra`` is not selected). None
        for a record that cannot be keyed or placed in time."""
        if not isinstance(raw, dict):
            return None
        record_id = raw.get("_id")
        if not isinstance(record_id, str) or not record_id:
            return None
        if raw.get(self.replication_key) is None:
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

    @cached_property
    def deselected_fields(self) -> tuple[str, ...]:
        mask = self.mask
        return tuple(f for f in self.schema["properties"] if not mask[("properties", f)])

    def _write_record_message(self, record: dict[str, Any]) -> None:
        """The SDK's record path without its recursive selection walk and conformance pass,
        which cost about a third of the CPU per record: only top-level fields can be
        deselected here (nested objects are open JSON), and records are already shaped."""
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
                            time_extracted=self.page_fetched_at,
                        )
                    )
        except RecursionError:
            raise self.too_deep() from None
        self.state_manager.is_flushed = False

    def finish_window(self, context: Context, window: Window) -> None:
        """Every record of ``window`` is out: move the bot's bookmark to its end and emit it
        as a STATE message."""
        state = self.get_context_state(context)
        state["replication_key"] = self.replication_key
        state["replication_key_value"] = _iso(window.end)
        state[COMPLETE_WINDOW_KEY] = self.shared.readings.complete_length(self.name)
        density = self.windows.density(context["bot_name"])
        if density is not None:
            # A whole number: loaders read the state back with Decimal and some (SDK targets)
            # cannot write a Decimal out again.
            state[DENSITY_KEY] = math.ceil(density * DAY_SECONDS)
        self.state_manager.is_flushed = False
        self._write_state_message()

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
        return ConversationWatch(
            {c["bot_name"]: seen_in(self.get_context_state(c)) for c in self.partitions},
            setting_days=self.config.get("conversation_reread_days"),
        )

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

    def observe(self, bot_name: str, window: Window, record: dict[str, Any]) -> None:
        self.watch.observe(
            bot_name, window.request_bounds, record.get("startTime"), record["lastActionAt"]
        )

    def finish_window(self, context: Context, window: Window) -> None:
        """What the window's conversations showed goes into the state with its bookmark."""
        self.watch.window_done(context["bot_name"], window.start)
        seen = self.watch.seen(context["bot_name"])
        self.get_context_state(context)[CHANGES_STATE_KEY] = seen.to_state()
        super().finish_window(context, window)

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

    def __init__(self, tap: Tap, shared: RunShared) -> None:
        super().__init__(tap, shared)
        if self.json_text_fields:
            # This run's schema, so that discovery, the catalog and SCHEMA messages agree
            # with the records; the class attribute keeps the any-JSON typing.
            self.schema = as_json_text(type(self).schema, self.json_text_fields)

    def queries(self, bot_name: str, window: Window) -> list[Query]:
        """With ``conversation_ids`` set, one query per conversation in each window."""
        conversation_ids: list[str] = self.config.get("conversation_ids") or []
        if not conversation_ids:
            return super().queries(bot_name, window)
        return [self.query(bot_name, window, conversation_id=c) for c in conversation_ids]


def _page_size(item: Page | WindowSplit) -> int:
    return item.size if isinstance(item, Page) else 0


def _iso(seconds: int) -> str:
    return format_timestamp(from_unix_seconds(seconds))


def _log_time(seconds: int) -> str:
    return f"{_iso(seconds)[:19]}Z"


def _window_text(window: Window) -> str:
    return f"[{_log_time(window.start)}, {_log_time(window.end)})"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class RecordRules(NamedTuple):
    """What a record may hold under the run's schema (see ``ExportStream.rules``)."""

    declared: frozenset[str]  # top-level fields besides _extra and bot_name
    keeps_extra: bool  # whether _extra is in the schema and selected
    checks: tuple[FieldCheck, ...]  # types of the selected fields that are checked


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


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{name} ({count})" for name, count in counter.most_common())


STREAM_TYPES: tuple[type[ExportStream], ...] = (ConversationsStream, MessagesStream)
