"""The generator's optional shapes: exact conversations per bot, no forced conversation on
day boundaries, and messages with long texts. Off by default, where the data must not change."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from typing import Any

import pytest

from tap_deepconverse.simulator import Dataset, format_record, generate_dataset
from tap_deepconverse.simulator.__main__ import build_parser

DAY = 86_400
HOUR = 3_600


def digest(data: Dataset) -> str:
    """One hash of every record as served, both endpoints."""
    h = hashlib.sha256()
    for record in [*data.conversations(), *data.messages()]:
        h.update(json.dumps(record, sort_keys=True, ensure_ascii=False).encode("utf-8"))
    return h.hexdigest()


def text_bytes(message: dict[str, Any]) -> int:
    """Size of the longest text a message carries, in UTF-8 bytes."""
    candidates: list[object] = [message.get("userInput"), message.get("outMsg")]
    if isinstance(message.get("outMsg"), dict):
        candidates.append(message["outMsg"].get("text"))
    return max((len(c.encode("utf-8")) for c in candidates if isinstance(c, str)), default=0)


# Records and digests of the generator before these options existed.
@pytest.mark.parametrize(
    ("kwargs", "records", "prefix"),
    [
        ({"seed": 1, "days": 3, "conversations_per_day": 40}, 713, "77c8b133b3f29ba652d2"),
        ({"seed": 7, "days": 3, "conversations_per_day": 30}, 547, "d04955e5b8a4401959bf"),
        (
            {"seed": 3, "days": 3, "conversations_per_day": 600, "extra_field_rate": 0.3},
            10858,
            "ebe07af51dc0de4f20e7",
        ),
        (
            {
                "seed": 5,
                "bots": ("a", "b", "c", "d"),
                "days": 9,
                "conversations_per_day": 50,
                "messages_per_conversation": (1, 3),
            },
            1342,
            "3107ce1f59ed58654e7a",
        ),
    ],
)
def test_default_generation_is_unchanged(kwargs: dict[str, Any], records: int, prefix: str):
    data = generate_dataset(**kwargs)
    assert len(data) == records
    assert digest(data).startswith(prefix)


def test_explicit_defaults_generate_the_same_data():
    implicit = generate_dataset(seed=4, days=4, conversations_per_day=25)
    explicit = generate_dataset(
        seed=4,
        days=4,
        conversations_per_day=25,
        day_boundary_conversations=True,
        conversations_per_bot=None,
        long_text_rate=0.0,
        long_text_bytes=5000,
        long_conversation_rate=0.0,
        long_conversation_hours=(1.0, 72.0),
    )
    assert digest(explicit) == digest(implicit)


def test_conversations_per_bot_are_exact_and_spread_over_the_period():
    bots = ("busy", "quiet-1", "quiet-2", "silent")
    counts = (3000, 100, 40, 0)
    data = generate_dataset(
        seed=2, bots=bots, days=365, conversations_per_bot=counts, conversations_per_day=999
    )
    for bot, count in zip(bots, counts, strict=True):
        assert data.count("conversations", bot) == count
        # 2 to 8 messages each, 5 on average.
        assert 4.5 * count <= data.count("messages", bot) <= 5.5 * count
    busy = data.conversations("busy")
    days = Counter((c["startTime"] - data.start) // DAY for c in busy)
    assert len(days) > 330  # nearly every day has some: 3000 over 365 days
    assert max(days.values()) < 25
    for record in [*data.conversations(), *data.messages()]:
        time = record["time"] if "time" in record else record["startTime"]
        assert data.start <= time < data.end


def test_quiet_bots_have_fewer_conversations_than_days():
    bots = tuple(f"quiet-{i}" for i in range(20))
    data = generate_dataset(seed=1, bots=bots, days=365, conversations_per_bot=[100] * 20)
    assert data.count("conversations") == 2000
    for bot in bots:
        assert data.count("conversations", bot) == 100
        off_midnight = [c for c in data.conversations(bot) if (c["startTime"] - data.start) % DAY]
        assert len(off_midnight) >= 90  # nothing forced onto midnight


def test_without_day_boundary_conversations_counts_follow_the_weights():
    forced = generate_dataset(seed=3, bots=("a", "b", "c"), days=30, conversations_per_day=10)
    free = generate_dataset(
        seed=3,
        bots=("a", "b", "c"),
        days=30,
        conversations_per_day=10,
        day_boundary_conversations=False,
    )
    assert free.count("conversations") == forced.count("conversations") == 300

    def at_midnight(data: Dataset, bot: str) -> int:
        return sum((c["startTime"] - data.start) % DAY == 0 for c in data.conversations(bot))

    for bot in ("a", "b", "c"):
        assert at_midnight(forced, bot) >= 30
        assert at_midnight(free, bot) <= 3
    # Weights 3:1:1 over 300 conversations: 180, 60, 60 expected.
    assert 150 <= free.count("conversations", "a") <= 210
    assert 40 <= free.count("conversations", "b") <= 80


def test_one_message_in_eight_carries_a_long_text():
    plain = generate_dataset(seed=6, days=10, conversations_per_bot=[1500, 500])
    long = generate_dataset(
        seed=6, days=10, conversations_per_bot=[1500, 500], long_text_rate=0.125
    )
    messages = long.messages()
    assert len(messages) == plain.count("messages")
    # The rest of the data is the same: ids, times and counts.
    assert long.ids("messages") == plain.ids("messages")
    assert digest_of(long.conversations()) == digest_of(plain.conversations())

    def share(records: list[dict[str, Any]]) -> float:
        return sum(text_bytes(m) >= 5000 for m in records) / len(records)

    baseline = share(plain.messages())  # the generator's own rare pasted logs
    assert baseline < 0.02
    assert 0.11 <= share(messages) - baseline <= 0.14
    sizes = [text_bytes(m) for m in messages if 5000 <= text_bytes(m) < 5400]
    assert len(sizes) > 0.1 * len(messages)
    kinds = Counter(m["type"] for m in messages if 5000 <= text_bytes(m) < 5400)
    assert kinds["UserInput"] > 0
    assert kinds["BotMessage"] > 0


def test_long_text_size_is_configurable():
    data = generate_dataset(
        seed=6, days=2, conversations_per_day=50, long_text_rate=1.0, long_text_bytes=20_000
    )
    sizes = [text_bytes(m) for m in data.messages()]
    assert min(sizes) >= 20_000
    assert max(sizes) < 21_000


def test_long_conversations_last_hours_to_days():
    plain = generate_dataset(seed=3, days=20, conversations_per_day=33)
    data = generate_dataset(seed=3, days=20, conversations_per_day=33, long_conversation_rate=0.3)
    conversations = data.conversations()
    assert [c["_id"] for c in conversations] == [c["_id"] for c in plain.conversations()]
    assert [c["startTime"] for c in conversations] == [
        c["startTime"] for c in plain.conversations()
    ]
    durations = [c["lastActionAt"] - c["startTime"] for c in conversations]
    long = [d for d in durations if d >= HOUR]
    assert 0.25 <= len(long) / len(durations) <= 0.35
    assert max(durations) > 2 * DAY
    assert max(durations) < 72 * HOUR + 2 * HOUR  # the pause, plus minutes of messages
    assert 0.1 <= sum(d >= DAY for d in durations) / len(durations) <= 0.25
    for record in [*conversations, *data.messages()]:
        time = record.get("time", record.get("lastActionAt"))
        assert data.start <= time < data.end
    last_message: dict[str, int] = {}
    for message in data.messages():
        last_message[message["conversationId"]] = message["time"]
    assert all(c["lastActionAt"] == last_message[c["_id"]] for c in conversations)


def test_as_of_shows_the_archive_as_it_was():
    data = generate_dataset(seed=3, days=6, conversations_per_day=30, long_conversation_rate=0.3)
    moment = data.start + 3 * DAY + 0.5
    final = {c["_id"]: c for c in data.conversations()}
    then = data.conversations(as_of=moment)
    assert {c["_id"] for c in then} == {i for i, c in final.items() if c["startTime"] <= moment}
    last_sent: dict[str, int] = {}
    for message in data.messages(as_of=moment):
        last_sent[message["conversationId"]] = message["time"]
    changed = 0
    for conversation in then:
        last = final[conversation["_id"]]
        assert conversation["lastActionAt"] == last_sent[last["_id"]]
        if conversation["lastActionAt"] < last["lastActionAt"]:
            changed += 1
            assert conversation["tags"] == [t for t in last["tags"] if t != "resolved"]
            assert {k: v for k, v in conversation.items() if k not in ("lastActionAt", "tags")} == {
                k: v for k, v in last.items() if k not in ("lastActionAt", "tags")
            }
        else:
            assert conversation == last
    assert changed >= 5  # open ones, some for days
    assert data.messages(as_of=moment) == [m for m in data.messages() if m["time"] <= moment]
    assert data.conversations(as_of=data.end) == data.conversations()

    # A window filtering on lastActionAt sees the values of then.
    bot = data.bots[0]
    window = (data.start + 2 * DAY, data.start + 4 * DAY)
    selected = data.select(
        "conversations", bot, *window, conversation_filter="lastActionAt", as_of=moment
    )
    expected = sorted(
        (c for c in data.conversations(bot, as_of=moment) if window[0] <= c["lastActionAt"]),
        key=lambda c: (round(c["lastActionAt"] * 1000), c["_id"]),
    )
    assert [c["_id"] for c in selected] == [c["_id"] for c in expected]
    served = [format_record("conversations", c) for c in selected]
    assert [c["lastActionAt"] for c in served] == [c["lastActionAt"] for c in expected]
    # The same view twice is the same object (the server caches answers by record).
    again = data.select(
        "conversations", bot, *window, conversation_filter="lastActionAt", as_of=moment
    )
    assert all(a is b for a, b in zip(selected, again, strict=True))


def digest_of(records: list[dict[str, Any]]) -> str:
    return hashlib.sha256(json.dumps(records, sort_keys=True).encode("utf-8")).hexdigest()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"conversations_per_bot": [1]},  # two bots by default
        {"conversations_per_bot": [1, -1]},
        {"long_text_rate": 1.5},
        {"long_text_bytes": 0},
        {"long_conversation_rate": -0.1},
        {"long_conversation_hours": (5.0, 1.0)},
        {"long_conversation_hours": (0.0, 1.0)},
    ],
)
def test_bad_shapes_are_refused(kwargs: dict[str, Any]):
    with pytest.raises(ValueError, match=r"conversations_per_bot|long_text|long_conversation"):
        generate_dataset(**kwargs)


def test_command_line_exposes_the_shapes():
    args = build_parser().parse_args(
        [
            "--bots",
            "a,b",
            "--conversations-per-bot",
            "10,20",
            "--no-day-boundary-conversations",
            "--long-text-rate",
            "0.125",
            "--long-text-bytes",
            "6000",
            "--long-conversation-rate",
            "0.3",
            "--long-conversation-hours",
            "2,48",
        ]
    )
    assert args.long_conversation_rate == 0.3
    assert args.long_conversation_hours == (2.0, 48.0)
    assert args.conversations_per_bot == (10, 20)
    assert args.day_boundary_conversations is False
    assert args.long_text_rate == 0.125
    assert args.long_text_bytes == 6000
    defaults = build_parser().parse_args([])
    assert defaults.conversations_per_bot is None
    assert defaults.day_boundary_conversations is True
    assert defaults.long_text_rate == 0.0
