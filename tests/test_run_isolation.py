"""Two taps in one process share nothing: what a run learns and holds (its limiters, byte
budget, API readings and window planners) belongs to that run's tap. Here two taps run one
after the other in this test's process against the same simulated API."""

from __future__ import annotations

import pytest

from tap_deepconverse.simulator import Simulator, SimulatorOptions, generate_dataset
from tap_deepconverse.tap import TapDeepConverse
from tests.conftest import DAY, config_for

MESSAGES_URL = "/conversations/export/v1/messages"


def test_two_taps_in_one_process_share_nothing(capfd: pytest.CaptureFixture[str]) -> None:
    # The API cuts windows longer than 7 days: the first tap learns it; the second, with
    # settings of its own, must start from nothing.
    dataset = generate_dataset(seed=8, days=30, conversations_per_day=6, bots=("a-bot",))
    options = SimulatorOptions(rate_limit=None, cut_window_seconds=7 * DAY)
    with Simulator(dataset, options) as sim:
        end = {"end_date": "2025-01-31T00:00:00Z"}
        first = TapDeepConverse(
            config=config_for(sim, requests_per_second=200, **end), parse_env_config=False
        )
        first.sync_all()
        first_out = capfd.readouterr()
        assert '"type":"RECORD"' in first_out.out
        assert first.run.readings.longest("messages") is not None  # it learnt the cut

        second = TapDeepConverse(
            config=config_for(sim, requests_per_second=40, window_hours=12, **end),
            parse_env_config=False,
        )
        assert second.run is not first.run
        # Nothing learnt by the first tap: no limit known, windows trusted only to its own
        # window_hours plus the lookback.
        assert second.run.readings.longest("messages") is None
        assert second.run.readings.complete_length("messages") == 12 * 3600 + 60 * 60
        assert second.run.budget is not first.run.budget
        assert second.run.budget.used == 0
        assert first.run.budget.used == 0  # the first run gave back every byte it took

        # The same endpoint has a limiter per run, each at its own run's rate.
        url = sim.url + MESSAGES_URL
        assert second.run.limiters.of(url, 40) is not first.run.limiters.of(url, 200)
        assert first.run.limiters.of(url, 200).rate == 200
        assert second.run.limiters.of(url, 40).rate == 40

        # Each stream works with its own tap's run, and plans its own windows.
        second.sync_all()
        capfd.readouterr()
        for name in ("conversations", "messages"):
            first_stream, second_stream = first.streams[name], second.streams[name]
            assert getattr(first_stream, "run", None) is first.run
            assert getattr(second_stream, "run", None) is second.run
            assert second.run.windows[name] is not first.run.windows[name]
        assert first.run.conversations is not None
        assert second.run.conversations is not first.run.conversations
