"""The drain watchdog against the real broker and a real lake: a drain that does not commit while Kafka
holds messages is detected, healed with escalating remedies, recorded, and its recovery timed. The cause
does not matter (here: no drain runs at all), which is the point."""

from __future__ import annotations

import json
import time
from pathlib import Path

from shoppulse.lake.drain import DrainConfig, drain
from shoppulse.serving.readiness import watchdog_state_path
from shoppulse.settings import Settings
from shoppulse.stack.processes import wait_until
from shoppulse.stack.watchdog import DrainWatchdog
from tests.lake.helpers import produce


def test_a_stalled_drain_is_healed_escalating_and_its_recovery_recorded(
    settings: Settings, kafka_topic, tmp_path: Path
) -> None:
    topic = kafka_topic("watchdog", partitions=2)
    produce(settings.bootstrap_servers, topic, [(f"k{i}".encode(), b"{}") for i in range(20)])
    local = Settings(
        home=tmp_path,
        kafka_bootstrap_servers=settings.bootstrap_servers,
        events_topic=topic,
        lake_dir_override=tmp_path / "lake",
        drain_watchdog_stall_seconds=0.5,
        drain_watchdog_grace_seconds=1.0,
    )
    heals: list[tuple[str, str]] = []
    messages: list[str] = []
    started = time.monotonic()
    dog = DrainWatchdog(
        local,
        heals=[lambda reason: heals.append(("reload", reason)), lambda reason: heals.append(("restart", reason))],
        code_server_started_at=lambda: started,
        report=lambda message, loud: messages.append(message),
    )

    def checked(condition) -> bool:  # type: ignore[no-untyped-def]
        dog.next_check = 0.0  # check at every poll instead of every 2 s
        dog.check()
        return condition()

    assert wait_until(lambda: checked(lambda: len(heals) >= 2), 30, interval=0.1), (heals, messages)
    assert [kind for kind, _ in heals[:2]] == ["reload", "restart"]  # the second heal of one stall escalates
    assert heals[0][1].startswith("drain stalled (20 messages waiting, no lake commit for")
    state = json.loads(watchdog_state_path(tmp_path).read_text())
    assert state["stalls"] == 1 and state["heals"] >= 2 and state["total_lag"] == 20
    assert any(message.startswith("drain stalled: 20 messages in Kafka") for message in messages)

    drain(DrainConfig.from_settings(local, max_seconds=10))  # the drain works again
    assert wait_until(lambda: checked(lambda: dog.state["status"] == "ok"), 30, interval=0.1), dog.state
    state = json.loads(watchdog_state_path(tmp_path).read_text())
    assert state["total_lag"] == 0 and state["last_time_to_heal_seconds"] > 0
    assert any(message.startswith("drain moving again") for message in messages)
