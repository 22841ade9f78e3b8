"""/health/freshness reports the lag measured at the broker; /health/ready answers 503 with the reason
while ingestion or rollups are stalled, and 200 again once the lake (and rollups) move."""

from __future__ import annotations

from pathlib import Path

from shoppulse.lake.drain import DrainConfig, drain
from shoppulse.settings import Settings
from tests.api.test_http import wait_for
from tests.lake.helpers import produce


def test_stalled_drain_is_visible_and_clears_when_the_lake_moves(
    make_client, settings: Settings, kafka_topic, tmp_path: Path
) -> None:
    topic = kafka_topic("ready", partitions=2)
    lake = tmp_path / "lake"
    produce(settings.bootstrap_servers, topic, [(f"k{i}".encode(), b"{}") for i in range(10)])
    client = make_client(
        events_topic=topic,
        lake_uri=str(lake),
        health_ingest_stall_seconds=0.5,
        health_rollup_stall_seconds=2.0,
    )
    ingest = client.get("/health/freshness").json()["data"]["ingest"]
    assert ingest["source"] == "broker"
    assert ingest["total_lag"] == 10  # nothing drained: the broker's truth, not the drain's last word
    assert sum(p["lag"] for p in ingest["partitions"]) == 10

    # No drain runs: once the threshold passes, readiness says so (no API key needed).
    wait_for(lambda: client.get("/health/ready").status_code == 503, "the ingest stall to be reported", 15)
    ready = client.get("/health/ready")
    assert ready.headers["retry-after"] == "5"
    assert ready.json()["status"] == "degraded"
    assert ready.json()["reasons"][0].startswith("ingestion stalled: 10 messages in Kafka not in the lake")
    data = client.get("/health/freshness").json()["data"]
    assert data["ingest"]["stalled"] and data["ingest"]["stalled_seconds"] > 0.5
    assert not data["ready"] and data["reasons"] == ready.json()["reasons"]

    # The drain catches up: ingestion is fine again, and the new lake data now waits for a rollup
    # (this database's newest materialization is older than it), which becomes a stall in turn.
    result = drain(DrainConfig.from_settings(settings, topic=topic, lake_dir=lake, max_seconds=10))
    assert result.messages == 10
    wait_for(lambda: client.get("/health/freshness").json()["data"]["ingest"]["total_lag"] == 0, "lag 0", 15)
    wait_for(lambda: client.get("/health/ready").status_code == 503, "the rollup stall to be reported", 15)
    reasons = client.get("/health/ready").json()["reasons"]
    assert len(reasons) == 1 and reasons[0].startswith("rollups stalled: lake data waiting")
    assert client.get("/health/freshness").json()["data"]["rollups"]["stalled"]


def test_ready_when_nothing_waits(make_client, kafka_topic, tmp_path: Path) -> None:
    client = make_client(events_topic=kafka_topic("idle", partitions=1), lake_uri=str(tmp_path / "lake"))
    response = client.get("/health/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "reasons": []}


def test_unreachable_broker_means_unknown_lag_and_not_ready(make_client) -> None:
    client = make_client(kafka_bootstrap_servers="127.0.0.1:1", health_broker_timeout_seconds=0.5)
    ingest = client.get("/health/freshness").json()["data"]["ingest"]
    assert ingest["source"] == "unavailable" and ingest["total_lag"] is None and ingest["broker_error"]
    response = client.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["reasons"][0].startswith("ingestion: lag unknown")
