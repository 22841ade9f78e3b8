"""A private broker killed and restarted mid-stream: the lake still holds every offset exactly once."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import KafkaException, Producer

from shoppulse.lake.drain import CONSUMERS, DrainConfig, drain
from shoppulse.settings import Settings
from shoppulse.stack.kafka import LocalKafka, ensure_topic
from shoppulse.stack.processes import free_port
from tests.lake.factories import NOW_MS, event, valid
from tests.lake.helpers import assert_exactly_once, high_watermarks


@pytest.fixture
def private_broker(tmp_path: Path):
    settings = Settings(
        home=tmp_path / "home", kafka_bootstrap_servers=None, kafka_port=free_port(), kafka_controller_port=free_port()
    )
    kafka = LocalKafka(settings)
    kafka.start()
    yield kafka
    # The drain's cached admin client would keep dialling the stopped broker for the rest of the session.
    CONSUMERS.discard_admin(settings.bootstrap_servers)
    kafka.stop(timeout=20)


def test_broker_killed_and_restarted_mid_stream(private_broker: LocalKafka, tmp_path: Path) -> None:
    bootstrap = private_broker.settings.bootstrap_servers
    topic = "events.restart"
    ensure_topic(bootstrap, topic, 3)
    payload = valid(event("page_view", ts_ms=NOW_MS))
    acked: list[int] = []
    stop_producing = threading.Event()

    def on_delivery(err: object, msg: object) -> None:
        if err is None:
            acked.append(1)

    def produce_steadily() -> None:  # the producer lives in the thread: gone before the broker is stopped
        producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "message.timeout.ms": 120_000,
            }
        )
        i = 0
        while not stop_producing.is_set():
            try:
                producer.produce(topic, payload, f"k{i}".encode(), on_delivery=on_delivery)
                i += 1
            except BufferError:
                pass
            producer.poll(0.001 if i % 50 else 0.02)
        producer.flush(120)

    feeder = threading.Thread(target=produce_steadily)
    feeder.start()
    lake = tmp_path / "lake"
    config = DrainConfig(bootstrap, topic, lake, max_seconds=1.0, chunk_messages=1000, request_timeout_seconds=2.0)
    errors = 0
    for round_no in range(12):
        if round_no == 4:  # kill the broker while drains and the producer are running
            os.kill(private_broker.running_pid(), signal.SIGKILL)
            time.sleep(1)
        if round_no == 7:
            private_broker.start()
        try:
            drain(config)
        except (KafkaException, TimeoutError):
            errors += 1
        time.sleep(0.5)
    stop_producing.set()
    feeder.join()
    for _ in range(50):
        if drain(config).status == "idle":
            break
    CONSUMERS.discard(bootstrap, topic)
    assert errors >= 1, "no drain ever saw the broker down; the test proves nothing"
    hw = high_watermarks(bootstrap, topic, 3)
    assert sum(hw.values()) == len(acked) > 0
    assert_exactly_once(lake, topic, hw)
