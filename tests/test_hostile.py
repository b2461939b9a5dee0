"""Answers no API should send, and odd states and catalogs: the tap as a real process against
the simulator's hostile mode over HTTP (and HTTPS). Each case either completes, having
mended what it could and said so, or stops with one line, exit code 1 and the window."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pytest

from tap_deepconverse.client import (
    MAX_PAGES_WITHOUT_RECORDS,
    Counters,
    ExportClient,
    Page,
    Query,
    RateLimiter,
)
from tap_deepconverse.errors import ApiUnavailableError
from tap_deepconverse.simulator import DEFAULT_API_KEY, Dataset, Simulator, SimulatorOptions
from tap_deepconverse.timestamps import normalize_timestamp
from tap_deepconverse.windows import Window
from tests.conftest import TapRun, TapRunner, bookmark, config_for, parse_messages

STREAMS = ("conversations", "messages")
TIME_KEY = {"conversations": "lastActionAt", "messages": "time"}
FAST = {"requests_per_second": 100, "window_hours": 24, "request_timeout": 5, "max_retries": 2}
SECRET = "dc-live-SECRET-KEY-123"
SDK_ERROR_LINE = "An unhandled error occurred"


def hostile(dataset: Dataset, kind: str, **options: Any) -> Simulator:
    return Simulator(dataset, SimulatorOptions(rate_limit=None, hostile=kind, **options))


def assert_one_line_stop(run: TapRun, *expected: str) -> str:
    """Exit 1, no traceback, no SDK error line, and one ERROR line naming the window and
    holding each expected text; that line."""
    assert run.exit_code == 1, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    assert SDK_ERROR_LINE not in run.stderr
    errors = [line for line in run.stderr.splitlines() if "| ERROR" in line]
    assert len(errors) == 1, errors
    (line,) = errors
    assert "start_time=" in line
    assert "end_time=" in line
    for text in expected:
        assert text in line
    return line


def assert_complete(run: TapRun, dataset: Dataset) -> None:
    assert run.exit_code == 0, run.stderr[-3000:]
    assert "| ERROR" not in run.stderr
    for stream in STREAMS:
        assert set(run.ids(stream)) == dataset.ids(stream), stream


# -- redirects and the key ---------------------------------------------------------------


def test_a_redirect_on_the_api_itself_is_followed(tap: TapRunner, small_dataset: Dataset) -> None:
    with hostile(small_dataset, "redirect-same-host") as sim:
        run = tap.run(config_for(sim, **FAST))
        redirected = [r for r in sim.requests if "redirected" in r.params]
    assert_complete(run, small_dataset)
    assert redirected
    assert all(r.api_key_ok and r.status == 200 for r in redirected)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("redirect-other-host", "another scheme, host or port"),
        ("redirect-ftp", "of scheme 'ftp', not http(s)"),
        ("redirect-malformed", "a malformed URL"),
        ("redirect-loop", "a redirect loop"),
        ("redirect-no-location", "without saying where to"),
    ],
)
def test_a_redirect_elsewhere_stops_and_the_key_stays(
    tap: TapRunner, small_dataset: Dataset, kind: str, expected: str
) -> None:
    # The other host is a second server that would log any request reaching it.
    with Simulator(small_dataset) as elsewhere:
        with hostile(small_dataset, kind, redirect_to=elsewhere.url) as sim:
            run = tap.run(config_for(sim, **FAST))
            sent = len(sim.requests)
        line = assert_one_line_stop(run, expected)
        assert elsewhere.requests == []
    if kind == "redirect-other-host":
        assert elsewhere.url in line
    assert sent <= 2 * len(small_dataset.bots) * 2  # no retry: the first answer decides


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A self-signed certificate for 127.0.0.1, key included."""
    if shutil.which("openssl") is None:
        pytest.skip("no openssl to make a certificate")
    folder = tmp_path_factory.mktemp("tls")
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    both = folder / "both.pem"
    both.write_bytes(cert.read_bytes() + key.read_bytes())
    return both


def test_https_redirected_to_plain_http_stops(
    tap: TapRunner, small_dataset: Dataset, certificate: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certificate))  # the tap trusts the simulator
    with Simulator(small_dataset) as elsewhere:
        options = SimulatorOptions(
            rate_limit=None, hostile="redirect-http", redirect_to=elsewhere.url
        )
        with Simulator(small_dataset, options, certfile=str(certificate)) as sim:
            assert sim.url.startswith("https://")
            run = tap.run(config_for(sim, **FAST))
            answered = [r.status for r in sim.requests]
        assert_one_line_stop(run, "plain http", elsewhere.url)
        assert elsewhere.requests == []
    assert answered
    assert set(answered) == {302}


def test_https_works_and_a_redirect_on_it_is_followed(
    tap: TapRunner, small_dataset: Dataset, certificate: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certificate))
    options = SimulatorOptions(rate_limit=None, hostile="redirect-same-host")
    with Simulator(small_dataset, options, certfile=str(certificate)) as sim:
        run = tap.run(config_for(sim, **FAST))
    assert_complete(run, small_dataset)


@pytest.mark.parametrize(("kind", "status"), [("echo-key-400", 400), ("echo-key-503", 503)])
def test_a_key_the_api_repeats_is_masked(
    tap: TapRunner, small_dataset: Dataset, kind: str, status: int
) -> None:
    with hostile(small_dataset, kind, api_key=SECRET) as sim:
        run = tap.run(config_for(sim, **FAST, api_key=SECRET), log_level="DEBUG")
    assert_one_line_stop(run, f"HTTP {status}", "invalid api key '***'")
    if status == 503:
        assert "Retrying" in run.stderr  # each retry warning masks it too
    for text in (run.stdout, run.stderr):
        assert SECRET not in text
        assert "SECRET-KEY" not in text


# -- bounded answers ---------------------------------------------------------------------


# Starts the tap and writes its peak RSS (KiB) to the file named first. The tap is forked
# from this small process, not from pytest's: a child's peak RSS counts the image it was
# forked from, before exec, and pytest's grows over a session.
PEAK_WRAPPER = """
import os, subprocess, sys
process = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(process.pid, 0)
open(sys.argv[1], "w").write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_measured(tap: TapRunner, config: dict[str, Any]) -> tuple[TapRun, float]:
    """A run, and the tap process's peak memory in MB."""
    out, err, peak = (tap.workdir / name for name in ("out.txt", "err.txt", "peak.txt"))
    command = tap.command(*tap._files(config, None))
    started = time.monotonic()
    with out.open("w") as stdout, err.open("w") as stderr:
        returncode = subprocess.call(
            [sys.executable, "-c", PEAK_WRAPPER, str(peak), *command],
            stdout=stdout,
            stderr=stderr,
            env=tap.env(),
        )
    text = out.read_text()
    run = TapRun(
        returncode, parse_messages(text), err.read_text(), text, time.monotonic() - started
    )
    return run, int(peak.read_text()) / 1024


@pytest.mark.parametrize(
    ("kind", "how"),
    [("gzip-bomb", "once inflated, it passed 8,388,608 bytes"), ("endless-body", ": it passed")],
)
def test_an_answer_is_bounded_as_sent_and_inflated(
    tap: TapRunner, small_dataset: Dataset, kind: str, how: str
) -> None:
    with hostile(small_dataset, kind) as sim:
        run, peak_mb = run_measured(tap, config_for(sim, **FAST, max_answer_mb=8))
    assert_one_line_stop(run, "larger than max_answer_mb (8 MB)", how)
    assert peak_mb < 250, peak_mb  # the bomb inflates to 2 GiB
    assert run.seconds < 30


def test_an_answer_that_drips_is_cut_at_request_timeout(
    tap: TapRunner, small_dataset: Dataset
) -> None:
    with hostile(small_dataset, "drip") as sim:
        run = tap.run(config_for(sim, **{**FAST, "request_timeout": 1, "max_retries": 1}))
        attempts = len(sim.requests)
    assert_one_line_stop(run, "no complete answer within 1s (request_timeout)")
    assert "Retrying" in run.stderr
    assert run.seconds < 15
    assert attempts <= 2 * 2 * len(small_dataset.bots)


def test_an_endless_cursor_stops(tap: TapRunner, small_dataset: Dataset) -> None:
    with hostile(small_dataset, "endless-cursor") as sim:
        one_at_a_time = {"bot_names": [small_dataset.bots[0]], "max_parallel_windows": 1}
        run = tap.run(config_for(sim, **FAST, **one_at_a_time))
        requests = len(sim.requests)
    assert_one_line_stop(run, f"{MAX_PAGES_WITHOUT_RECORDS} pages in a row with no new record")
    assert "20 pages in a row with no new record" in run.stderr  # said long before the stop
    # Each stream's one window in flight follows at most that many pages; nothing loops on.
    assert requests <= 2 * (MAX_PAGES_WITHOUT_RECORDS + 1) + 2


@pytest.mark.parametrize("kind", ["object-cursor", "object-cursor-empty"])
def test_a_cursor_that_cannot_be_sent_back_stops(
    tap: TapRunner, small_dataset: Dataset, kind: str
) -> None:
    with hostile(small_dataset, kind) as sim:
        run = tap.run(config_for(sim, **FAST))
    assert_one_line_stop(run, 'cursor the tap cannot send back (an object, {"next":')
    assert not run.records


def test_nesting_too_deep_is_retried_then_one_line(tap: TapRunner, small_dataset: Dataset) -> None:
    with hostile(small_dataset, "deep-nesting") as sim:
        run = tap.run(config_for(sim, **FAST))
    assert_one_line_stop(run, "after 3 attempts", "nested too deep")
    assert "Retrying" in run.stderr


def test_a_page_whose_records_cannot_be_decoded_is_fetched_again(
    small_dataset: Dataset,
) -> None:
    """The records of a page are decoded when written; if that fails, the page is asked
    again, as any unreadable answer, here from a server that then answers well."""
    with Simulator(small_dataset, SimulatorOptions(rate_limit=None)) as sim:
        client = ExportClient(
            url=sim.url + "/conversations/export/v1/conversations",
            api_key=DEFAULT_API_KEY,
            user_agent="test",
            limiter=RateLimiter(100),
            max_retries=2,
            timeout=5,
            max_answer_bytes=1 << 20,
            pool_size=1,
            counters=Counters(),
            logger=logging.getLogger("test"),
        )
        bot = small_dataset.bots[0]
        window = Window(1_735_689_600, 1_735_776_000)
        start, end = window.request_bounds
        params = {"bot_name": bot, "start_time": start, "end_time": end, "per_page": 1000}
        query = Query("conversations", bot, params, window)
        deep = b"[" * 100_000 + b"]" * 100_000
        broken = Page(
            [msgspec.Raw(b'{"_id": "a", "m": ' + deep + b"}")], None, b"{}", request=(query, params)
        )
        records = client.records(broken)
        assert {r["_id"] for r in records.items} == {
            c["_id"] for c in small_dataset.conversations(bot) if start <= c["startTime"] < end
        }
        assert client.counters.retries == 1
        with pytest.raises(ApiUnavailableError, match="nested too deep"):
            client.records(Page(broken.data, None, b"{}"))


# -- what records hold -------------------------------------------------------------------


def test_the_newest_copy_of_a_record_wins(tap: TapRunner, small_dataset: Dataset) -> None:
    with hostile(small_dataset, "newer-duplicates") as sim:
        run = tap.run(config_for(sim, **FAST))
    assert_complete(run, small_dataset)
    assert "the newest copy of each is kept" in run.stderr
    for stream in STREAMS:
        key = TIME_KEY[stream]
        stored = {r["_id"]: normalize_timestamp(r[key]) for r in _stored(small_dataset, stream)}
        emitted: dict[str, list[str]] = defaultdict(list)
        for record in run.records[stream]:
            emitted[record["_id"]].append(record[key])
        newer = 0
        for record_id, times in emitted.items():
            # Each copy emitted again is newer than the one before: the last is the newest.
            assert times == sorted(set(times)), (stream, record_id, times)
            assert times[-1] >= stored[record_id]
            assert min(times) >= stored[record_id]  # the copies a minute older never go out
            newer += times[-1] > stored[record_id]
        assert newer >= 2 * len(small_dataset.bots), stream


def _stored(dataset: Dataset, stream: str) -> list[dict[str, Any]]:
    return dataset.conversations() if stream == "conversations" else dataset.messages()


def _catalog(tap: TapRunner, config: dict[str, Any]) -> dict[str, Any]:
    done = tap.run(config, extra_args=("--discover",))
    catalog: dict[str, Any] = json.loads(done.stdout)
    return catalog


def _with_catalog(tap: TapRunner, config: dict[str, Any], catalog: dict[str, Any]) -> TapRun:
    path = tap.workdir / "catalog.json"
    path.write_text(json.dumps(catalog))
    return tap.run(config, extra_args=("--catalog", str(path)))


def _deselect(catalog: dict[str, Any], field: str) -> None:
    for entry in catalog["streams"]:
        for item in entry["metadata"]:
            if item["breadcrumb"] == ["properties", field]:
                item["metadata"]["selected"] = False


def _schemas(run: TapRun) -> dict[str, dict[str, Any]]:
    return {m["stream"]: m["schema"] for m in run.messages if m["type"] == "SCHEMA"}


def assert_records_fit_their_schema(run: TapRun) -> None:
    schemas = _schemas(run)
    for stream, records in run.records.items():
        validator = jsonschema.Draft7Validator(schemas[stream])
        for record in records:
            problems = [error.message for error in validator.iter_errors(record)]
            assert not problems, (stream, record["_id"], problems)
            assert set(record) <= set(schemas[stream]["properties"])


def test_values_of_the_wrong_type_move_to_extra(tap: TapRunner, small_dataset: Dataset) -> None:
    with hostile(small_dataset, "wrong-types") as sim:
        run = tap.run(config_for(sim, **FAST))
    assert_complete(run, small_dataset)
    assert_records_fit_their_schema(run)
    assert "of a type the schema does not allow moved to _extra" in run.stderr
    extras = [r["_extra"] for r in run.records["conversations"] if "_extra" in r]
    assert {"tags": "resolved", "locale": 5, "metadata": "x"} in extras
    assert {"tags": ["ok", 3]} in extras
    moved = [r["_extra"] for r in run.records["messages"] if "_extra" in r]
    assert {"type": 7, "conversationId": ["x"], "userActionType": {"a": 1}} in moved


def test_without_extra_selected_wrong_values_are_dropped_and_said(
    tap: TapRunner, small_dataset: Dataset
) -> None:
    with hostile(small_dataset, "wrong-types") as sim:
        config = config_for(sim, **FAST)
        catalog = _catalog(tap, config)
        _deselect(catalog, "_extra")
        run = _with_catalog(tap, config, catalog)
    assert_complete(run, small_dataset)
    assert_records_fit_their_schema(run)
    assert not any("_extra" in r for records in run.records.values() for r in records)
    assert "dropped (_extra not selected): tags (2), locale (1), metadata (1)" in run.stderr


def test_an_older_catalog_keeps_undeclared_fields_out_of_the_top_level(
    tap: TapRunner, fast_simulator: Simulator
) -> None:
    """A catalog from an earlier discovery, without a field the tap now declares."""
    config = config_for(fast_simulator, **FAST)
    catalog = _catalog(tap, config)
    for entry in catalog["streams"]:
        entry["schema"]["properties"].pop("userActionType", None)
        entry["metadata"] = [
            item for item in entry["metadata"]
            if item["breadcrumb"] != ["properties", "userActionType"]
        ]  # fmt: skip
    run = _with_catalog(tap, config, catalog)
    assert_complete(run, fast_simulator.dataset)
    assert_records_fit_their_schema(run)
    typed = [r for r in run.records["messages"] if "userActionType" in r.get("_extra", {})]
    assert typed
    assert not any("userActionType" in r for r in run.records["messages"])

    _deselect(catalog, "_extra")
    run = _with_catalog(tap, config, catalog)
    assert_complete(run, fast_simulator.dataset)
    assert_records_fit_their_schema(run)
    assert "fields the catalog does not declare dropped" in run.stderr
    assert "userActionType (" in run.stderr


def test_invalid_utf8_in_a_string_is_replaced_and_counted(
    tap: TapRunner, small_dataset: Dataset
) -> None:
    with hostile(small_dataset, "bad-utf8") as sim:
        run = tap.run(config_for(sim, **FAST))
    assert_complete(run, small_dataset)
    assert "2 invalid UTF-8 sequence(s) in strings replaced with U+FFFD" in run.stderr
    locales = {r.get("locale") for r in run.records["conversations"]}
    assert "en\ufffd\ufffdus" in locales
    types = {r.get("type") for r in run.records["messages"]}
    assert "en\ufffd\ufffdus" in types


# -- bookmarks and the run's end -----------------------------------------------------------


def test_an_end_date_in_the_future_stops_at_the_run_start(
    tap: TapRunner, fast_simulator: Simulator
) -> None:
    started = time.time()
    config = config_for(fast_simulator, **FAST, end_date="2999-01-01T00:00:00Z")
    run = tap.run({**config, "max_window_days": 366})
    assert_complete(run, fast_simulator.dataset)
    assert "end_date 2999-01-01T00:00:00Z is later than this run's start" in run.stderr
    for stream in STREAMS:
        for bot in fast_simulator.dataset.bots:
            done_up_to = bookmark(run.final_state, stream, bot)
            assert done_up_to is not None
            assert (
                normalize_timestamp(started - 5) <= done_up_to <= normalize_timestamp(time.time())
            )


def test_a_bookmark_in_the_future_is_not_trusted(tap: TapRunner, fast_simulator: Simulator) -> None:
    bot = fast_simulator.dataset.bots[0]
    state = {
        "bookmarks": {
            "messages": {
                "partitions": [
                    {
                        "context": {"bot_name": bot},
                        "replication_key": "time",
                        "replication_key_value": "2999-01-01T00:00:00.000000Z",
                    }
                ]
            }
        }
    }
    run = tap.run(config_for(fast_simulator, **FAST), state)
    assert_complete(run, fast_simulator.dataset)
    assert f"messages for bot '{bot}': the state's bookmark 2999-01-01" in run.stderr
    assert "starts again from start_date" in run.stderr
    assert bookmark(run.final_state, "messages", bot) == "2025-01-04T00:00:00.000000Z"


@pytest.mark.parametrize("value", [1_735_776_000, "1735776000", 1735776000.5])
def test_a_bookmark_written_as_a_number_is_refused(
    tap: TapRunner, simulator: Simulator, value: object
) -> None:
    partition = {
        "context": {"bot_name": "r3-218210"},
        "replication_key": "time",
        "replication_key_value": value,
    }
    state = {"bookmarks": {"messages": {"partitions": [partition]}}}
    run = tap.run(config_for(simulator), state)
    assert run.exit_code == 1
    assert "Traceback" not in run.stderr
    assert "has a bookmark that is a number, not a date-time" in run.stderr
    assert simulator.requests == []
    assert not any(m["type"] in ("RECORD", "STATE") for m in run.messages)


# -- --test ------------------------------------------------------------------------------


def test_test_mode_names_a_missing_setting(tap: TapRunner, simulator: Simulator) -> None:
    config = config_for(simulator)
    del config["api_key"]
    run = tap.run(config, extra_args=("--test",))
    assert run.exit_code == 1
    assert "Traceback" not in run.stderr
    assert "'api_key' is a required property" in run.stderr
    plain = tap.run(config)
    assert "'api_key' is a required property" in plain.stderr


def test_test_mode_that_passes_logs_no_error(tap: TapRunner, simulator: Simulator) -> None:
    run = tap.run(config_for(simulator), extra_args=("--test",))
    assert run.exit_code == 0, run.stderr[-2000:]
    assert "ERROR" not in run.stderr
    assert set(run.records) == set(STREAMS)


def test_test_mode_that_fails_is_one_line(tap: TapRunner, simulator: Simulator) -> None:
    run = tap.run(config_for(simulator, api_key="wrong"), extra_args=("--test",))
    assert_one_line_stop(run, "refused the API key")
