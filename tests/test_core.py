"""The SDK's standard tap tests, run against the simulator.

Two of them are weak in singer-sdk 0.54 (primary-key uniqueness and final state); the real
checks are in ``test_export.py`` (no id emitted twice, a bookmark per bot and stream).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from singer_sdk.testing import SuiteConfig, get_tap_test_class
from singer_sdk.testing.suites import SingerTestSuite, tap_stream_attribute_tests
from singer_sdk.testing.templates import AttributeTestTemplate

from tap_deepconverse.simulator import (
    DEFAULT_API_KEY,
    Simulator,
    SimulatorOptions,
    generate_dataset,
)
from tap_deepconverse.tap import TapDeepConverse

SAMPLE_CONFIG: dict[str, Any] = {
    "api_key": DEFAULT_API_KEY,
    "api_url": "http://127.0.0.1:1",  # replaced by the simulator's address below
    "bot_names": ["r3-218210", "support-bot"],
    "start_date": "2025-01-01T00:00:00Z",
    "end_date": "2025-01-02T00:00:00Z",
    "requests_per_second": 50,
}


@pytest.fixture(scope="session", autouse=True)
def _standard_tests_simulator() -> Iterator[Simulator]:
    dataset = generate_dataset(seed=2, days=1, conversations_per_day=30)
    with Simulator(dataset, SimulatorOptions(rate_limit=None)) as sim:
        # The generated test class holds this very dict, so the address reaches its runs.
        SAMPLE_CONFIG["api_url"] = sim.url
        yield sim


def single_typed(test: type[AttributeTestTemplate]) -> type[AttributeTestTemplate]:
    """The SDK's attribute test, applied only to fields with one JSON type: it assumes, say,
    that a field whose types include boolean holds only booleans, which is not so for
    `outMsg` and `userInput` (any JSON)."""

    class SingleTyped(test):  # type: ignore[valid-type,misc]
        @classmethod
        def evaluate(cls, stream: Any, property_name: str, property_schema: dict) -> bool:
            types = property_schema.get("type")
            if isinstance(types, list) and len(set(types) - {"null"}) > 1:
                return False
            return bool(
                super().evaluate(
                    stream=stream, property_name=property_name, property_schema=property_schema
                )
            )

    SingleTyped.__name__ = test.__name__
    return SingleTyped


ATTRIBUTE_TESTS = SingerTestSuite(
    kind="tap_stream_attribute",
    tests=[single_typed(test) for test in tap_stream_attribute_tests.tests],
)

TestTapDeepConverse = get_tap_test_class(
    tap_class=TapDeepConverse,
    config=SAMPLE_CONFIG,
    parse_env_config=False,
    suite_config=SuiteConfig(max_records_limit=50),
    include_stream_attribute_tests=False,
    custom_suites=[ATTRIBUTE_TESTS],
)
