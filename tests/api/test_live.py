"""`GET /analytics/stream` against a real uvicorn and the real PostgreSQL: NOTIFY in, Server-Sent Events out."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest

from shoppulse.rollups.writer import NOTIFY_CHANNEL
from shoppulse.settings import Settings
from tests.api.conftest import api_client, scratch_database


@dataclass
class Event:
    event: str
    id: str | None
    data: dict[str, Any]


class EventReader:
    """Reads a text/event-stream response event by event (comments such as keep-alive pings skipped)."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.iter_lines()

    def next(self) -> Event:
        fields: dict[str, str] = {}
        for line in self.lines:
            if line == "":
                if "data" in fields:
                    return Event(fields.get("event", "message"), fields.get("id"), json.loads(fields["data"]))
                fields.clear()
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        raise AssertionError("the stream ended")

    def next_of(self, kind: str) -> Event:
        while True:
            event = self.next()
            if event.event == kind:
                return event


@pytest.fixture(scope="module")
def database(stack: object, settings: Settings) -> Iterator[str]:
    with scratch_database(settings, "test_live") as url:
        yield url


@pytest.fixture(scope="module")
def client(database: str) -> Iterator[httpx.Client]:
    with api_client(database) as http:
        wait_for_listener(http)
        yield http


def wait_for_listener(http: httpx.Client) -> None:
    deadline = time.monotonic() + 30
    while not http.app.state.serving.listener.connected:  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, "the NOTIFY listener did not connect"
        time.sleep(0.05)


def notify(database: str, payload: str) -> None:
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, payload))


@contextmanager
def open_stream(http: httpx.Client, last_event_id: str | None = None) -> Iterator[EventReader]:
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    with http.stream("GET", "/analytics/stream", headers=headers, timeout=60) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        reader = EventReader(response)
        ready = reader.next()
        assert ready.event == "ready"
        assert ready.id == (None if last_event_id else http.app.state.serving.changes.position())  # type: ignore[attr-defined]
        yield reader


def test_a_notify_reaches_open_streams_as_an_event(client: httpx.Client, database: str) -> None:
    with open_stream(client) as first, open_stream(client) as second:
        notify(database, "sales:2025-03-10")
        events = [first.next_of("materialized"), second.next_of("materialized")]
    for event in events:
        assert event.data["asset"] == "sales" and event.data["partition"] == "2025-03-10"
        assert event.id is not None and event.id.startswith(client.app.state.serving.changes.epoch + "-")  # type: ignore[attr-defined]
    assert events[0].id == events[1].id


def test_a_resumed_stream_gets_the_events_it_missed_in_order(client: httpx.Client, database: str) -> None:
    with open_stream(client) as reader:
        notify(database, "sales:2025-03-11")
        seen = reader.next_of("materialized")
        notify(database, "funnel:2025-03-12")
        notify(database, "users:2025-03-13")
        while reader.next_of("materialized").data["asset"] != "users":  # both are published now
            pass
    with open_stream(client, last_event_id=seen.id) as resumed:
        missed = [resumed.next(), resumed.next()]
    assert [(e.event, e.data["asset"], e.data["partition"]) for e in missed] == [
        ("materialized", "funnel", "2025-03-12"),
        ("materialized", "users", "2025-03-13"),
    ]
    assert [int(e.id.split("-")[1]) for e in missed if e.id] == [int(seen.id.split("-")[1]) + 1 + n for n in (0, 1)]  # type: ignore[union-attr]


def test_a_client_that_saw_no_change_yet_resumes_from_its_ready_id(client: httpx.Client, database: str) -> None:
    with client.stream("GET", "/analytics/stream", timeout=60) as response:
        ready = EventReader(response).next()
    assert ready.event == "ready" and ready.id
    feed = client.app.state.serving.changes  # type: ignore[attr-defined]
    notify(database, "products:2025-03-16")  # while it is disconnected
    deadline = time.monotonic() + 30
    while feed.position() == ready.id:  # until the listener has published it
        assert time.monotonic() < deadline, "the NOTIFY was not published"
        time.sleep(0.02)
    with open_stream(client, last_event_id=ready.id) as resumed:
        missed = resumed.next()
    assert (missed.event, missed.data["asset"], missed.data["partition"]) == ("materialized", "products", "2025-03-16")


def test_an_id_of_another_process_resumes_with_a_reset(client: httpx.Client) -> None:
    """After an API restart the epoch differs: the client is told to reload everything."""
    with open_stream(client, last_event_id="0badc0de-41") as reader:
        event = reader.next()
    assert event.event == "reset"
    assert "Last-Event-ID" in event.data["reason"]


def test_a_lost_database_connection_resets_streams_and_they_keep_working(client: httpx.Client, database: str) -> None:
    """What a PostgreSQL restart does to the one LISTEN connection: the stream says reset, then goes on."""
    state = client.app.state.serving  # type: ignore[attr-defined]
    with open_stream(client) as reader:
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid() AND (query ILIKE 'LISTEN%%' OR query = 'SELECT 1')"
            )
        reasons = [reader.next_of("reset").data["reason"], reader.next_of("reset").data["reason"]]
        assert reasons == ["database notifications lost", "database notifications connected"]
        assert state.listener.connected
        notify(database, "customers:2025-03-14")
        event = reader.next_of("materialized")
    assert event.data["asset"] == "customers"


def test_streams_past_the_limit_get_503_with_a_clear_message(database: str) -> None:
    with api_client(database, api_max_streams=1) as http:
        with open_stream(http):
            refused = http.get("/analytics/stream")
            assert refused.status_code == 503
            assert refused.headers["retry-after"] == "30"
            assert "too many open live-update streams (limit 1)" in refused.json()["detail"]
        feed = http.app.state.serving.changes  # type: ignore[attr-defined]
        deadline = time.monotonic() + 30
        while len(feed):  # the server notices the closed connection asynchronously
            assert time.monotonic() < deadline, "the closed stream still holds its slot"
            time.sleep(0.02)
        with open_stream(http):  # the slot is free again
            pass
