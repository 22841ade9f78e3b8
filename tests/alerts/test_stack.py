"""Through the real stack: simulated weeks in the PostgreSQL serving tables → detector → alerts table →
`GET /analytics/alerts`; the Dagster asset; the webhook against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
import pytest
from dagster import AssetKey, materialize

from assets.alerts import alerts as alerts_asset
from pipelines.definitions import defs
from resources import PostgresResource
from shoppulse.alerts import webhook
from shoppulse.alerts.detector import Alert
from shoppulse.alerts.evaluate import run_detector
from shoppulse.alerts.store import record_hour
from shoppulse.settings import Settings
from shoppulse.stack import services
from simulator.model import DAY_MS, HOUR_MS
from tests.alerts.conftest import OUTAGE, SPIKE
from tests.alerts.simulated import SimulatedShop
from tests.api.conftest import api_client, scratch_database

PAYMENT_BURST = dt.datetime(2026, 10, 23, 10, tzinfo=dt.UTC)
QUARANTINE_BURST = dt.datetime(2026, 10, 24, 9, tzinfo=dt.UTC)
WEEK_HOURS = 7 * 24


def utc(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def seed_serving_tables(url: str, shop: SimulatedShop) -> dt.datetime:
    """Write the shop's hourly series as the rollups would (with their ledger rows); returns the watermark.

    Two faults are added to the rows themselves: half the payments of PAYMENT_BURST fail, and 400
    messages are quarantined in QUARANTINE_BURST.
    """
    series = shop.series
    watermark = utc(shop.until_ms - 60_000)
    sales, traffic = [], []
    for hour_ms in range(shop.start_ms, shop.until_ms, HOUR_MS):
        hour = utc(hour_ms)
        orders, net = int(series.orders.get(hour_ms, 0)), round(series.net_sales.get(hour_ms, 0))
        sales.append((hour.date(), hour, "USD", orders, orders, net, 0, 0, net, 0, 0, net))
        attempts = int(series.payment_attempts.get(hour_ms, 0))
        failures = attempts // 2 if hour == PAYMENT_BURST else int(series.payment_failures.get(hour_ms, 0))
        traffic.append(
            (hour.date(), hour, series.sessions.get(hour_ms, 0), series.events.get(hour_ms, 0), attempts, failures)
        )
    days = [utc(ms).date() for ms in range(shop.start_ms, shop.until_ms, DAY_MS)]
    with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO analytics.sales_hourly_reporting VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            sales,
        )
        cursor.executemany("INSERT INTO analytics.traffic_hourly VALUES (%s, %s, %s, %s, %s, %s)", traffic)
        cursor.execute(
            "INSERT INTO analytics.quarantine_hourly VALUES (%s, %s, 400)", (QUARANTINE_BURST.date(), QUARANTINE_BURST)
        )
        cursor.executemany(
            "INSERT INTO analytics.materializations (asset, partition_date, row_count, lake_version, max_event_ts,"
            " materialized_at) VALUES (%s, %s, 1, 1, %s, %s)",
            [
                (asset, day, min(watermark, utc(ms + DAY_MS - 1)), utc(ms + DAY_MS))
                for asset in ("sales", "users", "ingest_quality")
                for day, ms in zip(days, range(shop.start_ms, shop.until_ms, DAY_MS), strict=True)
            ],
        )
    return watermark


@pytest.fixture(scope="module")
def warehouse(stack: services.UpReport, settings: Settings, with_incidents: SimulatedShop) -> Iterator[str]:
    with scratch_database(settings, "test_alerts") as url:
        seed_serving_tables(url, with_incidents)
        yield url


def alert_rows(url: str) -> dict[str, tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT id, severity, observed, baseline, webhook_sent_at FROM analytics.alerts").fetchall()
    return {row[0]: row[1:] for row in rows}


def test_detector_finds_the_incidents_in_postgres_once_and_the_api_lists_them(
    warehouse: str, with_incidents: SimulatedShop
) -> None:
    settings = Settings(database_url_override=warehouse)
    now = utc(with_incidents.until_ms) + dt.timedelta(minutes=10)
    first = run_detector(warehouse, settings, now=now, lookback_hours=WEEK_HOURS)
    # Every hour of the week is complete but the last: the watermark (23:59) has not passed its end.
    assert first.hours_evaluated == [
        utc(with_incidents.until_ms - WEEK_HOURS * HOUR_MS + h * HOUR_MS) for h in range(167)
    ]
    found = {alert.id for alert in first.new_alerts}
    expected = {
        f"sessions:{utc(OUTAGE.start_ms):%Y-%m-%dT%H}Z:drop",
        f"orders:{utc(OUTAGE.start_ms):%Y-%m-%dT%H}Z:drop",
        f"sessions:{utc(OUTAGE.start_ms + HOUR_MS):%Y-%m-%dT%H}Z:drop",
        f"sessions:{utc(SPIKE.start_ms):%Y-%m-%dT%H}Z:spike",
        f"orders:{utc(SPIKE.start_ms):%Y-%m-%dT%H}Z:spike",
        f"payment_failure_share:{PAYMENT_BURST:%Y-%m-%dT%H}Z:spike",
        f"quarantine_share:{QUARANTINE_BURST:%Y-%m-%dT%H}Z:spike",
    }
    assert expected <= found
    assert not any(alert.rule == "pipeline_stalled" for alert in first.new_alerts)  # watermark 11 min old
    assert set(alert_rows(warehouse)) == found

    again = run_detector(warehouse, settings, now=now, lookback_hours=WEEK_HOURS)
    assert again.hours_evaluated == [] and again.new_alerts == []

    later = now + dt.timedelta(hours=1)  # no new data for 71 minutes: stalled, and no new hour is complete
    stalled = run_detector(warehouse, settings, now=later, lookback_hours=WEEK_HOURS)
    assert stalled.hours_evaluated == []
    assert [alert.id for alert in stalled.new_alerts] == [
        f"pipeline_stalled:{utc(with_incidents.until_ms - HOUR_MS):%Y-%m-%dT%H}Z:drop"
    ]
    assert run_detector(warehouse, settings, now=later + dt.timedelta(hours=2)).new_alerts == []

    with api_client(warehouse, now=later) as client:
        response = client.get("/analytics/alerts", params={"from": "2026-10-19", "to": "2026-10-25"})
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-cache"
        body = response.json()
        assert set(body) == {"data", "meta"} and set(body["data"]) == {"alerts"}
        listed = body["data"]["alerts"]
        assert {item["id"] for item in listed} == set(alert_rows(warehouse))
        assert all(
            set(item) == {"id", "rule", "direction", "hour_start", "observed", "baseline", "score", "severity",
                          "message", "detected_at"}
            for item in listed
        )  # fmt: skip
        assert [item["hour_start"] for item in listed] == sorted((item["hour_start"] for item in listed), reverse=True)
        outage = next(item for item in listed if item["id"] == f"sessions:{utc(OUTAGE.start_ms):%Y-%m-%dT%H}Z:drop")
        assert outage["hour_start"] == f"{utc(OUTAGE.start_ms):%Y-%m-%dT%H}:00:00Z"
        assert outage["observed"] < 0.1 * outage["baseline"] and outage["score"] < -3.5
        assert outage["severity"] == "critical" and "Sessions drop" in outage["message"]
        assert body["meta"]["tz"] == "UTC" and body["meta"]["complete"] is False  # 23:00-24:00 not evaluated
        assert body["meta"]["watermark"] == f"{utc(with_incidents.until_ms - HOUR_MS):%Y-%m-%dT%H:%M:%S}Z"
        assert client.get("/analytics/alerts", params={"to": "2026-10-24"}).json()["meta"]["complete"] is True

        one_day = client.get("/analytics/alerts", params={"from": "2026-10-20", "to": "2026-10-20"}).json()
        assert {item["hour_start"][:10] for item in one_day["data"]["alerts"]} == {"2026-10-20"}
        default = client.get("/analytics/alerts").json()  # the last 7 UTC days up to today (2026-10-26)
        assert any(item["rule"] == "pipeline_stalled" for item in default["data"]["alerts"])
        assert default["meta"]["complete"] is False

        backwards = client.get("/analytics/alerts", params={"from": "2026-10-25", "to": "2026-10-19"})
        assert backwards.status_code == 422 and backwards.json()["detail"][0]["loc"] == ["query", "from"]
        assert "on or before" in backwards.json()["detail"][0]["msg"]
        bad_date = client.get("/analytics/alerts", params={"from": "yesterday"})
        assert bad_date.status_code == 422 and bad_date.json()["detail"][0]["loc"] == ["query", "from"]


def test_the_dagster_asset_runs_the_detector(stack: services.UpReport, settings: Settings) -> None:
    schedule = defs.resolve_schedule_def("alerts_hourly")
    assert schedule.cron_schedule == "10 * * * *" and schedule.job_name == "alerts_job"
    assert AssetKey("alerts") in defs.resolve_asset_graph().get_all_asset_keys()
    with scratch_database(settings, "test_alerts_asset") as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO analytics.materializations (asset, partition_date, row_count, lake_version, max_event_ts)"
                " VALUES ('sales', '2026-10-01', 1, 1, '2026-10-01T12:00Z'), ('users', '2026-10-01', 1, 1,"
                " '2026-10-01T12:00Z')"
            )
        result = materialize([alerts_asset], resources={"warehouse": PostgresResource(database_url=url)})
        assert result.success
        metadata = result.asset_materializations_for_node("alerts")[0].metadata
        assert metadata["new_alerts"].value == ["pipeline_stalled:2026-10-01T12Z:drop"]
        assert set(alert_rows(url)) == {"pipeline_stalled:2026-10-01T12Z:drop"}


class Receiver(BaseHTTPRequestHandler):
    """Records every POST body; answers 503 to the first `fail_first` requests, then 200."""

    bodies: list[dict[str, Any]]
    fail_first: int
    requests: int

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        server = type(self)
        server.requests += 1
        if server.requests <= server.fail_first:
            self.send_response(503)
        else:
            server.bodies.append(json.loads(body))
            self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, type[Receiver]]]:
    handler = type("TestReceiver", (Receiver,), {"bodies": [], "fail_first": 0, "requests": 0})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", handler
    finally:
        server.shutdown()
        server.server_close()


def sample_alert(hour: dt.datetime) -> Alert:
    return Alert("orders", "drop", hour, 0.0, 40.0, -9.0, "critical", "Orders drop", {"method": "count_test"})


def test_webhook_sends_each_alert_once_with_retries(
    stack: services.UpReport, settings: Settings, receiver: tuple[str, type[Receiver]]
) -> None:
    url, handler = receiver
    now = dt.datetime(2026, 10, 26, 0, 10, tzinfo=dt.UTC)
    hours = [dt.datetime(2026, 10, 25, h, tzinfo=dt.UTC) for h in (10, 11)]
    with scratch_database(settings, "test_alerts_hook") as db, psycopg.connect(db, autocommit=True) as conn:
        for hour in hours:
            record_hour(conn, hour, [sample_alert(hour)], now)
        handler.fail_first = 2  # the first alert needs its third try
        report = webhook.deliver_pending(conn, url, now)
        assert report.sent == ["orders:2026-10-25T10Z:drop", "orders:2026-10-25T11Z:drop"] and report.failed == {}
        assert [body["id"] for body in handler.bodies] == report.sent
        assert handler.bodies[0] == {
            "id": "orders:2026-10-25T10Z:drop",
            "rule": "orders",
            "direction": "drop",
            "hour_start": "2026-10-25T10:00:00Z",
            "observed": 0.0,
            "baseline": 40.0,
            "score": -9.0,
            "severity": "critical",
            "message": "Orders drop",
            "detected_at": "2026-10-26T00:10:00Z",
        }
        attempts = dict(conn.execute("SELECT id, webhook_attempts FROM analytics.alerts").fetchall())
        assert attempts == {"orders:2026-10-25T10Z:drop": 3, "orders:2026-10-25T11Z:drop": 1}

        # A restart (a new run) resends nothing that was delivered; re-detecting an alert does not re-add it.
        assert record_hour(conn, hours[0], [sample_alert(hours[0])], now) == []
        assert webhook.deliver_pending(conn, url, now).sent == []
        assert len(handler.bodies) == 2


def test_webhook_failures_are_recorded_and_retried_on_the_next_run(
    stack: services.UpReport, settings: Settings, receiver: tuple[str, type[Receiver]]
) -> None:
    url, handler = receiver
    now = dt.datetime(2026, 10, 26, 0, 10, tzinfo=dt.UTC)
    hour = dt.datetime(2026, 10, 25, 10, tzinfo=dt.UTC)
    with scratch_database(settings, "test_alerts_hook") as db, psycopg.connect(db, autocommit=True) as conn:
        record_hour(conn, hour, [sample_alert(hour)], now)
        handler.fail_first = webhook.TRIES_PER_RUN  # down for the whole first run
        first = webhook.deliver_pending(conn, url, now)
        assert first.sent == [] and "503" in first.failed["orders:2026-10-25T10Z:drop"]
        attempts, sent_at, error = conn.execute(
            "SELECT webhook_attempts, webhook_sent_at, webhook_last_error FROM analytics.alerts"
        ).fetchone()  # type: ignore[misc]
        assert (attempts, sent_at) == (webhook.TRIES_PER_RUN, None) and "503" in error
        assert webhook.deliver_pending(conn, url, now).sent == ["orders:2026-10-25T10Z:drop"]
        assert [body["id"] for body in handler.bodies] == ["orders:2026-10-25T10Z:drop"]
        # too old to be sent at all
        old = dt.datetime(2026, 10, 20, tzinfo=dt.UTC)
        record_hour(conn, old, [sample_alert(old)], old)
        assert webhook.deliver_pending(conn, url, now).sent == []
