"""Bad settings stop the tap before any request, with a message naming the setting."""

from __future__ import annotations

from typing import Any

import pytest

from tap_deepconverse.simulator import DEFAULT_API_KEY, Simulator
from tests.conftest import TapRunner, config_for

DROP = object()

BAD_SETTINGS: list[tuple[str, dict[str, Any], str]] = [
    ("missing key", {"api_key": DROP}, "api_key"),
    ("key not a string", {"api_key": 12345}, "api_key"),
    ("missing bots", {"bot_names": DROP}, "bot_names"),
    ("no bots", {"bot_names": []}, "bot_names"),
    ("bots not a list", {"bot_names": "r3-218210"}, "bot_names"),
    ("empty bot name", {"bot_names": ["ok", " "]}, "bot_names"),
    ("duplicate bots", {"bot_names": ["a", "b", "a"]}, "bot_names"),
    ("missing start", {"start_date": DROP}, "start_date"),
    ("start not a date", {"start_date": "last tuesday"}, "start_date"),
    ("end not a date", {"end_date": "2025-02-30"}, "end_date"),
    ("end before start", {"end_date": "2024-12-31T00:00:00Z"}, "end_date"),
    ("url not http", {"api_url": "ftp://example.com"}, "api_url"),
    ("url not a url", {"api_url": "converseapps"}, "api_url"),
    ("plain http off loopback", {"api_url": "http://api.converseapps.com"}, "api_url"),
    ("page size zero", {"page_size": 0}, "page_size"),
    ("page size too big", {"page_size": 1001}, "page_size"),
    ("page size not int", {"page_size": "many"}, "page_size"),
    ("window zero", {"window_hours": 0}, "window_hours"),
    ("negative lookback", {"lookback_minutes": -5}, "lookback_minutes"),
    ("negative re-read", {"conversation_reread_days": -1}, "conversation_reread_days"),
    ("re-read not whole days", {"conversation_reread_days": 1.5}, "conversation_reread_days"),
    ("conversation ids not a list", {"conversation_ids": "abc"}, "conversation_ids"),
    ("empty conversation id", {"conversation_ids": [""]}, "conversation_ids"),
    ("rate zero", {"requests_per_second": 0}, "requests_per_second"),
    ("negative retries", {"max_retries": -1}, "max_retries"),
    ("timeout zero", {"request_timeout": 0}, "request_timeout"),
    ("no parallel windows", {"max_parallel_windows": 0}, "max_parallel_windows"),
]


@pytest.mark.parametrize(
    ("change", "setting"), [(c, s) for _, c, s in BAD_SETTINGS], ids=[n for n, _, _ in BAD_SETTINGS]
)
def test_bad_setting_is_rejected_before_any_request(
    tap: TapRunner, simulator: Simulator, change: dict[str, Any], setting: str
) -> None:
    config = config_for(simulator)
    for key, value in change.items():
        if value is DROP:
            del config[key]
        else:
            config[key] = value
    run = tap.run(config)
    assert run.exit_code == 1
    assert setting in run.stderr
    assert "Traceback" not in run.stderr
    assert simulator.requests == []
    assert DEFAULT_API_KEY not in run.stderr + run.stdout
    assert "12345" not in run.stderr


def test_https_and_loopback_urls_are_accepted() -> None:
    from tap_deepconverse.tap import config_problems

    base = {"bot_names": ["a"], "start_date": "2025-01-01T00:00:00Z"}
    for url in ("https://api.converseapps.com", "http://127.0.0.1:8787", "http://localhost:1"):
        assert config_problems({**base, "api_url": url}) == []
