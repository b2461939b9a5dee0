"""tap-deepconverse: its settings and their validation, the streams it discovers, and the
command line (a run, ``--test``, ``--diagnose``)."""

from __future__ import annotations

import ipaddress
import signal
import sys
from collections.abc import Mapping
from functools import cached_property
from types import FrameType
from typing import IO, Any
from urllib.parse import urlsplit

import click
from singer_sdk import Stream, Tap
from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.helpers.capabilities import PluginCapabilities, TapCapabilities
from singer_sdk.plugin_base import JSONSchemaValidator
from singer_sdk.singerlib import StateMessage
from typing_extensions import override

from tap_deepconverse.client import mask_secrets
from tap_deepconverse.conversation_changes import (
    LEARNING_DAYS,
    LEARNT_REREAD_CAP_DAYS,
)
from tap_deepconverse.diagnose import MAX_REQUESTS, run_diagnosis
from tap_deepconverse.errors import DeepConverseError, StateError
from tap_deepconverse.readings import ApiReadings
from tap_deepconverse.run import ExportRun
from tap_deepconverse.state_checks import checked_state_file, remembered_window, state_problems
from tap_deepconverse.streams import STREAM_TYPES, ExportStream
from tap_deepconverse.sync import sync_streams
from tap_deepconverse.timestamps import TimestampError, parse_timestamp
from tap_deepconverse.writers import AtomicStateWriter, RecordBatchingWriter

DEFAULT_API_URL = "https://api.converseapps.com"
SECRET_SETTINGS = frozenset({"api_key"})

CONFIG_SCHEMA = th.PropertiesList(
    th.Property(
        "api_key",
        th.StringType,
        required=True,
        secret=True,
        description=(
            "Export API key, sent as the x-api-key header. Found in the DeepConverse dashboard "
            "under Account > API (site admins only)."
        ),
    ),
    th.Property(
        "bot_names",
        th.ArrayType(th.StringType),
        required=True,
        description=(
            "Bots to export, by name or id (e.g. r3-218210). Each bot keeps its own bookmark."
        ),
    ),
    th.Property(
        "start_date",
        th.DateTimeType,
        required=True,
        description="Earliest time to export (RFC 3339, e.g. 2025-01-01T00:00:00Z).",
    ),
    th.Property(
        "end_date",
        th.DateTimeType,
        description=(
            "Exclusive end of the export, for bounded backfills. Default: the time the run starts."
        ),
    ),
    th.Property(
        "api_url",
        th.StringType,
        default=DEFAULT_API_URL,
        description="Base URL of the Export API (point it at the simulator to try the tap).",
    ),
    th.Property(
        "page_size",
        th.IntegerType(minimum=1, maximum=1000),
        default=1000,
        description="Records per page (per_page), 1 to 1000.",
    ),
    th.Property(
        "window_hours",
        th.IntegerType(minimum=1),
        default=24,
        description=(
            "Length of the first export window in hours, and the shortest window the tap "
            "assumes the API accepts. Later windows grow while they come back light and shrink "
            "when dense. A finished window is the unit of progress: state is emitted after each."
        ),
    ),
    th.Property(
        "max_window_days",
        th.IntegerType(minimum=1, maximum=366),
        default=31,
        description=(
            "Longest export window in days. Windows grow up to it while the data is light; "
            "if the API rejects a long window, the tap halves it and keeps the longest length "
            "accepted. Two kinds of window may be longer, as each costs one request whatever "
            "it spans: before a bot's first record, as long as the API has shown it answers "
            "completely, so that an early start_date costs a few requests; and the rest of a "
            "bot's range, once its windows show the rest holds fewer records than a window "
            "aims at (a quiet bot)."
        ),
    ),
    th.Property(
        "json_as_text",
        th.BooleanType,
        default=False,
        description=(
            "Emit the fields that may hold any JSON value (outMsg and userInput of messages) "
            "as JSON text, typed as string, for loaders that cannot store a JSON string in a "
            "JSON column (target-duckdb 0.8). Objects such as metadata and _extra stay objects."
        ),
    ),
    th.Property(
        "lookback_minutes",
        th.IntegerType(minimum=0),
        default=60,
        description=(
            "How far before the bookmark each incremental run re-reads, to pick up records "
            "that reached the archive late."
        ),
    ),
    th.Property(
        "conversation_reread_days",
        th.IntegerType(minimum=0, maximum=366),
        description=(
            "How many days before the bookmark each incremental run also re-reads "
            "conversations, so that one that changed after it was exported (a customer came "
            "back, an agent took over, a tag was added) is exported again. Needed only if the "
            "API filters conversations on startTime; once its answers show lastActionAt, "
            "nothing extra is read. Unset: learnt, the longest conversation seen, at most "
            f"{LEARNT_REREAD_CAP_DAYS} days ({LEARNT_REREAD_CAP_DAYS} until a bot's "
            f"conversations have been watched for {LEARNING_DAYS} days). 0: off. Cost: about "
            "that many days of conversation pages per bot and run."
        ),
    ),
    th.Property(
        "conversation_ids",
        th.ArrayType(th.StringType),
        description="If set, export messages only of these conversations (conversation_id).",
    ),
    th.Property(
        "requests_per_second",
        th.NumberType(exclusive_minimum=0),
        default=3,
        description=(
            "Requests per second per endpoint, retries included (the API allows 3). Divide it "
            "among jobs that share one API key."
        ),
    ),
    th.Property(
        "max_retries",
        th.IntegerType(minimum=0, maximum=20),
        default=6,
        description=(
            "Retries of a failed request (429, 5xx, timeouts, broken answers) before the run "
            "stops, with exponential backoff and jitter."
        ),
    ),
    th.Property(
        "request_timeout",
        th.NumberType(exclusive_minimum=0),
        default=60,
        description=(
            "Seconds an answer may take, from the request to its last byte, before the request "
            "is retried."
        ),
    ),
    th.Property(
        "max_answer_mb",
        th.IntegerType(minimum=1, maximum=4096),
        default=64,
        description=(
            "Largest answer read from the API, in megabytes, both as sent (compressed) and once "
            "inflated; a larger one stops the run. A page of 1,000 messages with long texts is "
            "about 6 MB."
        ),
    ),
    th.Property(
        "max_parallel_windows",
        th.IntegerType(minimum=1, maximum=32),
        default=8,
        description=(
            "Windows fetched at once per stream, all under the same per-endpoint rate limit. "
            "Records and state still come out in window order."
        ),
    ),
).to_dict()


def config_problems(config: Mapping[str, Any]) -> list[str]:
    """What is wrong with settings that passed the JSON schema, each naming the setting."""
    problems: list[str] = []
    bots = config.get("bot_names") or []
    if not bots:
        problems.append("Setting 'bot_names' must list at least one bot.")
    if any(not isinstance(bot, str) or not bot.strip() for bot in bots):
        problems.append("Setting 'bot_names' contains an empty bot name.")
    duplicates = sorted({bot for bot in bots if bots.count(bot) > 1})
    if duplicates:
        problems.append(f"Setting 'bot_names' lists a bot twice: {', '.join(duplicates)}.")
    if any(not isinstance(c, str) or not c.strip() for c in config.get("conversation_ids") or []):
        problems.append("Setting 'conversation_ids' contains an empty id.")

    moments = {}
    for name in ("start_date", "end_date"):
        if config.get(name) is not None:
            try:
                moments[name] = parse_timestamp(config[name])
            except TimestampError:
                problems.append(
                    f"Setting '{name}' is not a date-time: {config[name]!r} "
                    "(use RFC 3339, e.g. 2025-01-01T00:00:00Z)."
                )
    if (
        "start_date" in moments
        and "end_date" in moments
        and (moments["end_date"] <= moments["start_date"])
    ):
        problems.append("Setting 'end_date' must be after 'start_date'.")

    problems.extend(_api_url_problems(str(config.get("api_url", DEFAULT_API_URL))))
    return problems


def _api_url_problems(url: str) -> list[str]:
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return [f"Setting 'api_url' must be an http(s) URL, got {url!r}."]
    if parts.query or parts.fragment:
        return ["Setting 'api_url' must be a base URL without query or fragment."]
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        return [
            "Setting 'api_url' uses plain http to a host other than this machine; the API key "
            "would travel in clear. Use https."
        ]
    return []


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class TapDeepConverse(Tap):
    """Chatbot conversations and messages from the DeepConverse (AgentX Support) Export API."""

    name = "tap-deepconverse"
    config_jsonschema = CONFIG_SCHEMA
    message_writer_class = RecordBatchingWriter
    # No BATCH (state is emitted per window between records) and no ACTIVATE_VERSION
    # (nothing is full-table).
    capabilities = [  # noqa: RUF012 - the SDK declares it a list
        TapCapabilities.CATALOG,
        TapCapabilities.STATE,
        TapCapabilities.DISCOVER,
        PluginCapabilities.ABOUT,
        PluginCapabilities.STREAM_MAPS,
        PluginCapabilities.FLATTENING,
        PluginCapabilities.STRUCTURED_LOGGING,
    ]

    @override
    def discover_streams(self) -> list[Stream]:
        return [stream_type(tap=self, run=self.run) for stream_type in STREAM_TYPES]

    @cached_property
    def run(self) -> ExportRun:
        """What this run's streams share and learn (one per tap instance)."""
        window = int(self.config["window_hours"]) * 3600
        readings = ApiReadings(
            # What a daily run asks for: window_hours plus the lookback, assumed complete.
            trusted_window=window + int(self.config["lookback_minutes"]) * 60,
            accepted_window=window,
        )
        return ExportRun(
            started=self.initialized_at // 1000, version=self.plugin_version, readings=readings
        )

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401 - the SDK's
        super().__init__(*args, **kwargs)
        # No public hook sets the state writer (sdk_surface guards this private name).
        self._state_writer = AtomicStateWriter(self.message_writer)

    @override  # type: ignore[misc]  # final in the SDK; both endpoints at once: see sync_streams
    def sync_all(self) -> None:
        """Sync the selected streams, both endpoints at once, then log what each cost."""
        try:
            self._reset_state_progress_markers()
            if self.state:
                self._state_writer.write_state(self.state)
            streams = [s for s in self.streams.values() if isinstance(s, ExportStream)]
            readings = self.run.readings
            readings.remember({s.name: remembered_window(self.state, s.name) for s in streams})
            for stream in streams:
                if not stream.selected:
                    self.logger.info("Skipping deselected stream '%s'.", stream.name)
            selected = [s for s in streams if s.selected]
            try:
                sync_streams(selected)
            finally:
                for stream in streams:
                    stream.stop_fetching()
            for stream in streams:
                stream.log_sync_costs()
            self.logger.info("%s", readings.summary(s.name for s in selected))
        finally:
            self.flush_records()

    def flush_records(self) -> None:
        """Write the records the writer gathered: at the end of a run, and when it stops on
        an error (the records after the last STATE are still the target's to load)."""
        if isinstance(self.message_writer, RecordBatchingWriter):
            self.message_writer.flush()

    @override
    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        """Schema checks plus cross-setting checks; messages name the setting, never a secret."""
        schema = self.config_jsonschema
        self.append_builtin_config(schema)
        validator = JSONSchemaValidator(schema)
        errors = [_describe(error) for error in validator.iter_errors(self._config)]
        if not errors:
            errors = config_problems(self._config)
        if errors and raise_errors:
            raise ConfigValidationError("Config validation failed", errors=errors, schema=schema)
        return errors

    @override
    def load_state(self, state: dict[str, Any]) -> None:
        problems = state_problems(state, list(self.streams.values()))
        if problems:
            raise StateError(
                "The state given to tap-deepconverse cannot be used: "
                + "; ".join(problems)
                + ". Fix it or clear it (meltano state clear <state id>) to export from "
                "start_date again."
            )
        super().load_state(state)

    @override
    def _handle_termination(self, signum: int, frame: FrameType | None) -> None:
        """Stop at once, emit the state of the finished windows, and exit non-zero so an
        orchestrator does not take a cancelled run for a finished one."""
        self.logger.warning(
            "Received %s: stopping before the current window; the state emitted covers every "
            "finished window.",
            signal.Signals(signum).name,
        )
        try:
            # Written even if unchanged since the last STATE, so that it comes after every
            # record still gathered by the writer.
            self.write_message(StateMessage(value=self.state))
            if isinstance(self.message_writer, RecordBatchingWriter):
                self.message_writer.close()
        finally:
            sys.exit(128 + signum)

    @classmethod
    @override
    def get_singer_command(cls) -> click.Command:
        """The SDK's command, plus ``--diagnose``."""
        command = super().get_singer_command()
        command.params.append(
            click.Option(
                ["--diagnose"],
                is_flag=True,
                help=(
                    "Probe the Export API on the configured bots' recent data (at most "
                    f"{MAX_REQUESTS} requests per endpoint) and report what it does: a table "
                    "on stderr, JSON on stdout. Writes no state and no records."
                ),
            )
        )
        return command

    @classmethod
    @override
    def invoke(  # type: ignore[override]
        cls,
        *,
        about: bool = False,
        about_format: str | None = None,
        config: Any = None,
        state: IO[str] | None = None,
        catalog: IO[str] | None = None,
        diagnose: bool = False,
    ) -> None:
        """Run the tap, or diagnose the API; errors of ours end it with their message and
        exit code 1."""
        try:
            if diagnose and not about:
                cls.diagnose(config)
                return
            super().invoke(
                about=about,
                about_format=about_format,
                config=config,
                state=checked_state_file(state),
                catalog=catalog,
            )
        except DeepConverseError as exc:
            cls.logger.error("%s", mask_secrets(str(exc)))  # noqa: TRY400 - the whole story
            sys.exit(1)

    @classmethod
    def diagnose(cls, config: Any) -> None:  # noqa: ANN401 - the SDK's private config-input type
        """``--diagnose``: the settings checked as for a run, then the API probed."""
        cls.print_version(print_fn=cls.logger.info)
        tap = cls(
            config=config.config,
            parse_env_config=config.parse_env,
            validate_config=True,
            setup_mapper=False,
        )
        run_diagnosis(tap.config, version=tap.plugin_version, logger=tap.logger)

    @classmethod
    @override
    def cb_test(cls, ctx: click.Context, param: click.Option, value: str) -> None:
        """``--test``, stopped as a run is: a setting that is missing or invalid is named
        (the SDK's callback runs before its own handling of config errors), and an error of
        ours is one line with exit code 1."""
        try:
            super().cb_test(ctx, param, value)
        except ConfigValidationError as exc:
            for error in exc.errors:
                cls.logger.error("%s", error)  # noqa: TRY400 - one line each
            cls.logger.error("Config validation failed")  # noqa: TRY400
            ctx.exit(1)
        except DeepConverseError as exc:
            cls.logger.error("%s", mask_secrets(str(exc)))  # noqa: TRY400 - the whole story
            ctx.exit(1)


def _describe(error: Any) -> str:  # noqa: ANN401 - jsonschema ValidationError
    path = [str(part) for part in error.path]
    if not path:
        return f"{error.message}."
    setting = path[0]
    where = "Setting '" + "".join([setting, *(f"[{p}]" for p in path[1:])]) + "'"
    if setting in SECRET_SETTINGS:
        return f"{where} is not valid ({error.validator} check failed)."
    return f"{where}: {error.message}."


if __name__ == "__main__":
    TapDeepConverse.cli()
