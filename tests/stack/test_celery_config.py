"""The optional Celery run launcher's configuration: local stack, docker-compose profile, Dagster instance."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from shoppulse.settings import PROJECT_ROOT, Settings
from shoppulse.stack import celery, services
from shoppulse.stack.apps import app_processes


def test_the_compose_instance_is_the_projects_with_the_celery_launcher() -> None:
    committed = yaml.safe_load((PROJECT_ROOT / "docker" / "dagster-celery.yaml").read_text())
    generated = yaml.safe_load(celery.celery_instance_yaml(Settings(redis_url_override="redis://redis:6379")))
    assert committed == generated
    project = yaml.safe_load((PROJECT_ROOT / "dagster.yaml").read_text())
    assert {k: v for k, v in committed.items() if k != "run_launcher"} == {
        k: v for k, v in project.items() if k != "run_launcher"
    }
    assert committed["run_launcher"]["class"] == "CeleryRunLauncher"
    assert committed["run_launcher"]["config"]["broker"] == "redis://redis:6379/0"


def test_compose_celery_profile_runs_workers_on_the_celery_instance() -> None:
    compose = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
    worker = compose["services"]["celery-worker"]
    assert worker["profiles"] == ["celery"] and compose["services"]["redis"]["profiles"] == ["celery"]
    assert worker["command"][worker["command"].index("-A") + 1] == celery.CELERY_APP
    assert worker["environment"]["DAGSTER_HOME"] == "/opt/dagster/celery_home"
    assert worker["environment"]["SHOPPULSE_REDIS_URL"] == "redis://redis:6379"
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    assert "COPY docker/dagster-celery.yaml /opt/dagster/celery_home/dagster.yaml" in dockerfile


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed (make test installs it)")
def test_local_stack_with_celery_starts_redis_and_workers_and_writes_the_celery_instance(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, run_launcher="celery", celery_workers=3, redis_port=18999)
    apps = {app.name: app for app in app_processes(settings, with_simulator=False)}
    assert {"redis", "celery-worker-1", "celery-worker-2", "celery-worker-3"} <= set(apps)
    assert "--port" in apps["redis"].argv and "18999" in apps["redis"].argv
    env = {"SHOPPULSE_METRICS_DIR": str(tmp_path / "metrics")}
    assert apps["celery-worker-2"].environment(env)["PROMETHEUS_MULTIPROC_DIR"] == str(tmp_path / "metrics")
    assert "shoppulse-2@%h" in apps["celery-worker-2"].argv
    services.prepare_dagster_home(settings)
    instance = yaml.safe_load((settings.dagster_home / "dagster.yaml").read_text())
    assert instance["run_launcher"]["config"]["broker"] == "redis://127.0.0.1:18999/0"
    # The default launcher stays the fork server, with no Redis and no workers.
    default = Settings(home=tmp_path / "default")
    assert not {"redis", "celery-worker-1"} & {app.name for app in app_processes(default)}
    services.prepare_dagster_home(default)
    assert (default.dagster_home / "dagster.yaml").read_text() == (PROJECT_ROOT / "dagster.yaml").read_text()


def test_the_api_does_not_write_metric_files_but_pipeline_processes_do(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    env = {"SHOPPULSE_METRICS_DIR": str(settings.metrics_dir)}
    shared = {app.name for app in app_processes(settings) if "PROMETHEUS_MULTIPROC_DIR" in app.environment(env)}
    assert shared == {"dagster-code-server", "dagster-daemon", "simulator"}
