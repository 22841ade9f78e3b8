"""`python -m shoppulse.stack run` in its own home and ports, beside the project's stack (for the
end-to-end tests and the freshness benchmark)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from shoppulse.settings import PROJECT_ROOT, Settings
from shoppulse.stack.processes import free_port
from shoppulse.warehouse.db import with_database

PORT_VARIABLES = (
    "SHOPPULSE_DAGSTER_PORT",
    "SHOPPULSE_API_PORT",
    "SHOPPULSE_DAGSTER_CODE_SERVER_PORT",
    "SHOPPULSE_METRICS_PORT",
    "SHOPPULSE_PROMETHEUS_PORT",
    "SHOPPULSE_REDIS_PORT",
)
READY_LINE = "Press Ctrl-C to stop."


@dataclass
class IsolatedRun:
    """A running `stack run` (without the simulator unless asked): its process, environment, ports and log."""

    proc: subprocess.Popen
    env: dict[str, str]
    ports: dict[str, int]
    log: Path

    def stop(self) -> None:
        """Kill it if still running, then `stack down` whatever it left."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        subprocess.run([sys.executable, "-m", "shoppulse.stack", "down"], env=self.env, cwd=PROJECT_ROOT, check=False)


def start_isolated_run(
    home: Path, log: Path, settings: Mapping[str, str], timeout: float = 240.0, simulator: bool = False
) -> IsolatedRun:
    """Start the run on `home` and free ports, with `settings` (e.g. broker, topic, databases) on top of
    this process's environment minus its SHOPPULSE_/DAGSTER_ variables; return once it is ready.

    Raises RuntimeError with the run's log when it exits or is not ready within `timeout` seconds.
    """
    ports = {name: free_port() for name in PORT_VARIABLES}
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SHOPPULSE_", "DAGSTER_"))},
        "SHOPPULSE_HOME": str(home),
        **{name: str(port) for name, port in ports.items()},
        **settings,
    }
    with open(log, "w") as output:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            [sys.executable, "-m", "shoppulse.stack", "run", "--simulator" if simulator else "--no-simulator"],
            env=env,
            cwd=PROJECT_ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    run = IsolatedRun(proc, env, ports, log)
    deadline = time.monotonic() + timeout
    while READY_LINE not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            run.stop()
            raise RuntimeError("the stack did not come up:\n" + log.read_text())
        time.sleep(1)
    return run


@contextmanager
def isolated_stack_databases(
    settings: Settings, prefix: str, topic: str, reuse: Sequence[str] = (), keep: bool = False
) -> Iterator[dict[str, str]]:
    """Two databases (analytics, Dagster) on the real server and the environment that points an isolated
    `stack run` at them, the real broker and `topic`: fresh ones, or the two named in `reuse` (kept by an
    earlier run). On exit they are dropped, unless `keep` and the block succeeded; databases this call
    created are dropped on failure too, reused ones never are."""
    names = list(reuse) or [f"{prefix}_{uuid.uuid4().hex[:8]}", f"{prefix}_dagster_{uuid.uuid4().hex[:8]}"]
    if not reuse:
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            for name in names:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    try:
        yield {
            "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
            "SHOPPULSE_EVENTS_TOPIC": topic,
            "DATABASE_URL": with_database(settings.database_url, names[0]),
            "DAGSTER_DATABASE_URL": with_database(settings.database_url, names[1]),
        }
    except BaseException:
        if not reuse:
            drop_databases(settings, names)
        raise
    if not keep:
        drop_databases(settings, names)


def drop_databases(settings: Settings, names: Sequence[str]) -> None:
    """Drop these databases of the real server (connections to them are terminated)."""
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        for name in names:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
