"""The whole product, as `make run` starts it: simulator traffic with faults -> Kafka -> drain sensor
(Dagster daemon) -> lake -> rollup runs -> PostgreSQL -> API, checked against the simulator's ground truth.

The stack runs in its own SHOPPULSE_HOME on free ports, on a fresh topic and fresh databases of the
session's broker and server, so it never touches a developer's running `make run`.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import polars as pl
import pytest

from shoppulse.lake.layout import LakeTable, partition_dates, read_partition
from shoppulse.settings import PROJECT_ROOT, Settings
from shoppulse.stack.isolated import isolated_stack_databases, start_isolated_run
from shoppulse.stack.processes import port_is_open

pytestmark = pytest.mark.slow
SALES = ("orders", "units", "gross_sales", "discounts", "returns", "net_sales", "shipping", "taxes", "total_sales")


@pytest.fixture
def isolated_run(stack, settings: Settings, tmp_path: Path, kafka_topic):
    """`python -m shoppulse.stack run --no-simulator` on its own home, ports, topic and databases."""
    topic = kafka_topic("e2e", partitions=6)
    with isolated_stack_databases(settings, "e2e", topic) as databases:
        run = start_isolated_run(tmp_path / "home", tmp_path / "run.log", databases)
        yield {
            "proc": run.proc,
            "env": run.env,
            "topic": topic,
            "ports": run.ports,
            "home": tmp_path / "home",
            "log": run.log,
        }
        run.stop()


def api_sales(client: httpx.Client, day: str, currency: str) -> dict:
    response = client.get(
        "/analytics/sales/timeseries",
        params={"granularity": "day", "from": day, "to": day, "native_currency": currency, "currency": currency},
    )
    response.raise_for_status()
    return response.json()["data"]["totals"]


def test_simulated_traffic_ends_up_exactly_in_the_api(isolated_run, settings: Settings, tmp_path: Path) -> None:
    truth_path = tmp_path / "truth.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "simulator",
            "history",
            "--days",
            "2",
            "--events-per-day",
            "4000",
            "--seed",
            "20261125",
            "--duplicate-rate",
            "0.02",
            "--malformed-rate",
            "0.005",
            "--late-rate",
            "0.02",
            "--out-of-order-rate",
            "0.02",
            "--v2-rate",
            "0.1",
            "--topic",
            isolated_run["topic"],
            "--bootstrap-servers",
            settings.bootstrap_servers,
            "--ground-truth",
            str(truth_path),
            "--no-progress",
        ],
        check=True,
        cwd=PROJECT_ROOT,
        env=isolated_run["env"],
        capture_output=True,
    )
    truth = json.loads(truth_path.read_text())
    days = sorted(truth["days"])
    client = httpx.Client(base_url=f"http://127.0.0.1:{isolated_run['ports']['SHOPPULSE_API_PORT']}", timeout=30)

    def served() -> dict:
        return {(day, cur): api_sales(client, day, cur) for day in days for cur in truth["days"][day]["sales"]}

    expected = {
        (day, cur): {k: truth["days"][day]["sales"][cur][k] for k in SALES}
        for day in days
        for cur in truth["days"][day]["sales"]
    }
    deadline = time.monotonic() + 240
    while True:
        actual = {key: {k: value[k] for k in SALES} for key, value in served().items()}
        if actual == expected or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert actual == expected

    # Category breakdown (line level: a category's orders are the distinct orders with a line of it).
    lines = ("orders", "units", "gross_sales", "discounts", "returns", "net_sales")
    for day in days:
        for currency, categories in truth["days"][day]["categories"].items():
            response = client.get(
                "/analytics/sales/breakdown",
                params={
                    "dimension": "category",
                    "from": day,
                    "to": day,
                    "native_currency": currency,
                    "currency": currency,
                },
            )
            served_categories = {
                item["value"]: {k: item[k] for k in lines} for item in response.json()["data"]["items"]
            }
            assert served_categories == {c: {k: v[k] for k in lines} for c, v in categories.items()}, (day, currency)

    # Audience and funnel numbers, day by day.
    for day in days:
        users = client.get("/analytics/users/daily", params={"from": day, "to": day}).json()["data"]["days"][0]
        assert users["dau"] == truth["days"][day]["dau"], day
        assert users["sessions"] == truth["days"][day]["sessions"], day
        funnel = client.get("/analytics/funnel", params={"from": day, "to": day}).json()["data"]
        stages = {stage["stage"]: stage["sessions"] for stage in funnel["stages"]}
        assert stages == truth["days"][day]["funnel"], day

    # Nothing was lost on the way in: malformed messages are all quarantined, beyond-horizon events kept.
    lake = isolated_run["home"] / "lake"
    quarantined: dict[str, dict[str, int]] = {}
    for day in partition_dates(lake, LakeTable.QUARANTINE):
        frame = pl.read_parquet(read_partition(lake, LakeTable.QUARANTINE, day).paths)
        quarantined[day.isoformat()] = dict(frame.group_by("reason_code").len().iter_rows())
    assert quarantined == truth["malformed_by_received_day"]
    late = {  # the lake keeps every delivered copy; the truth counts events (re-sent duplicates once)
        d.isoformat(): pl.read_parquet(read_partition(lake, LakeTable.LATE, d).paths)["event_id"].n_unique()
        for d in partition_dates(lake, LakeTable.LATE)
    }
    assert late == truth["late_beyond_horizon_by_received_day"]

    # Ctrl-C stops everything the run started, and nothing else, even when a second signal follows.
    isolated_run["proc"].send_signal(signal.SIGINT)
    time.sleep(0.5)
    isolated_run["proc"].send_signal(signal.SIGTERM)
    assert isolated_run["proc"].wait(timeout=90) == 0, isolated_run["log"].read_text()
    for port in isolated_run["ports"].values():
        assert not port_is_open(port), f"port {port} still open after Ctrl-C"
    assert not list((isolated_run["home"] / "run").glob("*.pid"))
    assert port_is_open(int(settings.bootstrap_servers.rsplit(":", 1)[1]))  # the shared broker still runs
