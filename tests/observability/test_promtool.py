"""The committed Prometheus configuration and alert rules pass promtool, and each alert's unit tests pass."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from shoppulse.settings import Settings
from shoppulse.stack import prometheus

PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (make test installs Debian's prometheus as root)"
)
RULES = sorted(prometheus.RULES_DIR.glob("*.yml"))
RULE_TESTS = sorted((prometheus.OPS_DIR / "tests").glob("*.yml"))


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120)  # type: ignore[list-item]


def test_committed_config_is_valid() -> None:
    done = promtool("check", "config", str(prometheus.CONFIG_TEMPLATE))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_the_local_stacks_rendered_config_is_valid(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path, api_port=18123, metrics_port=18124, prometheus_port=18125, prometheus_scrape_interval="1s"
    )
    rendered = prometheus.render_config(settings)
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(rendered))
    done = promtool("check", "config", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in rendered["scrape_configs"]}
    assert targets == {
        "shoppulse-api": ["127.0.0.1:18123"],
        "shoppulse-pipeline": ["127.0.0.1:18124"],
        "prometheus": ["127.0.0.1:18125"],
    }


def test_rules_are_valid() -> None:
    assert RULES
    done = promtool("check", "rules", *map(str, RULES))
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_unit_test_and_they_pass() -> None:
    alerts = {
        rule["alert"]
        for path in RULES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    tested = {
        case["alertname"]
        for path in RULE_TESTS
        for test in yaml.safe_load(path.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert alerts == tested, f"alerts without a firing test: {sorted(alerts - tested)}"
    done = promtool("test", "rules", *map(str, RULE_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr
