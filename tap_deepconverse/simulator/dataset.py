"""Deterministic, realistic DeepConverse records for the simulator.

Times are kept as float unix seconds with millisecond precision and are only
formatted when served. Everything here is pure (no I/O) and thread-safe.
"""

from __future__ import annotations

import base64
import bisect
import datetime as dt
import random
import threading
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = [
    "BOUNDS",
    "CONVERSATION_FILTERS",
    "ENDPOINTS",
    "TIME_FORMATS",
    "Dataset",
    "Record",
    "format_record",
    "format_time",
    "generate_dataset",
]

Record = dict[str, Any]

ENDPOINTS = ("conversations", "messages")
BOUNDS = ("[)", "(]", "[]", "()")
TIME_FORMATS = ("seconds", "millis", "iso", "float")
CONVERSATION_FILTERS = ("startTime", "lastActionAt")
TIME_FIELDS: dict[str, tuple[str, ...]] = {
    "conversations": ("startTime", "lastActionAt"),
    "messages": ("time",),
}

DEFAULT_START = 1735689600  # 2025-01-01T00:00:00Z
_DAY = 86400
_HOUR_MS = 3_600_000
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)

# Relative traffic per UTC hour: quiet nights, busy afternoons.
_HOUR_WEIGHTS = (
    2, 1, 1, 1, 1, 2, 3, 5, 8, 11, 13, 14,
    14, 15, 16, 15, 13, 11, 9, 8, 7, 5, 4, 3,
)  # fmt: skip
_HOUR_CUM = [sum(_HOUR_WEIGHTS[: i + 1]) for i in range(24)]

_LOCALES = ("en_us", "en_us", "en_us", "de_de", "fr_fr", "ja_jp", "pt_br")
_TAGS = ("resolved", "informed", "liveChat", "escalated", "feedback")
_CHANNELS = (
    "web", "web", "web", "web", "whatsapp", "whatsapp", "slack",
    "messenger", "msteams", "sms", "zendesk",
)  # fmt: skip

_USER_TEXTS: dict[str, tuple[str, ...]] = {
    "en_us": (
        "Hi, I can't log in to my account",
        "Where is my order?",
        'It says "payment declined" again',
        "How do I reset my password?\nI tried twice already.",
        "Thanks! 👍",
        "Can I talk to a human?",
        "My café order hasn't arrived 😕",
        "I'd like a refund for order #A-10293, it's the wrong size",
        "does it ship to Canada 🇨🇦?",
        "ok",
    ),
    "de_de": (
        "Wo ist meine Bestellung? Ich warte seit Tagen.",
        "Kann ich die Größe noch ändern?",
        "Danke für die schnelle Hilfe! 🇩🇪",
        "Rückerstattung für „Artikel 3“ bitte",
        "Lieferadresse: Straße 12, 80331 München",
    ),
    "fr_fr": (
        "Bonjour, je n'arrive pas à me connecter",
        "Où est ma commande ? « urgent »",
        "Merci beaucoup ! 🇫🇷",
        "J'ai reçu un article endommagé…",
        "Est-ce que la livraison est gratuite à Besançon ?",
    ),
    "ja_jp": (
        "注文がまだ届いていません。",
        "パスワードを忘れました 🙏",
        "ありがとうございます！🇯🇵",  # noqa: RUF001
        "返品はできますか？\n箱は開けていません。",  # noqa: RUF001
        "配送先を変更したいです",
    ),
    "pt_br": (
        "Olá! Não consigo acessar minha conta",
        "Quero cancelar a assinatura, por favor",
        "Obrigado 🇧🇷",
        "Cadê meu pedido? Já faz uma semana 😡",
        "Vocês entregam em São Paulo?",
    ),
}
# Awkward texts any customer may send, whatever the bot's locale.
_ODD_TEXTS = (
    "مرحبا، أحتاج مساعدة في طلبي رقم ٤٥٦",
    "👩‍💻 working from home and the wifi is down",
    "family plan for 👨‍👩‍👧‍👦 please",
    "🏳️‍🌈🏴‍☠️🇺🇸🇬🇧 flags!",
    "Tab\there, a backslash \\ and a \"quote\" and 'single'",
    "line one\r\nline two\n\nline four",
    "zero\u200bwidth and non\u00a0breaking",
    "中文测试：发票在哪里？",  # noqa: RUF001
    "한국어로 문의드립니다",
    "thumbs 👍🏽 with skin tone",
    "<b>not html</b> & <script>alert('x')</script>",
    "null",
    '{"json": "inside a string"}',
    "",
)
_BOT_TEXTS: dict[str, tuple[str, ...]] = {
    "en_us": (
        "Hi there! 👋 How can I help you today?",
        "I can help with orders, returns and your account.",
        "Your order is on its way and should arrive on Friday.",
        "Sorry, I didn't get that. Could you rephrase?",
        "Here is how to reset your password:\n1. Open Settings\n2. Tap “Reset”",
    ),
    "de_de": (
        "Hallo! Wie kann ich helfen?",
        "Ihre Bestellung ist unterwegs 🚚",
        "Das habe ich leider nicht verstanden.",
    ),
    "fr_fr": (
        "Bonjour ! Comment puis-je vous aider ?",
        "Votre commande est en route 🚚",
        "Désolé, je n'ai pas compris.",
    ),
    "ja_jp": (
        "こんにちは！ご用件をお聞かせください。",  # noqa: RUF001
        "ご注文は発送済みです 🚚",
        "申し訳ありません、もう一度お願いします。",
    ),
    "pt_br": (
        "Olá! Como posso ajudar?",
        "Seu pedido está a caminho 🚚",
        "Desculpe, não entendi.",
    ),
}
_QUICK_REPLIES: dict[str, tuple[str, ...]] = {
    "en_us": ("Track order", "Returns", "Talk to an agent", "Something else"),
    "de_de": ("Bestellung verfolgen", "Rücksendung", "Mitarbeiter sprechen"),
    "fr_fr": ("Suivre ma commande", "Retours", "Parler à un conseiller"),
    "ja_jp": ("注文を追跡", "返品", "担当者と話す"),
    "pt_br": ("Rastrear pedido", "Devoluções", "Falar com atendente"),
}
_AGENT_TEXTS = (
    "Hi, this is Maria from support. Let me check that for you.",
    "I've issued the refund, you'll see it in 3–5 business days.",  # noqa: RUF001
    "Could you send me the e-mail address on the account?",
    "Danke für Ihre Geduld! Ich schaue nach.",
    "少々お待ちください。",
)
_AGENTS = ("Maria", "Jonas", "Aiko", "Léa", "João")
_USER_AGENTS: tuple[tuple[dict[str, Any], bool], ...] = (
    ({"browser": {"name": "Chrome", "version": "124.0.6367.91"},
      "os": {"name": "Windows", "version": "10"},
      "device": {"type": None, "vendor": None, "model": None}}, False),
    ({"browser": {"name": "Safari", "version": "17.4"},
      "os": {"name": "Mac OS", "version": "10.15.7"},
      "device": {"type": None, "vendor": "Apple", "model": "Macintosh"}}, False),
    ({"browser": {"name": "Mobile Safari", "version": "17.4.1"},
      "os": {"name": "iOS", "version": "17.4.1"},
      "device": {"type": "mobile", "vendor": "Apple", "model": "iPhone"}}, True),
    ({"browser": {"name": "Chrome", "version": "123.0.6312.99"},
      "os": {"name": "Android", "version": "14"},
      "device": {"type": "mobile", "vendor": "Samsung", "model": "SM-S918B"}}, True),
    ({"browser": {"name": "Firefox", "version": "125.0"},
      "os": {"name": "Ubuntu", "version": None},
      "device": {"type": None, "vendor": None, "model": None}}, False),
    ({"browser": {"name": "Edge", "version": "124.0.2478.51"},
      "os": {"name": "Windows", "version": "11"},
      "device": {"type": None, "vendor": None, "model": None}}, False),
    ({"browser": {"name": "Chrome", "version": "124.0.6367.82"},
      "os": {"name": "iPadOS", "version": "17.4"},
      "device": {"type": "tablet", "vendor": "Apple", "model": "iPad"}}, True),
)  # fmt: skip
_COUNTRIES = (("US", 40.71, -74.006), ("DE", 52.52, 13.405), ("FR", 48.857, 2.352),
              ("JP", 35.676, 139.65), ("BR", -23.55, -46.633))  # fmt: skip
_EVENTS = ("liveChatRequested", "agentJoined", "agentLeft", "conversationClosed")


def format_time(t: float, time_format: str = "seconds") -> int | float | str:
    """Format a stored time the way the API would serve it."""
    ms = round(t * 1000)
    if time_format == "seconds":
        return ms // 1000
    if time_format == "millis":
        return ms
    if time_format == "float":
        return ms / 1000
    if time_format == "iso":
        secs, frac = divmod(ms, 1000)
        text = (_EPOCH + dt.timedelta(seconds=secs)).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{text}.{frac:03d}Z" if frac else f"{text}Z"
    msg = f"unknown time_format {time_format!r}"
    raise ValueError(msg)


def format_record(endpoint: str, record: Record, time_format: str = "seconds") -> Record:
    """Return a shallow copy of a stored record with its time fields formatted."""
    out = dict(record)
    for field in TIME_FIELDS[endpoint]:
        out[field] = format_time(record[field], time_format)
    return out


def _ms(t: float) -> int:
    return round(t * 1000)


def _clone(value: object) -> object:
    """Deep copy of a JSON value (much faster than copy.deepcopy)."""
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clone(v) for v in value]
    return value


def _served_copy(endpoint: str, record: Record, time_format: str = "seconds") -> Record:
    """An independent copy of a record as served (nested objects are shared in store)."""
    return {k: _clone(v) for k, v in format_record(endpoint, record, time_format).items()}


class _Generator:
    """Builds conversations and their messages from one random stream."""

    def __init__(
        self,
        seed: str,
        extra_field_rate: float,
        used_ids: set[str],
        *,
        long_text_rate: float = 0.0,
        long_text_bytes: int = 5000,
        long_conversations: tuple[float, tuple[float, float]] = (0.0, (1.0, 72.0)),
    ) -> None:
        self.rng = random.Random(seed)
        # Undocumented fields draw from their own stream so that the rest of
        # the data does not depend on extra_field_rate.
        self.xrng = random.Random(f"{seed}:extra")
        self.extra_field_rate = extra_field_rate
        self.used_ids = used_ids
        long_rng = random.Random(f"{seed}:long")
        self.long_texts = tuple(_long_text(long_rng, 5000 + 3000 * i) for i in range(6))
        # Forced long texts also have their own stream: the rest of the data does not
        # depend on long_text_rate either.
        self.long_text_rate = long_text_rate
        self.lrng = random.Random(f"{seed}:long-rate")
        self.forced_texts: tuple[str, ...] = ()
        if long_text_rate > 0:
            pool_rng = random.Random(f"{seed}:long-pool")
            self.forced_texts = tuple(_long_text(pool_rng, long_text_bytes) for _ in range(8))
        # Long conversations too: the rest of the data does not depend on their rate.
        self.long_conversation_rate, self.long_conversation_hours = long_conversations
        self.crng = random.Random(f"{seed}:long-conversations")

    def new_id(self) -> str:
        while True:
            value = f"{self.rng.getrandbits(128):032x}"
            if value not in self.used_ids:
                self.used_ids.add(value)
                return value

    def gaps(self, count: int) -> list[int]:
        """Milliseconds between consecutive messages: seconds to minutes."""
        rnd = self.rng.random
        out = []
        for _ in range(count):
            r = rnd()
            if r < 0.5:  # quick bot answers
                out.append(400 + int(rnd() * 4000))
            elif r < 0.9:  # customers typing
                out.append(3000 + int(rnd() * 90_000))
            else:  # someone wandered off
                out.append(60_000 + int(rnd() * 540_000))
        return out

    def stretch(self, times: list[int], end_ms: int) -> list[int]:
        """Message times with, for a `long_conversation_rate` share of the conversations, a
        pause of `long_conversation_hours` before one later message: the customer comes back
        (persistence mode), an agent takes over. The conversation still ends before `end_ms`."""
        if self.long_conversation_rate <= 0 or len(times) < 2:
            return times
        rng = self.crng
        if rng.random() >= self.long_conversation_rate:
            return times
        low, high = self.long_conversation_hours
        at = 1 + int(rng.random() * (len(times) - 1))
        pause = min(int(rng.uniform(low, high) * _HOUR_MS), end_ms - 1 - times[-1])
        if pause <= 0:
            return times
        return times[:at] + [t + pause for t in times[at:]]

    def text(self, locale: str, pool: dict[str, tuple[str, ...]]) -> str:
        r = self.rng.random()
        if r < 0.01:
            return self.long_texts[int(r * 600) % len(self.long_texts)]
        if r < 0.08:
            return _ODD_TEXTS[int(self.rng.random() * len(_ODD_TEXTS))]
        texts = pool[locale]
        return texts[int(self.rng.random() * len(texts))]

    def metadata(self, locale: str) -> Record:
        """System parameters plus custom ones of any JSON type, nested."""
        rng = self.rng
        agent, mobile = _USER_AGENTS[int(rng.random() * len(_USER_AGENTS))]
        meta: Record = {
            "__sys_channel": _CHANNELS[int(rng.random() * len(_CHANNELS))],
            # Parsed user agents are shared, read-only objects (saves memory).
            "__sys_userAgentParsed": agent,
            "browser_isMobile": mobile,
        }
        r = rng.random()
        if r < 0.6:
            meta["orderId"] = f"A-{int(rng.random() * 1_000_000):06d}"
        if r < 0.4 or r > 0.9:
            meta["cartValue"] = round(rng.random() * 500, 2)
            meta["itemsInCart"] = int(rng.random() * 9)
        if r > 0.3:
            meta["isLoggedIn"] = r > 0.5
            meta["referrer"] = None if r < 0.7 else "https://shop.example.com/search?q=größe"
        if r < 0.25:
            code, lat, lon = _COUNTRIES[int(rng.random() * len(_COUNTRIES))]
            meta["customer"] = {
                "tier": ("bronze", "silver", "gold")[int(r * 12) % 3],
                "address": {"country": code, "geo": {"lat": lat, "lon": lon}},
                "segments": ["newsletter", "vip"][: int(r * 12) % 3],
            }
        if r > 0.85:
            meta["experiment"] = {
                "id": f"exp-{int(r * 100)}",
                "variant": "B" if r > 0.92 else "A",
                "params": {"threshold": 0.75, "flags": [True, False, None]},
            }
        if locale == "ja_jp" and r < 0.5:
            meta["顧客メモ"] = "至急"
        return meta

    def conversation(
        self, bot_locale: str | None, start_ms: int, times_ms: Sequence[int]
    ) -> tuple[Record, list[Record]]:
        """One conversation started at start_ms, messages sent at times_ms."""
        rng = self.rng
        locale = bot_locale or _LOCALES[int(rng.random() * len(_LOCALES))]
        tag_bits = int(rng.random() * 32)
        tags = [tag for i, tag in enumerate(_TAGS) if tag_bits >> i & 1]
        live = "liveChat" in tags or "escalated" in tags
        meta = self.metadata(locale)
        conv_id = self.new_id()
        conv: Record = {
            "_id": conv_id,
            "startTime": start_ms / 1000,
            "lastActionAt": (times_ms[-1] if times_ms else start_ms) / 1000,
            "locale": locale,
            "tags": tags,
            "metadata": meta,
        }
        if self.extra_field_rate > 0 and self.xrng.random() < self.extra_field_rate:
            self._extra_conversation(conv)
        messages = []
        agent_from = len(times_ms) // 2 if live else len(times_ms) + 1
        for i, t_ms in enumerate(times_ms):
            if i == 0:
                kind = "BotMessage" if rng.random() < 0.7 else "UserInput"
            elif i == agent_from:
                kind = "SystemEvent"
            elif i % 2 == 1:
                kind = "UserInput"
            else:
                kind = "AgentMessage" if i > agent_from else "BotMessage"
            messages.append(self.message(conv_id, t_ms, kind, locale))
        return conv, messages

    def message(self, conv_id: str, t_ms: int, kind: str, locale: str) -> Record:
        msg: Record = {"_id": self.new_id(), "time": t_ms / 1000,
                       "conversationId": conv_id, "type": kind}  # fmt: skip
        r = self.rng.random()
        if kind == "UserInput":
            msg["outMsg"] = None
            msg["userActionType"], msg["userInput"] = self.user_input(locale, r)
        else:
            msg["outMsg"] = self.out_msg(kind, locale, r)
            if r < 0.5:  # some exports omit the key, others send null
                msg["userInput"] = None
        if self.extra_field_rate > 0 and self.xrng.random() < self.extra_field_rate:
            self._extra_message(msg)
        if self.long_text_rate > 0 and self.lrng.random() < self.long_text_rate:
            self._long_message(msg)
        return msg

    def _long_message(self, msg: Record) -> None:
        """Put one of the forced long texts where this kind of message carries its text."""
        text = self.forced_texts[int(self.lrng.random() * len(self.forced_texts))]
        if msg["type"] == "UserInput":
            msg["userActionType"], msg["userInput"] = "typed", text
        elif isinstance(msg["outMsg"], dict):
            msg["outMsg"] = {**msg["outMsg"], "text": text}
        else:
            msg["outMsg"] = text

    def user_input(self, locale: str, r: float) -> tuple[str, str | Record]:
        """userActionType and userInput of a UserInput message."""
        if r < 0.6:
            return "typed", self.text(locale, _USER_TEXTS)
        if r < 0.9:
            replies = _QUICK_REPLIES[locale]
            return "quickReply", replies[int(self.rng.random() * len(replies))]
        return "formSubmit", self.form(locale)

    def out_msg(self, kind: str, locale: str, r: float) -> object:
        """The outMsg of a bot, agent or system message: an object or a string."""
        rng = self.rng
        if kind == "BotMessage":
            text = self.text(locale, _BOT_TEXTS)
            if r < 0.6:
                return {"text": text, "quickReplies": list(_QUICK_REPLIES[locale])}
            if r < 0.85:
                return text
            card = {"title": "Returns policy", "url": "https://help.example.com/returns"}
            return {"text": text, "cards": [{**card, "rank": 1.5}]}
        if kind == "AgentMessage":
            text = _AGENT_TEXTS[int(rng.random() * len(_AGENT_TEXTS))]
            agent = _AGENTS[int(rng.random() * len(_AGENTS))]
            return text if r < 0.3 else {"text": text, "agent": {"name": agent}}
        event = _EVENTS[int(r * 40) % len(_EVENTS)]
        return event if r < 0.3 else {"event": event, "source": "liveChat"}

    def form(self, locale: str) -> Record:
        rng = self.rng
        return {
            "email": f"customer{int(rng.random() * 10000)}@example.com",
            "orderNumber": f"A-{int(rng.random() * 1_000_000):06d}",
            "message": self.text(locale, _USER_TEXTS),
            "consent": rng.random() < 0.8,
            "rating": int(rng.random() * 5) + 1,
            "attachments": [],
        }

    def _extra_conversation(self, conv: Record) -> None:
        x = self.xrng.random()
        if x < 0.7:
            score = round(self.xrng.uniform(-1, 1), 2)
            label = "positive" if score > 0.2 else "negative" if score < -0.2 else "neutral"
            conv["sentiment"] = {"score": score, "label": label}
        else:
            conv["csat"] = {"rating": int(x * 50) % 5 + 1, "comment": "Très bien 👍"}

    def _extra_message(self, msg: Record) -> None:
        if self.xrng.random() < 0.7:
            raw = self.xrng.getrandbits(240).to_bytes(30, "big")
            msg["channelMessageId"] = "wamid." + base64.b64encode(raw).decode()
        else:
            msg["attachments"] = [{"type": "image", "name": "photo_ü.jpg", "size": 20480}]


def _long_text(rng: random.Random, size: int) -> str:
    """A 5-20 KB text: pasted logs, long articles."""
    parts: list[str] = []
    total = 0
    pool = [t for texts in _USER_TEXTS.values() for t in texts] + list(_ODD_TEXTS)
    while total < size:
        part = pool[int(rng.random() * len(pool))] + f" [{total}]\n"
        parts.append(part)
        total += len(part.encode("utf-8"))
    return "".join(parts)


class Dataset:
    """Canonical records of some bots, with sorted indexes for window queries.

    Records are stored with float times; `conversations()` and `messages()`
    return independent copies formatted as the API serves them.
    """

    def __init__(
        self,
        *,
        bots: Sequence[str] = ("r3-218210", "support-bot"),
        start: int = DEFAULT_START,
        days: int = 3,
        seed: int = 1,
        extra_field_rate: float = 0.0,
    ) -> None:
        if not bots or len(set(bots)) != len(bots):
            msg = "bots must be a non-empty sequence of distinct names"
            raise ValueError(msg)
        self.bots: tuple[str, ...] = tuple(bots)
        self.start = int(start)
        self.end = self.start + int(days) * _DAY
        self.seed = seed
        self.extra_field_rate = extra_field_rate
        self._lock = threading.RLock()
        self._version = 0
        self._used_ids: set[str] = set()
        self._conversations: dict[str, list[Record]] = {b: [] for b in self.bots}
        self._messages: dict[str, list[Record]] = {b: [] for b in self.bots}
        self._by_conversation: dict[str, tuple[str, list[Record]]] = {}
        self._indexes: dict[tuple[str, str, str], tuple[list[int], list[Record]]] = {}
        # Conversations as they were before their last message, by (_id, messages sent):
        # kept, so that a view served twice is the same object.
        self._views: dict[tuple[str, int], Record] = {}
        self._late = _Generator(f"late:{seed}", extra_field_rate, self._used_ids)

    # -- building -------------------------------------------------------

    def _store(self, bot: str, conv: Record, messages: list[Record]) -> None:
        self._conversations[bot].append(conv)
        self._messages[bot].extend(messages)
        self._by_conversation[conv["_id"]] = (bot, messages)

    def add_conversation(
        self, bot: str, start_time: float, n_messages: int = 3
    ) -> tuple[Record, list[Record]]:
        """Add a conversation (messages at/after start_time) while serving.

        Returns the conversation and its messages as served by default.
        """
        if bot not in self._conversations:
            msg = f"unknown bot {bot!r}"
            raise ValueError(msg)
        if n_messages < 0:
            msg = "n_messages must be >= 0"
            raise ValueError(msg)
        with self._lock:
            gen = self._late
            first = _ms(start_time)
            times = [first]
            for gap in gen.gaps(max(n_messages - 1, 0)):
                times.append(times[-1] + gap)
            conv, messages = gen.conversation(None, first, times[:n_messages])
            self._store(bot, conv, messages)
            self._indexes.clear()
            self.build_indexes()
            self._version += 1
        return (
            _served_copy("conversations", conv),
            [_served_copy("messages", m) for m in messages],
        )

    # -- reading --------------------------------------------------------

    @property
    def version(self) -> int:
        """Bumped on every change; lets servers cache query results."""
        return self._version

    def __len__(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._conversations.values()) + sum(
                len(v) for v in self._messages.values()
            )

    def count(self, endpoint: str, bot: str | None = None) -> int:
        """Number of stored records of an endpoint (one bot or all)."""
        store = self._store_for(endpoint)
        with self._lock:
            return sum(len(store[b]) for b in self._bots(bot))

    def conversations(
        self, bot: str | None = None, *, time_format: str = "seconds", as_of: float | None = None
    ) -> list[Record]:
        """All conversations as served, ordered by bot, startTime and _id; with `as_of`, as
        they were at that moment (see `select`)."""
        return self._served("conversations", bot, time_format, as_of)

    def messages(
        self, bot: str | None = None, *, time_format: str = "seconds", as_of: float | None = None
    ) -> list[Record]:
        """All messages as served, ordered by bot, time and _id; with `as_of`, only those
        sent by then."""
        return self._served("messages", bot, time_format, as_of)

    def ids(self, endpoint: str, bot: str | None = None) -> set[str]:
        """The `_id` of every record of an endpoint (one bot or all)."""
        store = self._store_for(endpoint)
        with self._lock:
            return {r["_id"] for b in self._bots(bot) for r in store[b]}

    def conversation_messages(self, conversation_id: str) -> list[Record]:
        """Stored (unformatted) messages of one conversation; empty if unknown."""
        with self._lock:
            found = self._by_conversation.get(conversation_id)
            return list(found[1]) if found else []

    def select(
        self,
        endpoint: str,
        bot: str,
        start_time: int,
        end_time: int,
        *,
        bounds: str = "[)",
        conversation_filter: str = "startTime",
        conversation_id: str | None = None,
        as_of: float | None = None,
    ) -> list[Record]:
        """Stored records in a window, ascending by filter time then _id.

        With `as_of` (unix seconds), the archive as it was at that moment: nothing that
        started or was sent later, and each conversation with the `lastActionAt` of its
        last message sent by then, without the tag `resolved` until its last message.
        The window then filters on those values."""
        if bounds not in BOUNDS:
            msg = f"unknown bounds {bounds!r}"
            raise ValueError(msg)
        field = "time" if endpoint == "messages" else conversation_filter
        if field not in ("time", *CONVERSATION_FILTERS):
            msg = f"unknown conversation_filter {conversation_filter!r}"
            raise ValueError(msg)
        if conversation_id is not None and endpoint == "messages":
            with self._lock:
                found = self._by_conversation.get(conversation_id)
                if not found or found[0] != bot:
                    return []
                records = sorted(found[1], key=lambda r: (_ms(r["time"]), r["_id"]))
            keys = [_ms(r["time"]) for r in records]
        else:
            keys, records = self._index(endpoint, bot, field)
        if as_of is not None and endpoint == "conversations":
            keys, records = self._views_by(bot, field, _ms(as_of))
        lo_ms, hi_ms = start_time * 1000, end_time * 1000
        lo = (bisect.bisect_left if bounds[0] == "[" else bisect.bisect_right)(keys, lo_ms)
        hi = (bisect.bisect_right if bounds[1] == "]" else bisect.bisect_left)(keys, hi_ms)
        selected = records[lo:hi] if hi > lo else []
        if as_of is not None and endpoint == "messages":
            selected = [r for r in selected if _ms(r["time"]) <= _ms(as_of)]
        return selected

    # -- internals ------------------------------------------------------

    def _store_for(self, endpoint: str) -> dict[str, list[Record]]:
        if endpoint == "conversations":
            return self._conversations
        if endpoint == "messages":
            return self._messages
        msg = f"unknown endpoint {endpoint!r}"
        raise ValueError(msg)

    def _bots(self, bot: str | None) -> Iterable[str]:
        if bot is None:
            return self.bots
        if bot not in self._conversations:
            msg = f"unknown bot {bot!r}"
            raise ValueError(msg)
        return (bot,)

    def build_indexes(self) -> None:
        """Sort every window index now, so that no request waits for one to be built."""
        for bot in self.bots:
            self._index("messages", bot, "time")
            for field in CONVERSATION_FILTERS:
                self._index("conversations", bot, field)

    def _index(self, endpoint: str, bot: str, field: str) -> tuple[list[int], list[Record]]:
        with self._lock:
            key = (endpoint, bot, field)
            found = self._indexes.get(key)
            if found is None:
                pairs = sorted(
                    ((_ms(r[field]), r["_id"], r) for r in self._store_for(endpoint)[bot]),
                    key=lambda p: (p[0], p[1]),
                )
                found = ([p[0] for p in pairs], [p[2] for p in pairs])
                self._indexes[key] = found
            return found

    def _view(self, conversation: Record, as_of_ms: int) -> Record | None:
        """A conversation as it was at `as_of_ms`; None if it had not started."""
        if _ms(conversation["startTime"]) > as_of_ms:
            return None
        messages = self._by_conversation[conversation["_id"]][1]
        sent = sum(1 for m in messages if _ms(m["time"]) <= as_of_ms)
        if sent == len(messages):
            return conversation
        key = (conversation["_id"], sent)
        view = self._views.get(key)
        if view is None:
            last = messages[sent - 1]["time"] if sent else conversation["startTime"]
            tags = [tag for tag in conversation["tags"] if tag != "resolved"]
            view = self._views[key] = {**conversation, "lastActionAt": last, "tags": tags}
        return view

    def _views_by(self, bot: str, field: str, as_of_ms: int) -> tuple[list[int], list[Record]]:
        """Conversations of a bot as they were at `as_of_ms`, sorted by `field` then _id."""
        with self._lock:
            keys, records = self._index("conversations", bot, "startTime")
            started = records[: bisect.bisect_right(keys, as_of_ms)]
            views = [v for r in started if (v := self._view(r, as_of_ms)) is not None]
        pairs = sorted(((_ms(v[field]), v["_id"], v) for v in views), key=lambda p: (p[0], p[1]))
        return [p[0] for p in pairs], [p[2] for p in pairs]

    def _served(
        self, endpoint: str, bot: str | None, time_format: str, as_of: float | None = None
    ) -> list[Record]:
        field = "time" if endpoint == "messages" else "startTime"
        out: list[Record] = []
        for name in self._bots(bot):
            if as_of is None:
                records = self._index(endpoint, name, field)[1]
            elif endpoint == "conversations":
                records = self._views_by(name, field, _ms(as_of))[1]
            else:
                records = [
                    r for r in self._index(endpoint, name, field)[1] if _ms(r["time"]) <= _ms(as_of)
                ]
            out.extend(_served_copy(endpoint, r, time_format) for r in records)
        return out


def generate_dataset(
    *,
    seed: int = 1,
    bots: tuple[str, ...] = ("r3-218210", "support-bot"),
    start: int = DEFAULT_START,
    days: int = 3,
    conversations_per_day: int = 40,
    messages_per_conversation: tuple[int, int] = (2, 8),
    extra_field_rate: float = 0.0,
    day_boundary_conversations: bool = True,
    conversations_per_bot: Sequence[int] | None = None,
    long_text_rate: float = 0.0,
    long_text_bytes: int = 5000,
    long_conversation_rate: float = 0.0,
    long_conversation_hours: tuple[float, float] = (1.0, 72.0),
) -> Dataset:
    """Generate a deterministic dataset.

    `conversations_per_day` counts all bots together. About 5% of the
    conversations and of the messages sit exactly on a whole hour, and each
    bot has a conversation exactly at `start` and at every day boundary.
    All times fall in [start, start + days * 86400).

    Other shapes, all off by default (the default data does not change):

    - `day_boundary_conversations=False`: no conversation is forced onto `start` and
      the day boundaries; every one of `conversations_per_day` goes to a bot drawn by
      weight (the first bot 3, the others 1).
    - `conversations_per_bot`: one count per bot, in the order of `bots`: each bot gets
      exactly that many conversations over the whole period, on days drawn uniformly and
      at the usual hours. It replaces `conversations_per_day`, and no conversation is
      forced onto a day boundary, so a quiet bot can have fewer conversations than days.
    - `long_text_rate`: the fraction of messages that carry a long text of about
      `long_text_bytes` bytes (UTF-8): as `userInput` (typed) of a user's message, else
      as `outMsg` or the `text` of an `outMsg` object.
    - `long_conversation_rate`: the fraction of conversations (of two messages or more) that
      pause for `long_conversation_hours` (a uniform draw between MIN and MAX hours) before
      one later message, so that they last hours to days: their `lastActionAt` is that much
      after their `startTime`. Seen through `Dataset.select(as_of=...)`, such a conversation
      changes while it lasts.
    """
    low, high = messages_per_conversation
    if days < 1 or conversations_per_day < 0 or not 1 <= low <= high:
        msg = "need days >= 1, conversations_per_day >= 0 and 1 <= min <= max messages"
        raise ValueError(msg)
    if not 0.0 <= extra_field_rate <= 1.0:
        msg = "extra_field_rate must be within [0, 1]"
        raise ValueError(msg)
    if conversations_per_bot is not None and (
        len(conversations_per_bot) != len(bots) or min(conversations_per_bot, default=0) < 0
    ):
        msg = "conversations_per_bot needs one count >= 0 per bot"
        raise ValueError(msg)
    if not 0.0 <= long_text_rate <= 1.0 or long_text_bytes < 1:
        msg = "long_text_rate must be within [0, 1] and long_text_bytes >= 1"
        raise ValueError(msg)
    shortest, longest = long_conversation_hours
    if not 0.0 <= long_conversation_rate <= 1.0 or not 0 < shortest <= longest:
        msg = "long_conversation_rate must be within [0, 1] and 0 < min <= max hours"
        raise ValueError(msg)
    data = Dataset(bots=bots, start=start, days=days, seed=seed,
                   extra_field_rate=extra_field_rate)  # fmt: skip
    gen = _Generator(
        f"data:{seed}",
        extra_field_rate,
        data._used_ids,
        long_text_rate=long_text_rate,
        long_text_bytes=long_text_bytes,
        long_conversations=(long_conversation_rate, long_conversation_hours),
    )
    rng = gen.rng
    start_ms, end_ms = data.start * 1000, data.end * 1000
    # The main bot gets more traffic than the others.
    bot_cum = [sum(3 if j == 0 else 1 for j in range(i + 1)) for i in range(len(bots))]
    bot_locale = {b: _LOCALES[i % len(_LOCALES)] if i else None for i, b in enumerate(bots)}
    bots_by_day: list[list[str]] | None = None
    if conversations_per_bot is not None:
        bots_by_day = [[] for _ in range(days)]
        for bot, count in zip(bots, conversations_per_bot, strict=True):
            for _ in range(count):
                bots_by_day[rng.randrange(days)].append(bot)
    forced = len(bots) if day_boundary_conversations else 0
    for day in range(days):
        day_ms = start_ms + day * _DAY * 1000
        if bots_by_day is None:
            k = conversations_per_day
            hours = rng.choices(range(24), cum_weights=_HOUR_CUM, k=k)
            chosen = rng.choices(bots, cum_weights=bot_cum, k=k)
            slots = [(bots[i], True) if i < forced else (chosen[i], False) for i in range(k)]
        else:
            slots = [(bot, False) for bot in bots_by_day[day]]
            hours = rng.choices(range(24), cum_weights=_HOUR_CUM, k=len(slots))
        for (bot, on_boundary), hour in zip(slots, hours, strict=True):
            first_ms = day_ms if on_boundary else day_ms + hour * _HOUR_MS
            times = _conversation_times(gen, first_ms, on_boundary, (low, high), (start_ms, end_ms))
            times = gen.stretch(times, end_ms)
            conv, messages = gen.conversation(bot_locale[bot], times[0], times)
            data._store(bot, conv, messages)
    return data


def _conversation_times(
    gen: _Generator,
    first_ms: int,
    exact: bool,
    messages: tuple[int, int],
    span_ms: tuple[int, int],
) -> list[int]:
    """Times of the messages of one conversation started exactly at `first_ms` if `exact`,
    else within the hour from `first_ms`; all of them within `span_ms`."""
    rng = gen.rng
    start_ms, end_ms = span_ms
    n = rng.randint(*messages)
    gaps = gen.gaps(n - 1)
    r = rng.random()
    if exact:
        first = first_ms
    elif r < 0.05:
        first = -(-first_ms // _HOUR_MS) * _HOUR_MS
    else:
        first = first_ms + int(rng.random() * _HOUR_MS)
        if r > 0.9:
            first -= first % 1000  # some systems store whole seconds
    times = [first]
    for gap in gaps:
        t = times[-1] + gap
        if rng.random() < 0.1 and (t - t % 1000) > times[-1]:
            t -= t % 1000
        times.append(t)
    if not exact and 0.05 <= r < 0.30 and n > 1:
        # Move the conversation so that one later message lands on
        # a whole hour, which puts ~5% of messages on the hour.
        k = 1 + int(rng.random() * (n - 1))
        shift = times[k] % _HOUR_MS
        if times[0] - shift >= start_ms:
            times = [t - shift for t in times]
    if times[-1] >= end_ms:  # keep the whole conversation inside the data
        shift = times[-1] - end_ms + 1 + int(rng.random() * 60_000)
        times = [t - shift for t in times]
    return times
