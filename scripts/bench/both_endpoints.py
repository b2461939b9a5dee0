"""Both endpoints at once: how close each endpoint's requests come to the API's rate.

- at 1 s latency, one bot with 3,000 conversations and about 15,000 messages, page_size 100,
  from the first record and from a year before: the full run against its ceiling, against a
  run of the messages stream alone (a catalog that selects only it), each endpoint's
  requests per second in the full run, and how long its requests went one at a time with
  the best rate that start allowed;
- at 1 s latency, an export of 240,000 records of the usual size with the tap's default
  settings: each endpoint's requests per second over a run long enough for its start and
  end to weigh little.
"""

from __future__ import annotations

import itertools

from tap_deepconverse.client import RATE_MARGIN
from tap_deepconverse.simulator import Dataset, Simulator, SimulatorOptions

from .plans import API_RATE, ENDPOINTS, LEADS, Shape, limit_seconds, windowed_requests
from .report import CHAIN_GOAL, chains_text, describe, duration, per_endpoint, rate_text, table
from .runner import Bench
from .versions import Code, in_order, new_first

# Seconds between requests at the limiter's pace.
PACE_SECONDS = RATE_MARGIN / API_RATE


def both_endpoints_at_once(
    bench: Bench, codes: list[Code], shape: Shape, dataset: Dataset, latency: float
) -> None:
    print(f"\n### Both endpoints at once: {describe(shape, dataset)}\n")
    print(
        f"Simulator at 3 requests/s per endpoint and {latency:g} s latency, page_size 100. "
        "A full run, then a run of the messages stream alone (the busier endpoint)."
    )
    rows: list[list[str]] = []
    lone_starts: dict[str, str] = {}  # the new code's conversations: the best a lone start allows
    options = SimulatorOptions(rate_limit=API_RATE, latency=latency)
    for start, lead in LEADS.items():
        found: dict[str, list[str]] = {}
        ceiling = limit_seconds(dataset, per_page=100, lead_days=lead)
        with Simulator(dataset, options) as sim:
            for code in new_first(codes):
                config = bench.config(sim, dataset, lead_days=lead, page_size=100)
                full = bench.run(code, sim, config)
                full_ok = bench.check_records(full, dataset, shape.title, streams=ENDPOINTS)
                catalog = bench.messages_only_catalog(code, sim, dataset)
                alone = bench.run(code, sim, config, catalog=catalog)
                alone_ok = bench.check_records(
                    alone, dataset, f"{shape.title}, messages alone", streams=("messages",)
                )
                rates = [rate_text(full.per_second[e]) for e in ENDPOINTS]
                starts = [start_text(full.arrivals[e], latency) for e in ENDPOINTS]
                # The same rate for the requests the run made: its pace, apart from its count.
                paced = max(full.requests.values()) / API_RATE
                if code.label == "new":
                    count = full.requests["conversations"]
                    best = best_rate(count, alone_for=latency, alone=1)
                    lone_starts[start] = f"{count} requests {start}: {best:.2f}"
                found[code.label] = [
                    start, code.label, duration(full.seconds), duration(ceiling),
                    f"{full.seconds / ceiling:.2f}", f"{full.seconds / paced:.2f}",
                    duration(alone.seconds),
                    f"{alone.seconds / full.seconds:.2f}", *rates, " / ".join(starts),
                    per_endpoint(full.requests),
                    chains_text(full.pages_in_a_row),
                    str(full.throttled + alone.throttled),
                    f"{full.exit_code} / {alone.exit_code}", f"{full_ok}; {alone_ok}",
                ]  # fmt: skip
        rows += in_order(codes, found)
    table(
        ["start_date", "code", "full run", "ceiling", "full / ceiling",
         "full / its own requests at 3/s", "messages alone",
         "messages alone / full", "conversations req/s", "messages req/s",
         "one at a time until; best rate after (conversations / messages)", "requests (full)",
         "pages in a row (full): most; queries over 4",
         "HTTP 429", "exit", "records / dataset"],
        rows,
    )  # fmt: skip
    print(
        "The ceiling: the busier endpoint's floor (pages of 100) at 3 requests/s; 'its own "
        "requests' are those the busier endpoint made in the run, at that rate. Goals for "
        f"new: full run within 1.1x of the ceiling, messages alone / full >= 0.85; at "
        f"{latency:g} s latency each endpoint >= 0.9 of 3 requests/s (its mean rate from its "
        "first to its last request); no query paged for more than about 4 pages one after "
        "the other."
    )
    print(
        "'One at a time until': the seconds from an endpoint's first request to the first "
        "one sent while another was in flight (before it, each request waited for the "
        "answer before it); 'best rate after': the mean rate its requests could reach "
        "with that start, the rest sent at the limiter's pace. Nothing is known of a bot's "
        f"records before a first answer: with one request alone for {latency:g} s and the "
        "rest at that pace, the new code's conversations reach at most (of 3 requests/s): "
        + "; ".join(lone_starts.values())
        + "."
    )
    print_best_pace(dataset, latency)


def best_rate(requests: int, *, alone_for: float, alone: int) -> float:
    """The best mean rate, as a share of the API's, of ``requests`` requests: the first
    ``alone`` after the first each waited for the answer to the one before (``alone_for``
    seconds from the first request to the last of them), the rest came at the limiter's
    pace. From the first request to the last, as the simulator measures it."""
    if requests < 2:
        return 0.0
    span = alone_for + max(requests - alone - 1, 0) * PACE_SECONDS
    return (requests - 1) / span / API_RATE


def start_text(arrivals: list[float], latency: float) -> str:
    """How long an endpoint's requests came one at a time, each after the answer to the one
    before (about ``latency`` apart), and the best rate its count allowed after that."""
    if len(arrivals) < 2 or latency < 2 * PACE_SECONDS:
        return "-"  # answers come about as fast as the pace: one at a time costs little
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    # The first request sent well before the answer to the one before it.
    alone = next((i for i, gap in enumerate(gaps) if gap < latency - PACE_SECONDS), len(gaps))
    alone_for = arrivals[alone] - arrivals[0]
    best = best_rate(len(arrivals), alone_for=alone_for, alone=alone)
    return f"{alone_for:.1f} s; {best:.2f}"


def print_best_pace(dataset: Dataset, latency: float) -> None:
    """The fastest run that windows of about CHAIN_GOAL pages allow, against the ceiling:
    what the goals ask together."""
    records = dataset.count("messages")
    clump = records / dataset.count("conversations")
    requests, aim = windowed_requests(records, per_page=100, pages=CHAIN_GOAL, clump=clump)
    seconds = latency + requests * PACE_SECONDS
    ceiling = limit_seconds(dataset, per_page=100)
    print(
        f"\nThe ceiling counts full pages only. Had a plan known each window's expected "
        f"count exactly, windows aimed at no more than {CHAIN_GOAL} pages would take "
        f"{requests:.0f} requests at best for the {records:,} messages (aimed at {aim} "
        f"records, in conversations of {clump:.1f} messages, as many in a window as "
        f"Poisson's law gives): a window's last page is partly filled. At the limiter's "
        f"pace ({RATE_MARGIN:g} / 3 s apart), after a first answer, that is "
        f"{duration(seconds)}, {seconds / ceiling:.2f} of the ceiling from the first record."
    )


def request_rate_per_endpoint(
    bench: Bench, codes: list[Code], shape: Shape, dataset: Dataset, latency: float
) -> None:
    """Each endpoint's request rate over a long export, where the start and the end of a
    run weigh little."""
    print(f"\n### Request rate per endpoint: {describe(shape, dataset)}\n")
    print(
        f"Simulator at 3 requests/s per endpoint and {latency:g} s latency, the tap's default "
        "settings. Each endpoint's mean rate from its first to its last request."
    )
    found: dict[str, list[str]] = {}
    options = SimulatorOptions(rate_limit=API_RATE, latency=latency)
    with Simulator(dataset, options) as sim:
        for code in new_first(codes):
            run = bench.run(code, sim, bench.config(sim, dataset))
            ok = bench.check_records(run, dataset, f"{shape.title}, rates", streams=ENDPOINTS)
            rates = [rate_text(run.per_second[e]) for e in ENDPOINTS]
            found[code.label] = [
                code.label, *rates, per_endpoint(run.requests), duration(run.seconds),
                str(run.throttled), str(run.exit_code), ok,
            ]  # fmt: skip
    table(
        ["code", "conversations req/s", "messages req/s", "requests", "wall", "HTTP 429",
         "exit", "records / dataset"],
        in_order(codes, found),
    )  # fmt: skip
    print(f"Goal for new: at {latency:g} s latency each endpoint >= 0.9 of 3 requests/s.")
