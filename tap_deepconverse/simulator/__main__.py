"""Run the Export API simulator: python -m tap_deepconverse.simulator --help."""

from __future__ import annotations

import argparse
import datetime as dt
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from .dataset import BOUNDS, CONVERSATION_FILTERS, TIME_FORMATS, format_time, generate_dataset
from .server import (
    DEFAULT_API_KEY,
    FAULT_KINDS,
    HOSTILE_KINDS,
    ORDERS,
    Simulator,
    SimulatorOptions,
)


def _start(value: str) -> int:
    """Unix seconds from an integer, a date or an ISO 8601 datetime (UTC if naive)."""
    if value.lstrip("-").isdigit():
        return int(value)
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        msg = f"not a date, datetime or unix time: {value!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return int(parsed.timestamp())


def _names(value: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in value.split(",") if part.strip())
    if not names:
        msg = "expected a comma-separated list"
        raise argparse.ArgumentTypeError(msg)
    return names


def _range(value: str) -> tuple[int, int]:
    low, _, high = value.partition(",")
    try:
        return int(low), int(high or low)
    except ValueError:
        msg = "expected MIN,MAX"
        raise argparse.ArgumentTypeError(msg) from None


def _counts(value: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(part) for part in value.split(","))
    except ValueError:
        msg = "expected a comma-separated list of integers"
        raise argparse.ArgumentTypeError(msg) from None
    return counts


def _hours(value: str) -> tuple[float, float]:
    low, _, high = value.partition(",")
    try:
        return float(low), float(high or low)
    except ValueError:
        msg = "expected MIN,MAX hours"
        raise argparse.ArgumentTypeError(msg) from None


def _optional_text(value: str) -> str | None:
    return None if value.lower() in ("", "none") else value


def build_parser() -> argparse.ArgumentParser:
    """The command line of the simulator."""
    p = argparse.ArgumentParser(
        prog="python -m tap_deepconverse.simulator",
        description="Serve a simulated DeepConverse Export API with generated data.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8787, help="0 picks a free port")
    p.add_argument("--seed", type=int, default=1, help="seeds the data, faults and order")
    p.add_argument("--bots", type=_names, default=("r3-218210", "support-bot"))
    p.add_argument("--start", type=_start, default=1735689600, help="e.g. 2025-01-01")
    p.add_argument("--days", type=int, default=3)
    p.add_argument("--conversations-per-day", type=int, default=40, help="all bots together")
    p.add_argument("--messages-per-conversation", type=_range, default=(2, 8), metavar="MIN,MAX")
    p.add_argument("--extra-field-rate", type=float, default=0.0)
    p.add_argument(
        "--conversations-per-bot",
        type=_counts,
        default=None,
        metavar="N,N,...",
        help="exact conversations of each bot over all days (replaces --conversations-per-day)",
    )
    p.add_argument(
        "--no-day-boundary-conversations",
        dest="day_boundary_conversations",
        action="store_false",
        help="do not force a conversation of each bot onto every day boundary",
    )
    p.add_argument(
        "--long-text-rate", type=float, default=0.0, help="fraction of messages with a long text"
    )
    p.add_argument("--long-text-bytes", type=int, default=5000, help="size of those texts")
    p.add_argument(
        "--long-conversation-rate",
        type=float,
        default=0.0,
        help="fraction of conversations that pause for hours to days before a later message",
    )
    p.add_argument(
        "--long-conversation-hours",
        type=_hours,
        default=(1.0, 72.0),
        metavar="MIN,MAX",
        help="how long those pauses last",
    )
    p.add_argument("--api-key", default=DEFAULT_API_KEY)
    p.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    p.add_argument(
        "--bounds", choices=BOUNDS, default="[)", metavar="BOUNDS", help=" ".join(BOUNDS)
    )
    p.add_argument("--order", choices=ORDERS, default="random")
    p.add_argument("--time-format", choices=TIME_FORMATS, default="seconds")
    p.add_argument("--conversation-filter", choices=CONVERSATION_FILTERS, default="startTime")
    p.add_argument("--default-per-page", type=int, default=100)
    p.add_argument("--max-window-seconds", type=int, default=None)
    p.add_argument(
        "--cut-window-seconds",
        type=int,
        default=None,
        help="answer a longer window with only its first N seconds, as a plain 200",
    )
    p.add_argument("--page-cap", type=int, default=None, help="serve at most N records a page")
    p.add_argument("--empty-pages", action="store_true")
    p.add_argument("--fault-rate", type=float, default=0.0)
    p.add_argument("--fault-kinds", type=_names, default=FAULT_KINDS)
    p.add_argument("--hang-seconds", type=float, default=3.0)
    p.add_argument("--fail-after", type=int, default=None)
    p.add_argument("--rate-limit", type=float, default=3.0, help="per endpoint; 0 = unlimited")
    p.add_argument(
        "--cursor-key",
        default="cursor",
        help="where answers carry the cursor: a key, a dotted path, or 'none'",
    )
    p.add_argument("--retry-after", type=_optional_text, default="1", help="'none' = no header")
    p.add_argument(
        "--hostile",
        choices=HOSTILE_KINDS,
        default=None,
        metavar="KIND",
        help="answer every request as no API should: " + ", ".join(HOSTILE_KINDS),
    )
    p.add_argument(
        "--redirect-to", default=None, help="base URL of the redirect-other-host/-http kinds"
    )
    p.add_argument("--certfile", default=None, help="PEM with certificate and key: serve https")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGINT or SIGTERM."""
    args = build_parser().parse_args(argv)
    try:
        options = SimulatorOptions(
            api_key=args.api_key,
            bounds=args.bounds,
            order=args.order,
            time_format=args.time_format,
            conversation_filter=args.conversation_filter,
            default_per_page=args.default_per_page,
            max_window_seconds=args.max_window_seconds,
            cut_window_seconds=args.cut_window_seconds,
            page_cap=args.page_cap,
            rate_limit=args.rate_limit or None,
            retry_after=args.retry_after,
            cursor_key=args.cursor_key,
            hostile=args.hostile,
            redirect_to=args.redirect_to,
            latency=args.latency,
            empty_pages=args.empty_pages,
            fault_rate=args.fault_rate,
            fault_kinds=args.fault_kinds,
            hang_seconds=args.hang_seconds,
            fail_after=args.fail_after,
            seed=args.seed,
        )
        dataset = generate_dataset(
            seed=args.seed,
            bots=args.bots,
            start=args.start,
            days=args.days,
            conversations_per_day=args.conversations_per_day,
            messages_per_conversation=args.messages_per_conversation,
            extra_field_rate=args.extra_field_rate,
            day_boundary_conversations=args.day_boundary_conversations,
            conversations_per_bot=args.conversations_per_bot,
            long_text_rate=args.long_text_rate,
            long_text_bytes=args.long_text_bytes,
            long_conversation_rate=args.long_conversation_rate,
            long_conversation_hours=args.long_conversation_hours,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        simulator = Simulator(
            dataset, options, host=args.host, port=args.port, certfile=args.certfile
        ).start()
    except OSError as exc:  # the port is taken, the certificate unreadable
        print(f"error: cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    try:
        print(
            f"DeepConverse simulator on {simulator.url} ({len(dataset.bots)} bots, "
            f"{dataset.count('conversations')} conversations, "
            f"{dataset.count('messages')} messages, "
            f"{format_time(dataset.start, 'iso')} to {format_time(dataset.end, 'iso')})",
            flush=True,
        )
        print(f"API key: {options.api_key} (send it in the x-api-key header)", flush=True)
        while not stop.wait(0.2):
            pass
    finally:
        simulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
