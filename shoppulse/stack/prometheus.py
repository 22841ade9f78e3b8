"""Observability services of the local stack: the pipeline metrics exporter and, optionally, Prometheus.

Prometheus is Debian's `prometheus` package. `make run` starts it when the binary is present, or when
`SHOPPULSE_PROMETHEUS=1` (then a missing binary is installed with apt-get when running as root, and the
install is announced); `SHOPPULSE_PROMETHEUS=0` never starts it. Its configuration is the committed
`ops/prometheus/prometheus.yml` (the docker-compose one) with each job's targets pointed at this stack's
ports and the rule files at `ops/prometheus/rules/`; the rendered copy and the TSDB live under HOME.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from shoppulse.settings import PROJECT_ROOT, Settings
from shoppulse.stack.debian import binary_from_package
from shoppulse.stack.errors import StackError

OPS_DIR = PROJECT_ROOT / "ops" / "prometheus"
CONFIG_TEMPLATE = OPS_DIR / "prometheus.yml"
RULES_DIR = OPS_DIR / "rules"
API_JOB = "shoppulse-api"
PIPELINE_JOB = "shoppulse-pipeline"
SELF_JOB = "prometheus"
APT_PACKAGES = ("prometheus",)


def prometheus_binary() -> str | None:
    return shutil.which("prometheus")


def install_prometheus() -> str:
    """Install Debian's prometheus (with promtool) via apt-get; the binary's path."""
    return binary_from_package(
        "prometheus",
        APT_PACKAGES,
        "SHOPPULSE_PROMETHEUS=1: Prometheus (and promtool) for the stack's metrics and alert rules",
        "install Debian's `prometheus` package, or set SHOPPULSE_PROMETHEUS=0",
    )


def wanted_prometheus(settings: Settings) -> str | None:
    """The prometheus binary to start, or None when it should not run (see the module doc)."""
    if settings.prometheus_enabled is False:
        return None
    binary = prometheus_binary()
    if binary is None and settings.prometheus_enabled:
        binary = install_prometheus()
    return binary


def local_targets(settings: Settings) -> dict[str, list[str]]:
    """Scrape targets per job on this machine."""
    return {
        API_JOB: [f"127.0.0.1:{settings.api_port}"],
        PIPELINE_JOB: [f"127.0.0.1:{settings.metrics_port}"],
        SELF_JOB: [f"127.0.0.1:{settings.prometheus_port}"],
    }


def render_config(settings: Settings) -> dict:
    """The committed configuration with this stack's targets and absolute rule paths."""
    config = yaml.safe_load(CONFIG_TEMPLATE.read_text())
    targets = local_targets(settings)
    for job in config["scrape_configs"]:
        if job["job_name"] not in targets:
            raise StackError(f"{CONFIG_TEMPLATE}: job {job['job_name']!r} has no local target")
        job["static_configs"] = [{"targets": targets[job["job_name"]]}]
    config["rule_files"] = [str(RULES_DIR / "*.yml")]
    if settings.prometheus_scrape_interval:
        config["global"]["scrape_interval"] = settings.prometheus_scrape_interval
        config["global"]["evaluation_interval"] = settings.prometheus_scrape_interval
        for job in config["scrape_configs"]:
            job.pop("scrape_timeout", None)  # the default timeout follows the interval
    return config


def prometheus_dir(settings: Settings) -> Path:
    return settings.home / "prometheus"


def write_config(settings: Settings) -> Path:
    path = prometheus_dir(settings) / "prometheus.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(render_config(settings), sort_keys=False))
    return path


def prometheus_argv(settings: Settings, binary: str) -> tuple[str, ...]:
    return (
        binary,
        f"--config.file={write_config(settings)}",
        f"--storage.tsdb.path={prometheus_dir(settings) / 'data'}",
        f"--storage.tsdb.retention.time={settings.prometheus_retention}",
        f"--web.listen-address=127.0.0.1:{settings.prometheus_port}",
        "--web.enable-lifecycle",
    )
