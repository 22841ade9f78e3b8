"""Honest ingestion and rollup health for `/health/freshness` and `/health/ready`.

Ingestion lag is measured against the broker (`shoppulse.lake.lag.broker_lag`), never taken from what
the drain last wrote. Two stalls make the service "not ready":

* ingestion: the broker holds messages the lake does not, and the lake's offsets have not moved for
  longer than `health_ingest_stall_seconds`;
* rollups: the lake has received data that no materialization has followed for longer than
  `health_rollup_stall_seconds` (the ledger is behind the lake);

and so does an unreachable broker (lag unknown). One `HealthMonitor` lives in each API process; its
verdict is cached for `CACHE_SECONDS` so probe floods cost one broker round trip per second.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shoppulse.lake import committed_offsets
from shoppulse.lake.lag import BrokerUnavailableError, IngestVerdict, IngestWatch, LagReport, broker_lag
from shoppulse.settings import Settings

CACHE_SECONDS = 1.0
WATCHDOG_STATE_FILE = "drain-watchdog.json"
"""Written by the drain watchdog (`python -m shoppulse.stack run`) under HOME/run; read here."""


def watchdog_state_path(home: Path) -> Path:
    return home / "run" / WATCHDOG_STATE_FILE


def _at(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


@dataclass(frozen=True)
class IngestHealth:
    """One measurement: the broker lag (None when the broker did not answer) and the stall verdict."""

    report: LagReport | None
    verdict: IngestVerdict | None
    error: str | None


class HealthMonitor:
    """Measures ingest lag against the broker and remembers when the lake last moved (thread-safe)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.watch = IngestWatch(settings.health_ingest_stall_seconds)
        self._lake_changes: deque[float] = deque(maxlen=4096)
        """Epoch seconds at which the lake's offsets were seen to change (newest last)."""
        self._last_offsets: dict[int, int] | None = None
        self._cached: tuple[float, IngestHealth] | None = None
        self._lock = threading.Lock()

    def measure(self) -> IngestHealth:
        """Broker lag and stall verdict now (blocking: run it in a thread from async code)."""
        with self._lock:
            if self._cached is not None and time.monotonic() - self._cached[0] < CACHE_SECONDS:
                return self._cached[1]
            settings = self.settings
            try:
                offsets = committed_offsets(settings.lake_location, settings.events_topic)
                report = broker_lag(
                    settings.bootstrap_servers, settings.events_topic, offsets, settings.health_broker_timeout_seconds
                )
            except BrokerUnavailableError as exc:
                health = IngestHealth(None, None, str(exc))
            except (OSError, ValueError) as exc:  # the lake's commit log could not be read
                health = IngestHealth(None, None, f"lake offsets unreadable: {type(exc).__name__}: {exc}")
            else:
                if self._last_offsets is not None and offsets != self._last_offsets:
                    self._lake_changes.append(report.measured_at)
                self._last_offsets = offsets
                health = IngestHealth(report, self.watch.observe(report), None)
            self._cached = (time.monotonic(), health)
            return health

    def rollup_backlog_seconds(self, last_materialized_at: datetime | None) -> float:
        """Seconds (wall clock) since the lake first moved after the newest materialization; 0 when the
        rollups have followed every lake change seen."""
        since = last_materialized_at.timestamp() if last_materialized_at is not None else float("-inf")
        with self._lock:
            first = next((t for t in self._lake_changes if t > since), None)
        return 0.0 if first is None else round(max(time.time() - first, 0.0), 3)

    def reasons(self, health: IngestHealth, rollup_backlog: float) -> list[str]:
        """Why the service is not ready (empty = ready)."""
        reasons = []
        if health.error is not None:
            reasons.append(f"ingestion: lag unknown, {health.error}")
        elif health.verdict is not None and health.verdict.stalled and health.report is not None:
            reasons.append(
                f"ingestion stalled: {health.report.total_lag} messages in Kafka not in the lake, "
                f"no lake commit for {health.verdict.stalled_seconds:.0f}s "
                f"(threshold {self.settings.health_ingest_stall_seconds:.0f}s)"
            )
        if rollup_backlog > self.settings.health_rollup_stall_seconds:
            reasons.append(
                f"rollups stalled: lake data waiting {rollup_backlog:.0f}s for a materialization "
                f"(threshold {self.settings.health_rollup_stall_seconds:.0f}s)"
            )
        return reasons

    def watchdog_state(self) -> dict[str, Any] | None:
        """The drain watchdog's last report, when one runs beside this process."""
        try:
            return json.loads(watchdog_state_path(self.settings.home).read_text())
        except (FileNotFoundError, ValueError):
            return None


def ingest_section(health: IngestHealth, drain_rows: list[dict[str, Any]], now: datetime) -> dict[str, Any]:
    """The `ingest` object of /health/freshness: broker-measured lag, stall verdict, the drain's last report."""
    drain_reported = max((row["updated_at"] for row in drain_rows), default=None)
    report, verdict = health.report, health.verdict
    return {
        "source": "broker" if report is not None else "unavailable",
        "total_lag": report.total_lag if report is not None else None,
        "measured_at": _at(report.measured_at) if report is not None else None,
        "broker_error": health.error,
        "stalled": bool(verdict and verdict.stalled),
        "stalled_seconds": verdict.stalled_seconds if verdict is not None else None,
        "last_progress_at": _at(verdict.last_progress_at) if verdict is not None else None,
        "updated_at": drain_reported,
        "age_seconds": None if drain_reported is None else round((now - drain_reported).total_seconds(), 3),
        "partitions": [
            {
                "topic": report.topic,
                "partition": p.partition,
                "next_offset": p.lake_offset,
                "high_watermark": p.high_watermark,
                "lag": p.lag,
                "updated_at": _at(report.measured_at),
            }
            for p in (report.partitions if report is not None else ())
        ],
    }
