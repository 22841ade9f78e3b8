"""docker-compose.yml is valid and wires every service the way the local stack does."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from shoppulse.allocator import DRAIN_MALLOC_CONF, POLARS_MALLOC_CONF_VAR
from shoppulse.settings import PROJECT_ROOT
from shoppulse.stack.postgres import SERVER_TUNING

COMPOSE = shutil.which("docker-compose")
pytestmark = pytest.mark.skipif(COMPOSE is None, reason="docker-compose not installed (make test installs it as root)")

APP_SERVICES = {
    "setup",
    "dagster-code-server",
    "dagster-webserver",
    "dagster-daemon",
    "api",
    "simulator",
    "drain-watchdog",
    "metrics-exporter",
}
OBSERVABILITY_SERVICES = {"prometheus", "grafana"}  # checked in tests/observability/test_dashboards.py
CELERY_SERVICES = {"redis", "celery-worker"}  # the `celery` profile, checked in tests/stack/test_celery_config.py
REQUIRED_ENV = {
    "KAFKA_BOOTSTRAP_SERVERS",
    "DATABASE_URL",
    "DAGSTER_DATABASE_URL",
    "SHOPPULSE_LAKE_DIR",
    "SHOPPULSE_LAKE_URI",
    "AWS_ENDPOINT_URL",
    "DAGSTER_HOME",
}


def compose_config() -> dict:
    out = subprocess.run(
        [COMPOSE, "-f", str(PROJECT_ROOT / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        check=True,
        cwd=PROJECT_ROOT,
    )
    return yaml.safe_load(out.stdout)


def test_compose_file_validates_without_an_engine() -> None:
    proc = subprocess.run(
        [COMPOSE, "-f", str(PROJECT_ROOT / "docker-compose.yml"), "config", "-q"],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
    )
    assert proc.returncode == 0, proc.stderr


def test_compose_services_are_wired_like_the_local_stack() -> None:
    config = compose_config()
    services = config["services"]
    assert set(services) == {"kafka", "postgres", "s3"} | APP_SERVICES | OBSERVABILITY_SERVICES | CELERY_SERVICES
    assert services["s3"]["image"].startswith("andrewgaul/s3proxy") and services["s3"]["profiles"] == ["s3"]
    assert services["kafka"]["image"].startswith("apache/kafka:4.")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert services["postgres"]["image"].startswith("postgres:")
    for name in ("kafka", "postgres", "dagster-code-server", "dagster-webserver", "dagster-daemon", "api"):
        assert "healthcheck" in services[name], f"{name} has no healthcheck"
    for name in APP_SERVICES:
        service = services[name]
        assert set(service["environment"]) >= REQUIRED_ENV, (
            f"{name} misses {REQUIRED_ENV - set(service['environment'])}"
        )
        assert service["build"]["context"] == str(PROJECT_ROOT)
        mounts = [v.get("target") if isinstance(v, dict) else str(v).split(":")[1] for v in service["volumes"]]
        assert "/data/lake" in mounts, f"{name} does not mount the lake"
    # Nothing app-side starts before the topic exists and the schema is migrated.
    for name in APP_SERVICES - {"setup", "dagster-webserver", "dagster-daemon"}:
        assert services[name]["depends_on"]["setup"]["condition"] == "service_completed_successfully"
    for name in ("dagster-webserver", "dagster-daemon"):
        assert services[name]["depends_on"]["dagster-code-server"]["condition"] == "service_healthy"
    assert services["setup"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert {"kafka-data", "pg-data", "lake"} <= set(config["volumes"])
    # The webserver and daemon load the code server that the compose file starts.
    workspace = yaml.safe_load((PROJECT_ROOT / "docker" / "workspace.yaml").read_text())
    server = workspace["load_from"][0]["grpc_server"]
    assert server["host"] == "dagster-code-server"
    assert str(server["port"]) in services["dagster-code-server"]["command"]
    # The drain runs in the code server with the same allocator options as under `make run`.
    code_server_env = services["dagster-code-server"]["environment"]
    assert code_server_env[POLARS_MALLOC_CONF_VAR] == DRAIN_MALLOC_CONF
    assert all(
        POLARS_MALLOC_CONF_VAR not in services[name]["environment"] for name in APP_SERVICES - {"dagster-code-server"}
    )


def test_compose_restarts_what_dies_like_the_supervisor() -> None:
    services = compose_config()["services"]
    long_running = {"kafka", "postgres"} | APP_SERVICES - {"setup", "simulator"}
    assert {name: services[name]["restart"] for name in long_running} == dict.fromkeys(long_running, "unless-stopped")
    assert services["simulator"]["restart"] == "on-failure"  # a --duration run that ends is not restarted
    assert services["setup"]["restart"] == "no"
    watchdog = services["drain-watchdog"]
    assert watchdog["command"][-4:] == [
        "shoppulse.stack",
        "watchdog",
        "--webserver-url",
        "http://dagster-webserver:3000",
    ]
    assert "healthcheck" in watchdog
    assert "api.http_protocol:GuardedHttpToolsProtocol" in services["api"]["command"]


def test_compose_postgres_runs_with_the_local_clusters_server_settings() -> None:
    command = compose_config()["services"]["postgres"]["command"]
    assert command[0] == "postgres"
    given = dict(
        setting.split("=", 1) for flag, setting in zip(command[1::2], command[2::2], strict=True) if flag == "-c"
    )
    assert given == SERVER_TUNING
