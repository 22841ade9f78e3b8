"""The watchdogs of `make run`. The drain watchdog against the real broker and a real lake: a drain that
does not commit while Kafka holds messages is detected, healed with escalating remedies, recorded, and its
recovery timed; the cause does not matter (here: no drain runs at all), which is the point. The service
watch against a real PostgreSQL cluster killed with -9."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import psycopg

from shoppulse.lake.drain import DrainConfig, drain
from shoppulse.serving.readiness import watchdog_state_path
from shoppulse.settings import Settings
from shoppulse.stack.postgres import LocalPostgres
from shoppulse.stack.processes import free_port, wait_until
from shoppulse.stack.watchdog import MAX_HEALS_PER_STALL, DrainWatchdog, ServiceWatch
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

    # A stall no heal cures (e.g. the sensor switched off) is healed a bounded number of times, then reported.
    assert wait_until(lambda: checked(lambda: dog.state["status"] == "stalled, not healing"), 30, interval=0.1)
    assert len(heals) == MAX_HEALS_PER_STALL and [kind for kind, _ in heals][2] == "restart"
    assert any(message.startswith("drain still stalled after 3 heals") for message in messages)

    drain(DrainConfig.from_settings(local, max_seconds=10))  # the drain works again
    assert wait_until(lambda: checked(lambda: dog.state["status"] == "ok"), 30, interval=0.1), dog.state
    state = json.loads(watchdog_state_path(tmp_path).read_text())
    assert state["total_lag"] == 0 and state["last_time_to_heal_seconds"] > 0
    assert any(message.startswith("drain moving again") for message in messages)


def test_a_killed_local_postgres_is_reported_and_started_again(settings: Settings, tmp_path: Path) -> None:
    """ServiceWatch against a real, separate PostgreSQL cluster (its own home and port)."""
    local = Settings(  # an external broker is not watched: only this cluster is
        home=tmp_path / "home",
        pg_port=free_port(),
        kafka_bootstrap_servers=settings.bootstrap_servers,
        database_url_override=None,
        dagster_database_url_override=None,
    )
    postgres = LocalPostgres(local)
    messages: list[tuple[str, bool]] = []
    watch = ServiceWatch(local, report=lambda message, loud: messages.append((message, loud)))
    assert set(watch.services) == {"postgres"}
    try:
        postgres.start()
        first = postgres.running_pid()
        assert first is not None
        os.kill(first, signal.SIGKILL)
        assert wait_until(lambda: postgres.running_pid() is None, 10)

        def back() -> bool:
            watch.check()
            return postgres.running_pid() not in (None, first)

        assert wait_until(back, 120, interval=0.2), messages
        with psycopg.connect(local.database_url, connect_timeout=10) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert messages[0] == ("POSTGRES DIED (its process is gone); starting it again in 1s", True)
        assert messages[-1] == ("postgres is back (restart #1)", True)
        assert watch.restarts["postgres"] == 1
    finally:
        postgres.stop()
        shutil.rmtree(postgres.base, ignore_errors=True)
