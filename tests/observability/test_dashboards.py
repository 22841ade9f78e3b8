"""Grafana dashboards: their JSON structure, their compose wiring, and every panel's PromQL answered by a
real Prometheus scraping a running stack (real Kafka, PostgreSQL, drain, rollup runs and API traffic).
Grafana itself is not installable on these machines; it only adds rendering on top of these queries."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from shoppulse.settings import PROJECT_ROOT, Settings
from shoppulse.stack.isolated import isolated_stack_databases, start_isolated_run

GRAFANA = PROJECT_ROOT / "ops" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
DATASOURCE_UID = "shoppulse-prometheus"
UNITS = {"short", "none", "s", "ops", "reqps", "percentunit", "Bps", "bytes"}
GRAFANA_VARIABLES = {"__rate_interval", "__interval", "__range"}
METRICS_SOURCE = (PROJECT_ROOT / "shoppulse" / "observability" / "metrics.py").read_text()


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def panels() -> list[tuple[str, dict]]:
    return [(path.stem, panel) for path in DASHBOARDS for panel in load(path)["panels"]]


def variables(dashboard: dict) -> dict[str, dict]:
    return {variable["name"]: variable for variable in dashboard["templating"]["list"]}


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\bshoppulse_[a-z0-9_]+", expr))


def defined(name: str) -> bool:
    """The metric (or a series of it: _total, _bucket, _count, _sum) is defined in metrics.py."""
    base = re.sub(r"_(total|bucket|count|sum)$", "", name)
    return f'"{name}"' in METRICS_SOURCE or f'"{base}"' in METRICS_SOURCE


def test_dashboards_are_well_formed_and_use_the_provisioned_datasource() -> None:
    assert {path.stem for path in DASHBOARDS} == {"shoppulse-pipeline", "shoppulse-api", "shoppulse-business"}
    datasources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert [ds["uid"] for ds in datasources["datasources"]] == [DATASOURCE_UID]
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "shoppulse.yml").read_text())
    assert providers["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards/shoppulse"
    uids = [load(path)["uid"] for path in DASHBOARDS]
    assert len(set(uids)) == len(uids)
    for path in DASHBOARDS:
        dashboard = load(path)
        declared = variables(dashboard)
        source = declared["datasource"]
        assert source["type"] == "datasource" and source["query"] == "prometheus"
        assert source["current"]["value"] == DATASOURCE_UID
        for variable in declared.values():
            if variable["type"] == "query":
                assert variable["datasource"]["uid"] == "${datasource}"
                assert re.fullmatch(r"label_values\((shoppulse_\w+), (\w+)\)", variable["query"]["query"])
        ids = [panel["id"] for panel in dashboard["panels"]]
        assert len(set(ids)) == len(ids), path.name
        for panel in dashboard["panels"]:
            where = f"{path.name}: {panel['title']}"
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
            assert panel["fieldConfig"]["defaults"]["unit"] in UNITS, where
            assert panel["targets"], where
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == "${datasource}", where
                used = set(re.findall(r"\$(\w+)", target["expr"]))
                assert used <= set(declared) | GRAFANA_VARIABLES, f"{where}: undefined {used - set(declared)}"
                names = metric_names(target["expr"])
                assert names, where
                assert all(defined(name) for name in names), f"{where}: {names}"


def test_compose_runs_prometheus_grafana_and_the_exporter_on_shared_metric_files() -> None:
    compose = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert "./ops/prometheus:/etc/prometheus:ro" in services["prometheus"]["volumes"]
    assert "./ops/grafana/provisioning:/etc/grafana/provisioning:ro" in services["grafana"]["volumes"]
    assert "./ops/grafana/dashboards:/var/lib/grafana/dashboards/shoppulse:ro" in services["grafana"]["volumes"]
    scrape = yaml.safe_load((PROJECT_ROOT / "ops" / "prometheus" / "prometheus.yml").read_text())
    targets = {job["job_name"]: job["static_configs"][0]["targets"][0] for job in scrape["scrape_configs"]}
    assert targets["shoppulse-api"] == "api:8000"
    assert targets["shoppulse-pipeline"] == "metrics-exporter:24901"
    assert "24901" in services["metrics-exporter"]["command"]
    datasource = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    # Every process that records pipeline metrics writes them where the exporter reads them; the API doesn't.
    for name in ("dagster-code-server", "dagster-daemon", "simulator"):
        assert services[name]["environment"]["PROMETHEUS_MULTIPROC_DIR"] == "/data/metrics", name
    assert services["metrics-exporter"]["environment"]["SHOPPULSE_METRICS_DIR"] == "/data/metrics"
    assert "PROMETHEUS_MULTIPROC_DIR" not in services["api"]["environment"]


# ------------------------------------------------------------------------------------- live stack

PROMETHEUS = shutil.which("prometheus")
SUBSTITUTIONS = {"$__rate_interval": "2m", "$asset": ".*", "$route": ".*", "$currency": ".*"}


def promql(expr: str) -> str:
    for variable, value in SUBSTITUTIONS.items():
        expr = expr.replace(variable, value)
    return expr


def has_data(client: httpx.Client, expr: str, seconds: int = 600) -> bool:
    """The range query (as Grafana sends it) returns at least one finite value."""
    now = time.time()
    response = client.get(
        "/api/v1/query_range", params={"query": promql(expr), "start": now - seconds, "end": now, "step": 2}
    )
    response.raise_for_status()
    body = response.json()
    assert body["status"] == "success", body
    return any(math.isfinite(float(value)) for series in body["data"]["result"] for _, value in series["values"])


@pytest.fixture
def observed_stack(stack, settings: Settings, tmp_path: Path, kafka_topic):
    """`stack run --no-simulator` with Prometheus (1 s scrapes) on its own home, ports, topic and databases."""
    topic = kafka_topic("dash", partitions=3)
    with isolated_stack_databases(settings, "dash", topic) as databases:
        run = start_isolated_run(
            tmp_path / "home",
            tmp_path / "run.log",
            {**databases, "SHOPPULSE_PROMETHEUS": "1", "SHOPPULSE_PROMETHEUS_SCRAPE_INTERVAL": "1s"},
        )
        yield {
            "run": run,
            "topic": topic,
            "home": tmp_path / "home",
            "prometheus": run.ports["SHOPPULSE_PROMETHEUS_PORT"],
        }
        run.stop()


@pytest.mark.slow
@pytest.mark.skipif(PROMETHEUS is None, reason="prometheus not installed (make test installs it as root)")
def test_every_panel_query_returns_data_from_prometheus_scraping_the_stack(observed_stack, settings: Settings) -> None:
    run = observed_stack["run"]
    # Traffic with faults, produced by the simulator as a pipeline process (its metrics go to the files).
    subprocess.run(
        [sys.executable, "-m", "simulator", "history", "--days", "2", "--events-per-day", "3000",
         "--malformed-rate", "0.03", "--duplicate-rate", "0.02", "--topic", observed_stack["topic"],
         "--bootstrap-servers", settings.bootstrap_servers, "--no-progress"],
        check=True, cwd=PROJECT_ROOT, capture_output=True,
        env={**run.env, "PROMETHEUS_MULTIPROC_DIR": str(observed_stack["home"] / "metrics")},
    )  # fmt: skip
    api = httpx.Client(base_url=f"http://127.0.0.1:{run.ports['SHOPPULSE_API_PORT']}", timeout=30)
    prometheus = httpx.Client(base_url=f"http://127.0.0.1:{observed_stack['prometheus']}", timeout=30)
    queries = [(f"{name}: {panel['title']}", target["expr"]) for name, panel in panels() for target in panel["targets"]]
    deadline = time.monotonic() + 300
    missing = [title for title, _ in queries]
    while missing and time.monotonic() < deadline:
        for path in ("/analytics/sales/daily", "/analytics/users/daily", "/health/freshness", "/analytics/funnel"):
            api.get(path)
            api.get(path)  # the second is a cache hit once the first was a 200
        api.get("/analytics/sales/daily", params={"granularity": "fortnight"})  # a 4xx
        missing = [title for title, expr in queries if not has_data(prometheus, expr)]
        if missing:
            time.sleep(3)
    assert not missing, f"panels without data: {missing}\n" + (observed_stack["home"] / "logs").as_posix()
    # The variables' value lists (label_values) are not empty either.
    for path in DASHBOARDS:
        for variable in variables(load(path)).values():
            if variable["type"] == "query":
                metric, label = re.fullmatch(r"label_values\((\w+), (\w+)\)", variable["query"]["query"]).groups()  # type: ignore[union-attr]
                values = prometheus.get(f"/api/v1/label/{label}/values", params={"match[]": metric}).json()["data"]
                assert values, variable["name"]
    # The alert rules are loaded, and none of them fires on this healthy stack.
    rules = prometheus.get("/api/v1/rules").json()["data"]["groups"]
    assert {rule["name"] for group in rules for rule in group["rules"]} >= {"ShopPulseDrainSensorStalled"}
    firing = [rule["name"] for group in rules for rule in group["rules"] if rule.get("state") == "firing"]
    assert firing == []
    assert os.path.isdir(observed_stack["home"] / "metrics")
