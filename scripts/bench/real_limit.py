"""Wall time at the API's real limit (3 requests/s per endpoint, 0.3 s latency).

- one busy bot, and the busy bot with 8 quiet ones, from the first record and from a year
  before: wall time against "the limit" (the busier endpoint's floor / 3 s), and requests per
  endpoint;
- the quiet year, for the new code only: its real wall time. Skipped with ``--quick``, and
  when the counts imply it would take longer than ``--real-limit-minutes``: the before code
  is never run there (81 minutes).
"""

from __future__ import annotations

from tap_deepconverse.simulator import Dataset, Simulator, SimulatorOptions

from .plans import API_RATE, ENDPOINTS, LEADS, REAL_LATENCY, Plan, Shape, floors, limit_seconds
from .report import describe, duration, per_endpoint, table
from .runner import Bench, TapRun
from .versions import Code, in_order, new_first


def wall_time_against_limit(
    bench: Bench, codes: list[Code], plan: Plan, data: dict[str, Dataset]
) -> None:
    """Each code's wall time, on the busy bot and on it with quiet ones, against the limit."""
    print(
        f"Simulator at 3 requests/s per endpoint and {REAL_LATENCY:g} s latency, the tap's "
        "default settings. The limit: the busier endpoint's floor / 3 requests/s."
    )
    rows: list[list[str]] = []
    options = SimulatorOptions(rate_limit=API_RATE, latency=REAL_LATENCY)
    for key, shape in (("busy", plan.busy), ("mixed", plan.mixed)):
        dataset = data[key]
        print(f"- {describe(shape, dataset)}")
        for start, lead in LEADS.items():
            limit = limit_seconds(dataset, lead_days=lead)
            found: dict[str, list[str]] = {}
            with Simulator(dataset, options) as sim:
                for code in new_first(codes):
                    run = bench.run(code, sim, bench.config(sim, dataset, lead_days=lead))
                    found[code.label] = [
                        shape.title, start, code.label, duration(run.seconds), duration(limit),
                        f"{run.seconds / limit:.2f}", per_endpoint(run.requests),
                        per_endpoint(floors(dataset, lead_days=lead)), str(run.throttled),
                        str(run.exit_code),
                        bench.check_records(run, dataset, f"{shape.title}, 3 req/s",
                                            streams=ENDPOINTS),
                    ]  # fmt: skip
            rows += in_order(codes, found)
    table(
        ["shape", "start_date", "code", "wall", "the limit", "wall/limit", "requests", "floor",
         "HTTP 429", "exit", "records / dataset"],
        rows,
    )  # fmt: skip
    print("Goal for new: wall/limit <= 1.3 for the busy bot with 8 quiet ones.")


def quiet_year_at_real_limit(
    bench: Bench, counted: TapRun, shape: Shape, dataset: Dataset, real_limit_minutes: float
) -> None:
    """The export `counted` made without a limit, by the same code at the real limit, unless
    its requests imply more than `real_limit_minutes`."""
    print(f"\n### {shape.title}, new code at the real limit\n")
    estimate = counted.total_requests / API_RATE
    if estimate > real_limit_minutes * 60:
        print(
            f"Skipped: the new code made {counted.total_requests:,} requests without a limit, "
            f"up to {duration(estimate)} at 3 requests/s, more than --real-limit-minutes "
            f"{real_limit_minutes:g}."
        )
        return
    options = SimulatorOptions(rate_limit=API_RATE, latency=REAL_LATENCY)
    with Simulator(dataset, options) as sim:
        run = bench.run(counted.code, sim, bench.config(sim, dataset))
    limit = limit_seconds(dataset)
    table(
        ["shape", "code", "wall", "the limit", "wall/limit", "requests", "HTTP 429", "exit",
         "records / dataset"],
        [[
            shape.title, "new", duration(run.seconds), duration(limit),
            f"{run.seconds / limit:.2f}", per_endpoint(run.requests), str(run.throttled),
            str(run.exit_code), bench.check_records(run, dataset, f"{shape.title}, real limit",
                                                    streams=ENDPOINTS),
        ]],
    )  # fmt: skip
    print(
        f"Simulator at 3 requests/s per endpoint and {REAL_LATENCY:g} s latency, the tap's "
        "default settings. Goal: under 3 min."
    )
