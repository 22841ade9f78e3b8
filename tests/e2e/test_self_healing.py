"""Faults injected into a running `make run` stack while the simulator's traffic flows: kill -9 of the code
server's gRPC child (the drain's process), of the code server, of the daemon, and of the API, webserver and
simulator. With no manual step, every message produced before each fault reaches the lake again and the API
answers; `/health/freshness` and `/health/ready` showed the drain's stall while it lasted; in the end the API
equals the ground truth recomputed from every message in the topic. One stack serves all the faults.

Time to heal per fault is printed (run with -s) and recorded as a test property.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from shoppulse.lake import committed_offsets
from shoppulse.lake.lag import broker_lag
from shoppulse.settings import Settings
from shoppulse.stack.isolated import IsolatedRun, isolated_stack_databases, start_isolated_run
from shoppulse.stack.kafka import ensure_topic
from shoppulse.stack.processes import child_pids, process_cmdline, wait_until
from tests.e2e.test_pipeline import SALES, api_sales
from tests.simulator.oracle import recompute

pytestmark = pytest.mark.slow
PARTITIONS = 3
HEAL_TIMEOUT = 300.0
"""Bound on each heal (generous: two cores shared with the rest of the suite); the times are reported."""
HEALTH_SETTINGS = {
    "SHOPPULSE_SIMULATOR_RATE": "20",
    "SHOPPULSE_HEALTH_INGEST_STALL_SECONDS": "4",
    "SHOPPULSE_DRAIN_WATCHDOG_STALL_SECONDS": "8",
    "SHOPPULSE_DRAIN_WATCHDOG_GRACE_SECONDS": "45",
    # The test polls health and sales from one client for minutes; the per-client limit is tested elsewhere.
    "SHOPPULSE_API_RATE_LIMIT": "100000/minute",
}


@pytest.fixture(scope="module")
def healing_run(stack, settings: Settings, tmp_path_factory: pytest.TempPathFactory):
    """`python -m shoppulse.stack run` with the simulator, on its own home, ports, topic and databases."""
    tmp = tmp_path_factory.mktemp("healing")
    topic = f"test.healing.{uuid.uuid4().hex[:10]}"
    ensure_topic(settings.bootstrap_servers, topic, PARTITIONS)
    with isolated_stack_databases(settings, "heal", topic) as databases:
        run = start_isolated_run(tmp / "home", tmp / "run.log", {**databases, **HEALTH_SETTINGS}, simulator=True)
        try:
            yield run, settings, topic, tmp / "home"
        finally:
            run.stop()
            admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
            admin.delete_topics([topic])[topic].result(30)


class RunningStack:
    """The running stack seen from outside: pids, the lake's offsets, the broker's, the API's health."""

    def __init__(self, run: IsolatedRun, settings: Settings, topic: str, home: Path) -> None:
        self.run, self.settings, self.topic, self.home = run, settings, topic, home
        self.api = httpx.Client(base_url=f"http://127.0.0.1:{run.ports['SHOPPULSE_API_PORT']}", timeout=30)

    def pid(self, app: str) -> int | None:
        try:
            pid = int((self.home / "run" / f"{app}.pid").read_text())
        except (FileNotFoundError, ValueError):
            return None
        return pid if process_cmdline(pid) is not None else None

    def lake_offsets(self) -> dict[int, int]:
        return committed_offsets(self.home / "lake", self.topic)

    def broker_offsets(self) -> dict[int, int]:
        report = broker_lag(self.settings.bootstrap_servers, self.topic, {}, timeout=10)
        return {p.partition: p.high_watermark for p in report.partitions}

    def freshness(self) -> dict | None:
        try:
            response = self.api.get("/health/freshness")
            ready = self.api.get("/health/ready")
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        data = response.json()["data"]
        data["ready_status"] = ready.status_code
        return data

    def heal_after(self, kill: Callable[[], object], apps: list[str]) -> dict:
        """Kill (kill -9), then watch until the apps run again under new pids, everything the broker held
        at the kill is in the lake, and the API answers. Returns what was seen and how long it took."""
        old = {app: self.pid(app) for app in apps}
        assert all(old.values()), old
        wait_until(lambda: self.lake_offsets() != {}, 120)  # the drain has committed at least once
        target = self.broker_offsets()
        killed_at = time.monotonic()
        kill()
        seen: dict = {"stalled": False, "not_ready_reasons": set(), "max_lag": 0}

        def healed() -> bool:
            data = self.freshness()
            if data is not None:
                seen["stalled"] |= data["ingest"]["stalled"]
                seen["max_lag"] = max(seen["max_lag"], data["ingest"]["total_lag"] or 0)
                seen["not_ready_reasons"].update(reason.split(":")[0] for reason in data["reasons"])
            restarted = all((pid := self.pid(app)) is not None and pid != old[app] for app in apps)
            lake = self.lake_offsets()
            drained = all(lake.get(p, 0) >= offset for p, offset in target.items())
            return restarted and drained and data is not None

        assert wait_until(healed, HEAL_TIMEOUT, interval=1.0), (apps, seen, self.run.log.read_text()[-3000:])
        seen["seconds"] = round(time.monotonic() - killed_at, 1)
        return seen


def kill9(pid: int | None) -> None:
    assert pid is not None
    os.kill(pid, signal.SIGKILL)


def read_topic(settings: Settings, topic: str, until: dict[int, int]) -> list[tuple[bytes, int]]:
    """(value, timestamp) of every message below `until`, in partition and offset order."""
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": "healing-readback"})
    consumer.assign([TopicPartition(topic, p, 0) for p in until])
    got: dict[int, list[tuple[int, bytes, int]]] = {p: [] for p in until}
    try:
        while any(len(got[p]) < n for p, n in until.items()):
            for msg in consumer.consume(5_000, timeout=1.0):
                assert msg.error() is None, msg.error()
                if msg.offset() < until[msg.partition()]:
                    got[msg.partition()].append((msg.offset(), msg.value(), msg.timestamp()[1]))
    finally:
        consumer.close()
    return [(value, ts) for p in sorted(got) for _, value, ts in sorted(got[p])]


def test_every_killed_process_heals_and_the_api_ends_equal_to_the_ground_truth(healing_run, record_property) -> None:
    run, settings, topic, home = healing_run
    stack = RunningStack(run, settings, topic, home)
    heals: dict[str, dict] = {}

    # The drain's own process: the code server's gRPC child (the code server itself stays up).
    code_server = stack.pid("dagster-code-server")
    grpc_child = child_pids(code_server)[0]
    heals["grpc child"] = stack.heal_after(lambda: kill9(grpc_child), [])
    watchdog = json.loads((home / "run" / "drain-watchdog.json").read_text())
    assert watchdog["stalls"] >= 1 and watchdog["heals"] >= 1, watchdog

    # The code server: its gRPC child must not outlive it.
    code_server = stack.pid("dagster-code-server")
    grpc_child = child_pids(code_server)[0]
    heals["code server"] = stack.heal_after(lambda: kill9(code_server), ["dagster-code-server"])
    assert process_cmdline(grpc_child) is None, "the killed code server's gRPC child survived it"

    heals["daemon"] = stack.heal_after(lambda: kill9(stack.pid("dagster-daemon")), ["dagster-daemon"])

    apps = ["api", "dagster-webserver", "simulator"]
    heals["api + webserver + simulator"] = stack.heal_after(lambda: [kill9(stack.pid(app)) for app in apps], apps)

    stall_threshold = float(HEALTH_SETTINGS["SHOPPULSE_HEALTH_INGEST_STALL_SECONDS"])
    for fault in ("grpc child", "code server", "daemon"):  # the drain stopped: health said so while it lasted
        if fault != "grpc child" and heals[fault]["seconds"] < 2 * stall_threshold:
            continue  # restarted by the supervisor, it drained again before a stall could be declared
        assert heals[fault]["stalled"], (fault, heals[fault])
        assert "ingestion stalled" in heals[fault]["not_ready_reasons"], (fault, heals[fault])
    for fault, seen in heals.items():
        print(f"time to heal after kill -9 of the {fault}: {seen['seconds']}s (health showed: {seen})")
        record_property(f"heal_seconds[{fault}]", seen["seconds"])

    status = json.loads((home / "run" / "supervisor.json").read_text())["apps"]
    killed = ["dagster-code-server", "dagster-daemon", *apps]
    assert all(status[app]["restarts"] >= 1 for app in killed), status  # the watchdog may restart more
    assert all(status[app]["state"] == "running" for app in status), status
    assert status["api"]["last_exit"] == "killed by SIGKILL"

    # Pause the traffic (the simulator stays alive, so nothing restarts it), then the API must equal the
    # ground truth recomputed from every message in the topic, within a bounded time.
    simulator = stack.pid("simulator")
    os.kill(simulator, signal.SIGSTOP)
    try:
        time.sleep(1)
        final = stack.broker_offsets()
        truth = recompute(read_topic(settings, topic, final), 72 * 3_600_000, settings.max_event_bytes)
        expected = {
            (day, cur): {k: truth["days"][day]["sales"][cur][k] for k in SALES}
            for day in truth["days"]
            for cur in truth["days"][day]["sales"]
        }
        assert any(sales["orders"] for sales in expected.values()), "the simulator sold nothing"
        began = time.monotonic()

        def served() -> dict:
            return {key: {k: api_sales(stack.api, *key)[k] for k in SALES} for key in expected}

        assert wait_until(lambda: served() == expected, HEAL_TIMEOUT, interval=2.0), (served(), expected)
        print(f"API equal to the ground truth {time.monotonic() - began:.1f}s after the traffic paused")
    finally:
        os.kill(simulator, signal.SIGCONT)

    # Ctrl-C still stops everything the run started, and no process of it survives.
    pids = [stack.pid(app) for app in status]
    run.proc.send_signal(signal.SIGINT)
    assert run.proc.wait(timeout=120) == 0, run.log.read_text()[-3000:]
    assert all(process_cmdline(pid) is None for pid in pids if pid is not None)
