"""The datasets of a run, full size or ``--quick``, and the fewest requests each can take.

A dataset is a shape (``Shape``: bots, days, conversations per bot of about 5 messages
each); a ``Plan`` holds every shape of a run. The floor of an export is the sum over bots and
endpoints of max(ceil(records / page_size), ceil(days of data / max_window_days)), plus one
for an empty range before the data; the limit is the busier endpoint's floor at the API's 3
requests/s, which no export can beat.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tap_deepconverse.simulator import Dataset, generate_dataset

DAY = 86_400
ENDPOINTS = ("conversations", "messages")
API_RATE = 3.0  # requests per second per endpoint, the API's documented limit
PAGE_SIZE = 1000  # the tap's default page_size
MAX_WINDOW_DAYS = 31  # the tap's default max_window_days
REAL_LATENCY = 0.3
# Users set start_date well before their bot's first record: every scenario that a start
# before the data changes runs from the first record and from a year before it.
LEADS = {"at the first record": 0, "a year before": 365}


@dataclass(frozen=True)
class Shape:
    """A dataset: conversations per bot (about 5 messages each) spread over some days."""

    title: str
    bots: tuple[str, ...]
    days: int
    conversations: tuple[int, ...]
    long_text_rate: float = 0.0
    long_conversation_rate: float = 0.0  # conversations lasting 1 hour to 3 days

    def build(self) -> Dataset:
        return generate_dataset(
            seed=1,
            bots=self.bots,
            days=self.days,
            conversations_per_bot=self.conversations,
            long_text_rate=self.long_text_rate,
            long_conversation_rate=self.long_conversation_rate,
        )


def quiet(count: int) -> tuple[str, ...]:
    return tuple(f"quiet-{i:02d}" for i in range(1, count + 1))


@dataclass(frozen=True)
class Plan:
    """Every dataset of a run, full size or ``--quick``."""

    busy: Shape
    quiet_year: Shape
    mixed: Shape
    throughput: Shape
    throughput_latency: float
    rates: Shape
    memory: Shape
    memory_twice: Shape
    outage: Shape
    changing: Shape
    changing_busy: Shape

    @staticmethod
    def full() -> Plan:
        return Plan(
            busy=Shape("one busy bot, 60 days", ("busy",), 60, (6100,)),
            quiet_year=Shape("20 quiet bots, 365 days", quiet(20), 365, (100,) * 20),
            mixed=Shape(
                "busy bot + 8 quiet ones, 60 days", ("busy", *quiet(8)), 60, (6100,) + (100,) * 8
            ),
            throughput=Shape("one bot, 30 days, page_size 100", ("busy",), 30, (3000,)),
            throughput_latency=1.0,
            rates=Shape("2 bots, 30 days", ("r3-218210", "support-bot"), 30, (30_000, 10_000)),
            memory=Shape(
                "2 bots, 30 days, 1 message in 8 with 5 KB",
                ("r3-218210", "support-bot"),
                30,
                (30_000, 10_000),
                long_text_rate=0.125,
            ),
            memory_twice=Shape(
                "2 bots, 60 days, 1 message in 8 with 5 KB",
                ("r3-218210", "support-bot"),
                60,
                (60_000, 20_000),
                long_text_rate=0.125,
            ),
            outage=Shape("busy bot + quiet one, 30 days", ("busy", "quiet"), 30, (900, 60)),
            changing=Shape(
                "2 bots, 20 days, 660 conversations, 30% lasting 1 hour to 3 days",
                ("r3-218210", "support-bot"),
                20,
                (495, 165),
                long_conversation_rate=0.3,
            ),
            changing_busy=Shape(
                "one busy bot, 20 days, 30,000 conversations, 30% lasting 1 hour to 3 days",
                ("busy",),
                20,
                (30_000,),
                long_conversation_rate=0.3,
            ),
        )

    @staticmethod
    def quick() -> Plan:
        return Plan(
            busy=Shape("one busy bot, 6 days", ("busy",), 6, (600,)),
            quiet_year=Shape("5 quiet bots, 120 days", quiet(5), 120, (30,) * 5),
            mixed=Shape("busy bot + 3 quiet ones, 6 days", ("busy", *quiet(3)), 6, (600, 5, 5, 5)),
            throughput=Shape("one bot, 3 days, page_size 100", ("busy",), 3, (300,)),
            throughput_latency=0.3,
            rates=Shape("2 bots, 3 days", ("r3-218210", "support-bot"), 3, (3000, 1000)),
            memory=Shape(
                "2 bots, 3 days, 1 message in 8 with 5 KB",
                ("r3-218210", "support-bot"),
                3,
                (3000, 1000),
                long_text_rate=0.125,
            ),
            memory_twice=Shape(
                "2 bots, 6 days, 1 message in 8 with 5 KB",
                ("r3-218210", "support-bot"),
                6,
                (6000, 2000),
                long_text_rate=0.125,
            ),
            outage=Shape("busy bot + quiet one, 10 days", ("busy", "quiet"), 10, (300, 20)),
            changing=Shape(
                "2 bots, 16 days, 300 conversations, 30% lasting 1 hour to 3 days",
                ("r3-218210", "support-bot"),
                16,
                (225, 75),
                long_conversation_rate=0.3,
            ),
            changing_busy=Shape(
                "one busy bot, 16 days, 1,600 conversations, 30% lasting 1 hour to 3 days",
                ("busy",),
                16,
                (1600,),
                long_conversation_rate=0.3,
            ),
        )


def floors(
    dataset: Dataset,
    *,
    per_page: int = PAGE_SIZE,
    max_window_days: int = MAX_WINDOW_DAYS,
    lead_days: int = 0,
) -> dict[str, int]:
    """Fewest requests of a full export, per endpoint: each bot needs a page per per_page
    records and a window per max_window_days of its data's range, whichever is more, and
    one request more for an empty range before the data (``lead_days``): a window as long
    as the API answers completely, as nothing in it is paged."""
    windows = math.ceil((dataset.end - dataset.start) / (max_window_days * DAY))
    lead_in = 1 if lead_days else 0
    return {
        endpoint: sum(
            max(math.ceil(dataset.count(endpoint, bot) / per_page), windows) + lead_in
            for bot in dataset.bots
        )
        for endpoint in ENDPOINTS
    }


def limit_seconds(dataset: Dataset, *, per_page: int = PAGE_SIZE, lead_days: int = 0) -> float:
    """The busier endpoint's floor at the API's rate: no export can be faster."""
    return max(floors(dataset, per_page=per_page, lead_days=lead_days).values()) / API_RATE


def windowed_requests(
    records: int, *, per_page: int, pages: int, clump: float = 1.0
) -> tuple[float, int]:
    """The fewest requests a plan of windows expected to hold at most ``pages`` pages
    could make for ``records``, had it known each window's expected count exactly, and
    the count each window should then be aimed at. Records come in clumps of ``clump``
    (a conversation's messages), the clumps in a window as random as Poisson's (real
    traffic varies more): a window's last page is partly filled, and one that holds a
    few records over whole pages costs a page more. The floor counts neither."""

    def mean_pages(aim: int) -> float:
        # E[max(1, ceil(round(clump * K) / per_page))], K ~ Poisson(aim / clump), summed
        # where it weighs.
        mean = aim / clump
        spread = 10 * math.isqrt(math.ceil(mean)) + 10
        total = 0.0
        for k in range(max(0, math.floor(mean) - spread), math.ceil(mean) + spread):
            weight = math.exp(k * math.log(mean) - mean - math.lgamma(k + 1))
            total += weight * max(1, math.ceil(round(clump * k) / per_page))
        return total

    best = min(range(per_page // 2, pages * per_page + 1), key=lambda a: mean_pages(a) / a)
    return records * mean_pages(best) / best, best
