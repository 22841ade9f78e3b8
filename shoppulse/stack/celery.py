"""Optional: rollup runs and backfills on Celery workers (dagster-celery's `CeleryRunLauncher`, Redis).

With `SHOPPULSE_RUN_LAUNCHER=celery`, the Dagster instance launches every run as a Celery task on Redis
instead of forking it on this machine; `SHOPPULSE_CELERY_WORKERS` workers (each running
`SHOPPULSE_CELERY_WORKER_CONCURRENCY` runs at a time in its prefork pool) execute them, on this host or
any host that shares the instance storage (PostgreSQL), the lake and the broker. Inside a worker a
run's steps execute in-process (`in_process_executor` in the Definitions: Celery's pool processes are
daemonic and may not start children). Redis is Debian's `redis-server` (installed with apt-get when
missing and running as root, saying so) or `SHOPPULSE_REDIS_URL`. Workers must be restarted after a
code change (they keep the imported modules).

See docs/scaling.md.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from shoppulse.settings import PROJECT_ROOT, Settings
from shoppulse.stack.debian import binary_from_package

CELERY_APP = "pipelines.celery_app"
QUEUE = "dagster"
CELERY_CONFIG: dict[str, Any] = {
    "result_extended": True,  # the backend records which worker ran a task
    "worker_prefetch_multiplier": 1,  # a worker takes the next run only when it has a free slot
    "task_acks_late": False,
}


def broker_url(settings: Settings) -> str:
    return f"{settings.redis_url}/0"


def backend_url(settings: Settings) -> str:
    return f"{settings.redis_url}/1"


def celery_app_args(settings: Settings) -> dict[str, Any]:
    """The Celery app both the launcher (sending) and the workers (executing) build."""
    return {
        "broker": broker_url(settings),
        "backend": backend_url(settings),
        "include": [],
        "config_source": dict(CELERY_CONFIG),
        "task_default_queue": QUEUE,
    }


def celery_instance_yaml(settings: Settings, base: Path = PROJECT_ROOT / "dagster.yaml") -> str:
    """The project's dagster.yaml with the Celery run launcher in place of the fork server one."""
    config = yaml.safe_load(base.read_text())
    config["run_launcher"] = {
        "module": "dagster_celery.launcher",
        "class": "CeleryRunLauncher",
        "config": {
            "broker": broker_url(settings),
            "backend": backend_url(settings),
            "default_queue": QUEUE,
            "config_source": dict(CELERY_CONFIG),
        },
    }
    header = (
        "# Written by `python -m shoppulse.stack` (SHOPPULSE_RUN_LAUNCHER=celery): the project's dagster.yaml\n"
        "# with runs launched as Celery tasks (shoppulse/stack/celery.py).\n"
    )
    return header + yaml.safe_dump(config, sort_keys=False)


def redis_binary() -> str:
    """Debian's redis-server, installed with apt-get when missing (root only)."""
    return binary_from_package(
        "redis-server",
        ["redis-server"],
        "SHOPPULSE_RUN_LAUNCHER=celery needs Redis as Celery's broker",
        "install Debian's `redis-server`, or set SHOPPULSE_REDIS_URL",
    )


def redis_argv(settings: Settings, binary: str) -> tuple[str, ...]:
    """A loopback-only, non-persistent Redis (runs in flight are in Dagster's storage, not here)."""
    data = settings.home / "redis"
    data.mkdir(parents=True, exist_ok=True)
    return (
        binary,
        "--set-proc-title",  # keep the command line: the stack finds its processes by it
        "no",
        "--port",
        str(settings.redis_port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(data),
        "--save",
        "",
        "--appendonly",
        "no",
    )


def worker_argv(name: str, concurrency: int, python: str = sys.executable) -> tuple[str, ...]:
    """One Celery worker (prefork pool of `concurrency` processes) executing Dagster runs."""
    return (
        python,
        "-m",
        "celery",
        "-A",
        CELERY_APP,
        "worker",
        "--pool",
        "prefork",
        "--concurrency",
        str(concurrency),
        "--prefetch-multiplier",
        "1",
        "--queues",
        QUEUE,
        "--hostname",
        f"{name}@%h",
        "--loglevel",
        "INFO",
    )
