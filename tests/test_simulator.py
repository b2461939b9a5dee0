"""The Export API simulator itself, exercised over real HTTP on 127.0.0.1."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tap_deepconverse.simulator import (
    DEFAULT_API_KEY,
    FAULT_KINDS,
    Dataset,
    Simulator,
    SimulatorOptions,
    format_time,
    generate_dataset,
)

START = 1_735_689_600  # 2025-01-01T00:00:00Z
DAY = 86_400
HOUR = 3_600
PATHS = {
    "conversations": "/conversations/export/v1/conversations",
    "messages": "/conversations/export/v1/messages",
}
TIME_FIELDS = {"conversations": ("startTime", "lastActionAt"), "messages": ("time",)}
HEX32 = re.compile(r"[0-9a-f]{32}")
ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z")
ROOT = Path(__file__).resolve().parents[1]


# -- fixtures and helpers -------------------------------------------------


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return generate_dataset(seed=7, days=2, conversations_per_day=30)


@pytest.fixture(scope="module")
def server(dataset: Dataset) -> Iterator[Simulator]:
    with Simulator(dataset, SimulatorOptions(rate_limit=None)) as sim:
        yield sim


@pytest.fixture
def sim(server: Simulator) -> Simulator:
    """The shared simulator with default switches (but no rate limit) and an empty log."""
    server.options = SimulatorOptions(rate_limit=None)
    server.reset_log()
    return server


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.headers["x-api-key"] = DEFAULT_API_KEY
        yield session


def get(http: requests.Session, sim: Simulator, endpoint: str, **params: Any) -> requests.Response:
    return http.get(sim.url + PATHS[endpoint], params=params, timeout=10)


def window(bot: str, start: int, end: int, **extra: Any) -> dict[str, Any]:
    return {"bot_name": bot, "start_time": start, "end_time": end, **extra}


def export(
    http: requests.Session, sim: Simulator, endpoint: str, **params: Any
) -> tuple[list[dict[str, Any]], list[list[dict[str, Any]]]]:
    """Page one window to the end; returns all records and the pages."""
    pages: list[list[dict[str, Any]]] = []
    cursors: set[str] = set()
    cursor = None
    for _ in range(10_000):
        query = dict(params) if cursor is None else {**params, "cursor": cursor}
        response = get(http, sim, endpoint, **query)
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"data", "cursor"}
        pages.append(body["data"])
        cursor = body["cursor"]
        if cursor is None:
            return [r for page in pages for r in page], pages
        assert cursor not in cursors, "a cursor repeated within one query"
        cursors.add(cursor)
    pytest.fail("paging never ended")


def by_id(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {r["_id"]: r for r in records}
    assert len(out) == len(records), "duplicate records"
    return out


def message_text(message: dict[str, Any]) -> str:
    if isinstance(message.get("userInput"), str):
        return str(message["userInput"])
    out = message["outMsg"]
    return str(out.get("text", "")) if isinstance(out, dict) else str(out or "")


def inside(t: float, start: int, end: int, bounds: str) -> bool:
    low = start <= t if bounds[0] == "[" else start < t
    high = t <= end if bounds[1] == "]" else t < end
    return low and high


# -- the generated data ---------------------------------------------------


def test_dataset_is_deterministic_and_well_formed(dataset: Dataset) -> None:
    again = generate_dataset(seed=7, days=2, conversations_per_day=30)
    assert again.conversations() == dataset.conversations()
    assert again.messages() == dataset.messages()
    assert generate_dataset(seed=8, days=2, conversations_per_day=30).ids(
        "conversations"
    ) != dataset.ids("conversations")
    assert dataset.end == dataset.start + 2 * DAY == START + 2 * DAY
    assert len(dataset.conversations()) == 60
    assert len(dataset) == len(dataset.conversations()) + len(dataset.messages())

    conversations = dataset.conversations(time_format="float")
    messages = dataset.messages(time_format="float")
    ids = [r["_id"] for r in conversations + messages]
    assert len(ids) == len(set(ids))
    assert all(HEX32.fullmatch(i) for i in ids)
    by_conversation: dict[str, list[dict[str, Any]]] = {}
    for message in messages:
        by_conversation.setdefault(message["conversationId"], []).append(message)
    for conv in conversations:
        assert dataset.start <= conv["startTime"] <= conv["lastActionAt"] < dataset.end
        assert conv["locale"] in {"en_us", "de_de", "fr_fr", "ja_jp", "pt_br"}
        assert set(conv["tags"]) <= {"resolved", "informed", "liveChat", "escalated", "feedback"}
        meta = conv["metadata"]
        assert isinstance(meta["__sys_channel"], str)
        assert isinstance(meta["browser_isMobile"], bool)
        assert {"browser", "os", "device"} <= set(meta["__sys_userAgentParsed"])
        own = sorted(by_conversation[conv["_id"]], key=lambda m: m["time"])
        assert 2 <= len(own) <= 8
        assert own[0]["time"] == conv["startTime"]
        assert own[-1]["time"] == conv["lastActionAt"]
        assert all(a["time"] < b["time"] for a, b in itertools.pairwise(own))
    for message in messages:
        assert message["type"] in {"UserInput", "BotMessage", "AgentMessage", "SystemEvent"}
        if message["type"] == "UserInput":
            kind = message["userActionType"]
            assert kind in {"typed", "quickReply", "formSubmit"}
            assert isinstance(message["userInput"], dict if kind == "formSubmit" else str)
        else:
            assert "userActionType" not in message
            assert message.get("userInput") is None
    for bot in dataset.bots:
        starts = {c["startTime"] for c in dataset.conversations(bot)}
        assert {START, START + DAY} <= starts  # exactly on start and the day boundary


def test_dataset_times_texts_and_extra_fields() -> None:
    data = generate_dataset(seed=3, days=3, conversations_per_day=600)
    conversations = data.conversations(time_format="millis")
    messages = data.messages(time_format="millis")
    for records, field in ((conversations, "startTime"), (messages, "time")):
        times = [r[field] for r in records]
        on_hour = sum(t % (HOUR * 1000) == 0 for t in times) / len(times)
        whole = sum(t % 1000 == 0 for t in times) / len(times)
        assert 0.03 <= on_hour <= 0.08, (field, on_hour)
        assert 0.05 <= whole <= 0.5, (field, whole)
    hours = [(r["startTime"] // 1000 - START) % DAY // HOUR for r in conversations]
    assert hours.count(14) > 3 * hours.count(3)  # busy afternoons, quiet nights

    texts = json.dumps(data.messages(), ensure_ascii=False)
    for sample in ("👩‍💻", "🇩🇪", "مرحبا", "注文", "\\n", '\\"'):
        assert sample in texts
    lengths = [len(message_text(m).encode("utf-8")) for m in data.messages()]
    assert 0.002 < sum(n >= 5000 for n in lengths) / len(lengths) < 0.03
    assert max(lengths) < 21_000

    extra = generate_dataset(seed=3, days=3, conversations_per_day=600, extra_field_rate=0.3)
    assert extra.ids("messages") == data.ids("messages")  # same data, plus the extras
    undocumented = {k for c in extra.conversations() for k in c} - set(conversations[0])
    assert undocumented == {"sentiment", "csat"}
    with_extra = [m for m in extra.messages() if "channelMessageId" in m]
    assert 0.15 < len(with_extra) / len(messages) < 0.3
    assert with_extra[0]["channelMessageId"].startswith("wamid.")


def test_returned_records_are_copies(dataset: Dataset) -> None:
    first = dataset.conversations()[0]
    first["metadata"]["__sys_userAgentParsed"]["browser"]["name"] = "changed"
    assert all(
        c["metadata"]["__sys_userAgentParsed"]["browser"]["name"] != "changed"
        for c in dataset.conversations()
    )


# -- windows, order, formats and paging -----------------------------------


@pytest.mark.parametrize("order", ["asc", "desc", "random"])
@pytest.mark.parametrize("bounds", ["[)", "(]", "[]", "()"])
def test_full_paging_returns_every_record_once(
    sim: Simulator, http: requests.Session, dataset: Dataset, bounds: str, order: str
) -> None:
    sim.options.bounds = bounds
    sim.options.order = order
    for endpoint, field in (("conversations", "startTime"), ("messages", "time")):
        for bot in dataset.bots:
            params = window(bot, dataset.start - 1, dataset.end + 1, per_page=40)
            records, _ = export(http, sim, endpoint, **params)
            assert by_id(records) == by_id(getattr(dataset, endpoint)(bot))
            times = [r[field] for r in records]
            if order == "asc":
                assert times == sorted(times)
            elif order == "desc":
                assert times == sorted(times, reverse=True)
            else:
                assert times != sorted(times)
                again, _ = export(http, sim, endpoint, **params)
                assert [r["_id"] for r in again] == [r["_id"] for r in records]


@pytest.mark.parametrize("time_format", ["seconds", "millis", "iso", "float"])
def test_time_formats(
    sim: Simulator, http: requests.Session, dataset: Dataset, time_format: str
) -> None:
    sim.options.time_format = time_format
    bot = dataset.bots[0]
    kinds = {"seconds": int, "millis": int, "iso": str, "float": float}
    for endpoint in PATHS:
        records, _ = export(http, sim, endpoint, **window(bot, START, dataset.end, per_page=1000))
        stored = getattr(dataset, endpoint)(bot, time_format=time_format)
        assert by_id(records) == by_id(stored)
        for record in records:
            for field in TIME_FIELDS[endpoint]:
                assert type(record[field]) is kinds[time_format]
                if time_format == "iso":
                    assert ISO.fullmatch(record[field])
    formats = {
        "seconds": 1735689612,
        "millis": 1735689612345,
        "iso": "2025-01-01T00:00:12.345Z",
        "float": 1735689612.345,
    }
    assert format_time(1735689612.345, time_format) == formats[time_format]
    assert format_time(float(START), "iso") == "2025-01-01T00:00:00Z"


@pytest.mark.parametrize("bounds", ["[)", "(]", "[]", "()"])
@pytest.mark.parametrize("conversation_filter", ["startTime", "lastActionAt"])
def test_records_on_window_edges(
    sim: Simulator,
    http: requests.Session,
    dataset: Dataset,
    bounds: str,
    conversation_filter: str,
) -> None:
    sim.options.bounds = bounds
    sim.options.conversation_filter = conversation_filter
    bot = dataset.bots[0]
    fields = {"conversations": conversation_filter, "messages": "time"}
    for endpoint, field in fields.items():
        stored = getattr(dataset, endpoint)(bot, time_format="float")
        on_hour = sorted({int(r[field]) for r in stored if r[field] % HOUR == 0})
        assert on_hour or field == "lastActionAt", "some records sit exactly on whole hours"
        edges = [(START, START + HOUR), (START - HOUR, START), (START + DAY - HOUR, START + DAY)]
        edges += [(t, t + HOUR) for t in on_hour[:4]] + [(t - HOUR, t) for t in on_hour[:4]]
        edges += [(t, t) for t in on_hour[:1]]
        for start, end in edges:
            records, _ = export(http, sim, endpoint, **window(bot, start, end, per_page=1000))
            expected = {r["_id"] for r in stored if inside(r[field], start, end, bounds)}
            assert {r["_id"] for r in records} == expected, (endpoint, start, end)
        # The record exactly at `start` is on the edge of both neighbouring windows.
        at_start = {r["_id"] for r in stored if r[field] == START}
        if at_start:
            after, _ = export(http, sim, endpoint, **window(bot, START, START + 60))
            before, _ = export(http, sim, endpoint, **window(bot, START - 60, START))
            assert (at_start <= {r["_id"] for r in after}) == (bounds[0] == "[")
            assert (at_start <= {r["_id"] for r in before}) == (bounds[1] == "]")


def test_empty_window_and_single_conversation(
    sim: Simulator, http: requests.Session, dataset: Dataset
) -> None:
    bot = dataset.bots[0]
    response = get(http, sim, "messages", **window(bot, START - 10 * DAY, START - 9 * DAY))
    assert response.json() == {"data": [], "cursor": None}
    conv = dataset.conversations(bot)[3]
    params = window(bot, START, dataset.end, conversation_id=conv["_id"], per_page=2)
    records, _ = export(http, sim, "messages", **params)
    assert {r["_id"] for r in records} == {
        m["_id"] for m in dataset.messages(bot) if m["conversationId"] == conv["_id"]
    }
    other = window(dataset.bots[1], START, dataset.end, conversation_id=conv["_id"])
    assert get(http, sim, "messages", **other).json() == {"data": [], "cursor": None}


def test_default_per_page_and_limits(
    sim: Simulator, http: requests.Session, dataset: Dataset
) -> None:
    bot = dataset.bots[0]
    sim.options.default_per_page = 4
    body = get(http, sim, "messages", **window(bot, START, dataset.end)).json()
    assert len(body["data"]) == 4
    body = get(http, sim, "messages", **window(bot, START, dataset.end, per_page=1000)).json()
    assert len(body["data"]) == len(dataset.messages(bot))
    assert body["cursor"] is None


def test_empty_pages_still_yield_every_record(
    sim: Simulator, http: requests.Session, dataset: Dataset
) -> None:
    sim.options.empty_pages = True
    bot = dataset.bots[0]
    records, pages = export(http, sim, "messages", **window(bot, START, dataset.end, per_page=3))
    assert by_id(records) == by_id(dataset.messages(bot))
    assert pages[0] == []
    assert any(page == [] for page in pages[1:-1]), "some later pages are empty too"
    _, pages = export(http, sim, "conversations", **window(bot, 1, 2))
    assert pages == [[], []]  # an empty window: first page empty, then the end


def test_cursor_is_bound_to_its_query(
    sim: Simulator, http: requests.Session, dataset: Dataset
) -> None:
    bot = dataset.bots[0]
    params = window(bot, START, dataset.end, per_page=5)
    cursor = get(http, sim, "messages", **params).json()["cursor"]
    assert isinstance(cursor, str)
    changed = [
        ("messages", {**params, "end_time": dataset.end + 1}),
        ("messages", {**params, "start_time": START + 1}),
        ("messages", {**params, "per_page": 6}),
        ("messages", {**params, "bot_name": dataset.bots[1]}),
        ("messages", {**params, "conversation_id": "0" * 32}),
        ("conversations", params),
    ]
    for endpoint, other in changed:
        response = get(http, sim, endpoint, **other, cursor=cursor)
        assert response.status_code == 400
        assert response.json() == {"error": "Bad Request", "message": "Invalid cursor"}
    for bad in ("", "garbage", cursor[:-2], cursor + "x"):
        assert get(http, sim, "messages", **params, cursor=bad).status_code == 400
    assert get(http, sim, "messages", **params, cursor=cursor).status_code == 200


# -- errors ---------------------------------------------------------------


def test_api_key_is_checked(sim: Simulator, http: requests.Session, dataset: Dataset) -> None:
    params = window(dataset.bots[0], START, START + DAY)
    unauthorized = {"error": "Unauthorized", "message": "Invalid or missing API key"}
    for headers in ({"x-api-key": "wrong"}, {"x-api-key": ""}):
        url = sim.url + PATHS["messages"]
        response = http.get(url, params=params, headers=headers, timeout=10)
        assert response.status_code == 401
        assert response.json() == unauthorized
    with requests.Session() as anonymous:
        response = anonymous.get(sim.url + PATHS["conversations"], params=params, timeout=10)
    assert response.status_code == 401
    assert get(http, sim, "conversations", **params).status_code == 200
    assert [e.api_key_ok for e in sim.requests] == [False, False, False, True]
    assert DEFAULT_API_KEY not in repr(sim.requests)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"start_time": None}, "start_time"),
        ({"start_time": "1735689600.5"}, "start_time"),
        ({"start_time": "2025-01-01"}, "start_time"),
        ({"end_time": None}, "end_time"),
        ({"end_time": "abc"}, "end_time"),
        ({"end_time": START - 1}, "end_time"),
        ({"bot_name": None}, "bot_name"),
        ({"per_page": 0}, "per_page"),
        ({"per_page": 1001}, "per_page"),
        ({"per_page": "ten"}, "per_page"),
    ],
)
def test_bad_parameters_are_named(
    sim: Simulator, http: requests.Session, change: dict[str, Any], named: str
) -> None:
    params = {**window("r3-218210", START, START + DAY), **change}
    response = get(http, sim, "messages", **params)
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "Bad Request"
    assert named in body["message"]


def test_max_window(sim: Simulator, http: requests.Session) -> None:
    sim.options.max_window_seconds = DAY
    assert get(http, sim, "messages", **window("r3-218210", START, START + DAY)).ok
    response = get(http, sim, "messages", **window("r3-218210", START, START + DAY + 1))
    assert response.status_code == 400
    assert "86400 seconds" in response.json()["message"]


def test_cut_window_serves_only_its_first_seconds(sim: Simulator, http: requests.Session) -> None:
    bot = "r3-218210"
    whole, _ = export(http, sim, "messages", **window(bot, START, START + 2 * DAY))
    first_day, _ = export(http, sim, "messages", **window(bot, START, START + DAY))
    sim.options.cut_window_seconds = DAY
    cut, _ = export(http, sim, "messages", **window(bot, START, START + 2 * DAY))
    assert len(first_day) < len(whole)
    assert set(by_id(cut)) == set(by_id(first_day))  # a plain 200, only the first day
    shorter, _ = export(http, sim, "messages", **window(bot, START + DAY, START + 2 * DAY))
    assert set(by_id(shorter)) == set(by_id(whole)) - set(by_id(first_day))


def test_page_cap_serves_fewer_than_asked(sim: Simulator, http: requests.Session) -> None:
    params = window("r3-218210", START, START + 2 * DAY, per_page=50)
    whole, _ = export(http, sim, "messages", **params)
    sim.options.page_cap = 20
    capped, pages = export(http, sim, "messages", **params)
    assert len(whole) > 40
    assert {len(page) for page in pages[:-1]} == {20}
    assert set(by_id(capped)) == set(by_id(whole))


def test_unknown_bot_and_path(sim: Simulator, http: requests.Session) -> None:
    response = get(http, sim, "conversations", **window("nobody", START, START + DAY))
    assert response.status_code == 404
    assert response.json() == {"error": "Not Found", "message": "Bot 'nobody' not found"}
    response = http.get(sim.url + "/conversations/export/v2/conversations", timeout=10)
    assert response.status_code == 404
    assert response.json()["error"] == "Not Found"
    assert sim.requests[-1].endpoint == "other"


def test_rate_limit_per_endpoint(sim: Simulator, http: requests.Session) -> None:
    sim.options.rate_limit = 3.0
    params = window("r3-218210", START, START + HOUR)
    statuses = [get(http, sim, "conversations", **params) for _ in range(6)]
    assert [r.status_code for r in statuses[:3]] == [200, 200, 200]
    limited = statuses[3]
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "1"
    assert limited.json() == {
        "error": "Too Many Requests",
        "message": "Rate limit of 3 requests per second per endpoint exceeded",
    }
    assert get(http, sim, "messages", **params).status_code == 200  # its own budget
    assert sim.max_requests_in_any_second("conversations") == 6
    assert sim.max_requests_in_any_second("messages") == 1

    sim.options.retry_after = None
    assert "Retry-After" not in get(http, sim, "conversations", **params).headers
    sim.options.retry_after = "Wed, 21 Oct 2015 07:28:00 GMT"
    assert get(http, sim, "conversations", **params).headers["Retry-After"].startswith("Wed")
    time.sleep(1.05)
    assert get(http, sim, "conversations", **params).status_code == 200


def test_fail_after_is_a_lasting_outage(sim: Simulator, http: requests.Session) -> None:
    sim.options.fail_after = 2
    params = window("r3-218210", START, START + HOUR)
    codes = [get(http, sim, "messages", **params).status_code for _ in range(5)]
    assert codes == [200, 200, 503, 503, 503]
    assert [e.fault for e in sim.requests] == [None, None, "outage", "outage", "outage"]
    sim.reset_log()
    assert get(http, sim, "conversations", **params).status_code == 200


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_each_fault_kind(sim: Simulator, http: requests.Session, kind: str) -> None:
    sim.options.fault_rate = 1.0
    sim.options.fault_kinds = (kind,)
    sim.options.hang_seconds = 0.3
    params = window("r3-218210", START, START + HOUR)
    url = sim.url + PATHS["messages"]
    if kind == "reset":
        with pytest.raises(requests.ConnectionError):
            http.get(url, params=params, timeout=5)
    elif kind == "timeout":
        with pytest.raises(requests.ReadTimeout):
            http.get(url, params=params, timeout=0.1)
    else:
        response = http.get(url, params=params, timeout=5)
        if kind == "badjson":
            assert response.status_code == 200
            with pytest.raises(ValueError, match=r"."):
                response.json()
        elif kind == "nodata":
            assert response.status_code == 200
            assert "data" not in response.json()
        else:
            assert response.status_code == int(kind)
    entry = sim.requests[-1]
    assert entry.fault == kind
    assert (entry.status == 0) == (kind in ("reset", "timeout"))
    sim.options.fault_rate = 0.0
    assert http.get(url, params=params, timeout=5).status_code == 200  # the client recovers


def test_fault_draw_is_seeded(sim: Simulator, http: requests.Session) -> None:
    sim.options.fault_rate = 0.5
    sim.options.fault_kinds = ("500", "503")
    params = window("r3-218210", START, START + HOUR)

    def run() -> list[int]:
        sim.reset_log()
        return [get(http, sim, "messages", **params).status_code for _ in range(30)]

    first = run()
    assert {200, 500, 503} <= set(first)
    assert run() == first


def test_latency(sim: Simulator, http: requests.Session) -> None:
    sim.options.latency = 0.15
    began = time.monotonic()
    response = get(http, sim, "messages", **window("r3-218210", START, START + HOUR))
    assert response.status_code == 200
    assert time.monotonic() - began >= 0.15


# -- HTTP details, late data, stats ---------------------------------------


def test_http_details(sim: Simulator, http: requests.Session, dataset: Dataset) -> None:
    response = get(http, sim, "messages", **window(dataset.bots[0], START, dataset.end))
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert response.raw.version == 11
    assert int(response.headers["Content-Length"]) == len(response.content)
    assert any(byte >= 0x80 for byte in response.content)  # raw UTF-8, not \u escapes
    assert len(sim.requests[-1].params) == 3


def test_add_conversation_shows_up_later(http: requests.Session) -> None:
    data = generate_dataset(seed=11, days=1, conversations_per_day=10)
    with Simulator(data, SimulatorOptions(rate_limit=None, order="asc")) as sim:
        params = window(data.bots[1], START, START + DAY, per_page=1000)
        before, _ = export(http, sim, "messages", **params)
        conv, messages = data.add_conversation(data.bots[1], START + 5 * HOUR + 0.25, 4)
        assert conv["startTime"] == START + 5 * HOUR
        assert [m["conversationId"] for m in messages] == [conv["_id"]] * 4
        assert messages[0]["time"] == conv["startTime"]
        assert conv["lastActionAt"] == messages[-1]["time"]
        after, _ = export(http, sim, "messages", **params)
        assert {r["_id"] for r in after} - {r["_id"] for r in before} == {
            m["_id"] for m in messages
        }
        conversations, _ = export(http, sim, "conversations", **params)
        assert conv in conversations
        assert conv["_id"] in data.ids("conversations", data.bots[1])
        assert conv["_id"] not in data.ids("conversations", data.bots[0])


def test_as_of_serves_the_archive_as_it_was(http: requests.Session) -> None:
    data = generate_dataset(seed=4, days=4, conversations_per_day=30, long_conversation_rate=0.5)
    bot = data.bots[0]
    final = {c["_id"]: c for c in data.conversations(bot)}
    # One that lasts days and keeps its start day's window under the startTime reading.
    lasting = next(
        c
        for c in final.values()
        if c["lastActionAt"] - c["startTime"] > DAY and c["startTime"] < START + 2 * DAY
    )
    day = START + (lasting["startTime"] - START) // DAY * DAY
    moment = lasting["startTime"] + 60 * 60
    with Simulator(data, SimulatorOptions(rate_limit=None, as_of=moment)) as sim:
        params = window(bot, day, day + DAY, per_page=1000)
        before, _ = export(http, sim, "conversations", **params)
        then = by_id(before)[lasting["_id"]]
        assert then["lastActionAt"] <= moment < lasting["lastActionAt"]
        assert "resolved" not in then["tags"]
        messages, _ = export(http, sim, "messages", **window(bot, START, START + 4 * DAY))
        assert max(m["time"] for m in messages) <= moment
        sim.options.as_of = None  # the archive now: the conversation changed
        after, _ = export(http, sim, "conversations", **params)
        assert by_id(after)[lasting["_id"]] == lasting
        # Under the lastActionAt reading it moved to the window of its last action.
        sim.options.conversation_filter = "lastActionAt"
        last_day = START + (lasting["lastActionAt"] - START) // DAY * DAY
        moved, _ = export(http, sim, "conversations", **window(bot, last_day, last_day + DAY))
        assert lasting["_id"] in by_id(moved)
        sim.options.as_of = moment
        earlier, _ = export(http, sim, "conversations", **window(bot, last_day, last_day + DAY))
        assert lasting["_id"] not in by_id(earlier)


def test_stop_closes_kept_alive_connections(http: requests.Session) -> None:
    data = generate_dataset(seed=2, days=1, conversations_per_day=4)
    sim = Simulator(data, SimulatorOptions(rate_limit=None)).start()
    params = window(data.bots[0], START, START + DAY)
    assert get(http, sim, "conversations", **params).status_code == 200
    sim.stop()
    with pytest.raises(requests.ConnectionError):
        get(http, sim, "conversations", **params)


def test_stats_endpoint(sim: Simulator, http: requests.Session, dataset: Dataset) -> None:
    params = window(dataset.bots[0], START, START + HOUR)
    get(http, sim, "conversations", **params)
    get(http, sim, "messages", **params)
    get(http, sim, "messages", **params)
    with requests.Session() as anonymous:
        anonymous.get(sim.url + PATHS["messages"], params=params, timeout=10)
        stats = anonymous.get(sim.url + "/_simulator/stats", timeout=10).json()
    rates = stats.pop("mean_per_second")
    assert rates["conversations"] == 0.0
    assert rates["messages"] > 0
    assert stats == {
        "requests": {"conversations": 1, "messages": 3},
        "statuses": {"200": 3, "401": 1},
        "max_per_second": {"conversations": 1, "messages": 3},
        "pages_in_a_row": {"conversations": {"1": 1}, "messages": {"1": 2}},
        "records": {
            "conversations": len(dataset.ids("conversations")),
            "messages": len(dataset.ids("messages")),
        },
    }


def test_stats_count_the_pages_asked_of_each_query_one_after_the_other(
    sim: Simulator, http: requests.Session, dataset: Dataset
) -> None:
    bot = dataset.bots[0]
    export(http, sim, "messages", **window(bot, START, START + DAY, per_page=10))
    export(http, sim, "messages", **window(bot, START, START + HOUR, per_page=1000))
    chain = [r for r in sim.requests if r.params["per_page"] == "10"]
    pages = sim.stats()["pages_in_a_row"]
    assert pages == {"conversations": {}, "messages": {str(len(chain)): 1, "1": 1}}
    assert len(chain) > 3
    # A chain given up halfway counts as far as it went; a cursor not made here, not at all.
    query = window(bot, START, START + DAY, per_page=10)
    first = get(http, sim, "messages", **query).json()
    get(http, sim, "messages", **query, cursor=first["cursor"])
    get(http, sim, "messages", **query, cursor="forged")
    pages = sim.stats()["pages_in_a_row"]["messages"]
    assert pages == {str(len(chain)): 1, "2": 1, "1": 1}


def test_options_are_validated() -> None:
    for bad in ({"bounds": "[["}, {"order": "up"}, {"time_format": "ns"}, {"fault_rate": 2}):
        with pytest.raises(ValueError, match="must"):
            SimulatorOptions(**bad)


def test_cli_serves_until_sigterm() -> None:
    paths = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    command = [sys.executable, "-m", "tap_deepconverse.simulator", "--port", "0"]
    command += ["--days", "1", "--conversations-per-day", "12", "--start", "2025-01-01"]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT
    ) as proc:
        try:
            assert proc.stdout is not None
            banner = proc.stdout.readline()
            match = re.fullmatch(
                r"DeepConverse simulator on (http://127\.0\.0\.1:\d+) \(2 bots, 12 conversations,"
                r" \d+ messages, 2025-01-01T00:00:00Z to 2025-01-02T00:00:00Z\)\n",
                banner,
            )
            assert match, banner
            assert DEFAULT_API_KEY in proc.stdout.readline()
            url = match.group(1) + PATHS["conversations"]
            params = window("r3-218210", START, START + DAY)
            headers = {"x-api-key": DEFAULT_API_KEY}
            with requests.Session() as session:
                response = session.get(url, params=params, headers=headers, timeout=10)
                assert response.status_code == 200
                assert response.json()["data"]
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
