"""The one definition of every ShopPulse Prometheus metric (names, help, labels, buckets).

Names follow Prometheus conventions: a `shoppulse_<subsystem>_` prefix, base units in the name
(`_seconds`, `_bytes`), `_total` on counters (prometheus-client appends it to a Counter's name). Every
metric is listed with its labels in docs/observability.md; business metric definitions stay in
docs/metrics.md.

Three kinds:

- API metrics (:class:`ApiMetrics`): one set per API process, on that app's own registry, exposed at
  the API's `/metrics`.
- Pipeline metrics (:func:`pipeline_metrics`): counted where the work happens (drain sensor, rollup
  runs, simulator). In a process started with `PROMETHEUS_MULTIPROC_DIR` set they are written to files
  in that directory (see :mod:`shoppulse.observability.multiprocess`) and exposed by the exporter.
- Scrape-time gauges (the ``*_FAMILY`` specs): computed by the exporter's collectors when Prometheus
  scrapes (lag against the broker, freshness from the ledger, sales from the serving tables).

This module never imports Dagster or FastAPI: the shells call the ``record_*`` functions with the
result objects they already have.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from shoppulse.observability import multiprocess
from shoppulse.rollups import catalog

API_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
DRAIN_SECONDS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0)
COMMIT_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
RUN_SECONDS_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0)
DRAIN_STATUSES = ("drained", "idle", "busy", "error")
FOLD_MODES = ("fold", "rebuild")
ROLLUP_GROUPS = (catalog.FX_RATES, "event_rollups", catalog.INGEST_QUALITY)
"""Label values that exist from a process's first use of the metrics (at 0), so rate() sees the first event."""


# ---------------------------------------------------------------------------------------------- API


class ApiMetrics:
    """Metrics of one API process, on their own registry (so tests can build several apps)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "shoppulse_api_requests",
            "HTTP requests answered, by route template and status.",
            ("route", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "shoppulse_api_request_duration_seconds",
            "Time from request to the last response byte handed to the server, by route.",
            ("route",),
            buckets=API_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.cache = Counter(
            "shoppulse_api_cache_lookups",
            "Response cache lookups by result (hit, miss).",
            ("result",),
            registry=self.registry,
        )
        self.invalidations = Counter(
            "shoppulse_api_cache_invalidations",
            "Materialization notifications received (each drops the cached answers it affects).",
            registry=self.registry,
        )
        self.live_streams = Gauge(
            "shoppulse_api_live_streams",
            "Live-update streams (/analytics/stream, server-sent events) open now.",
            registry=self.registry,
        )
        self._children: dict[tuple[str, int], Callable[[], None]] = {}
        self._latency_children: dict[str, Any] = {}
        self.cache_hit = self.cache.labels("hit").inc
        self.cache_miss = self.cache.labels("miss").inc

    def watch(
        self,
        cache_entries: Callable[[], float],
        listener_connected: Callable[[], float],
        pool_stats: Callable[[], dict[str, int]],
    ) -> None:
        """Gauges read at scrape time from the serving state."""
        for name, documentation, read in (
            ("shoppulse_api_cache_entries", "Responses held in the cache.", cache_entries),
            (
                "shoppulse_api_notify_listener_up",
                "1 while the NOTIFY listener is connected (long cache TTL), else 0.",
                listener_connected,
            ),
            (
                "shoppulse_api_db_pool_connections",
                "Connections the pool holds.",
                lambda: float(pool_stats().get("pool_size", 0)),
            ),
            (
                "shoppulse_api_db_pool_available",
                "Idle connections in the pool.",
                lambda: float(pool_stats().get("pool_available", 0)),
            ),
        ):
            Gauge(name, documentation, registry=self.registry).set_function(read)

    def observe(self, route: str, status: int, seconds: float) -> None:
        increment = self._children.get((route, status))
        if increment is None:
            increment = self._children[(route, status)] = self.requests.labels(route, str(status)).inc
        increment()
        latency = self._latency_children.get(route)
        if latency is None:
            latency = self._latency_children[route] = self.latency.labels(route)
        latency.observe(seconds)


# ----------------------------------------------------------------------------------------- pipeline


@dataclass(frozen=True)
class PipelineMetrics:
    """Counted by the drain sensor, the rollup runs and the simulator (multiprocess-safe)."""

    registry: CollectorRegistry
    drain_ticks: Counter
    drain_messages: Counter
    drain_events: Counter
    drain_late_events: Counter
    drain_quarantined: Counter
    drain_written_bytes: Counter
    drain_duration: Histogram
    drain_commit_duration: Histogram
    drain_last_tick: Gauge
    lake_version: Gauge
    rollup_runs: Counter
    rollup_run_duration: Histogram
    rollup_partitions: Counter
    rollup_rows_changed: Counter
    rollup_fold_duration: Histogram
    rollup_events_folded: Counter
    simulator_sent: Counter
    simulator_delivery_errors: Counter


@lru_cache(maxsize=1)
def pipeline_metrics() -> PipelineMetrics:
    """This process's pipeline metrics, created on first use (after :func:`multiprocess.enable`)."""
    multiprocess.enable_from_environment()
    metrics = _create_pipeline_metrics()
    for status in DRAIN_STATUSES:
        metrics.drain_ticks.labels(status)
        metrics.drain_duration.labels(status)
    for group in ROLLUP_GROUPS:
        metrics.rollup_runs.labels(group, "success")
        metrics.rollup_runs.labels(group, "failure")
        metrics.rollup_run_duration.labels(group)
    for mode in FOLD_MODES:
        metrics.rollup_fold_duration.labels(mode)
        metrics.rollup_events_folded.labels(mode)
    return metrics


def _create_pipeline_metrics() -> PipelineMetrics:
    registry = CollectorRegistry(auto_describe=True)
    return PipelineMetrics(
        registry=registry,
        drain_ticks=Counter(
            "shoppulse_drain_ticks",
            "Drain calls by outcome: drained (committed), idle (nothing new), busy (lake locked), error.",
            ("status",),
            registry=registry,
        ),
        drain_messages=Counter("shoppulse_drain_messages", "Kafka messages committed to the lake.", registry=registry),
        drain_events=Counter(
            "shoppulse_drain_events", "Valid events written to the lake's events table.", registry=registry
        ),
        drain_late_events=Counter(
            "shoppulse_drain_late_events",
            "Valid events older than the lateness horizon, kept in the lake's late table.",
            registry=registry,
        ),
        drain_quarantined=Counter(
            "shoppulse_drain_quarantined_messages",
            "Messages quarantined by the drain, by reason code (docs/events.md).",
            ("reason",),
            registry=registry,
        ),
        drain_written_bytes=Counter(
            "shoppulse_drain_written_bytes",
            "Bytes of data files the drain committed to the lake.",
            registry=registry,
        ),
        drain_duration=Histogram(
            "shoppulse_drain_duration_seconds",
            "Wall time of one drain call (consume, decode, write, commit, compaction).",
            ("status",),
            buckets=DRAIN_SECONDS_BUCKETS,
            registry=registry,
        ),
        drain_commit_duration=Histogram(
            "shoppulse_drain_commit_duration_seconds",
            "Wall time of the lake commit of one drain (the commit point and applying it).",
            buckets=COMMIT_SECONDS_BUCKETS,
            registry=registry,
        ),
        drain_last_tick=Gauge(
            "shoppulse_drain_last_tick_timestamp_seconds",
            "Unix time the drain sensor last finished a tick (any outcome but error).",
            registry=registry,
            multiprocess_mode="max",
        ),
        lake_version=Gauge(
            "shoppulse_lake_version",
            "Newest lake commit the drain has seen (a commit sequence number).",
            registry=registry,
            multiprocess_mode="max",
        ),
        rollup_runs=Counter(
            "shoppulse_rollup_runs",
            "Rollup asset executions by asset group (fx_rates, event_rollups, ingest_quality) and outcome.",
            ("group", "outcome"),
            registry=registry,
        ),
        rollup_run_duration=Histogram(
            "shoppulse_rollup_run_duration_seconds",
            "Wall time of one rollup asset execution (all its partitions), by asset group.",
            ("group",),
            buckets=RUN_SECONDS_BUCKETS,
            registry=registry,
        ),
        rollup_partitions=Counter(
            "shoppulse_rollup_partitions",
            "Partitions a rollup processed, by asset and result (written; superseded: the ledger held newer data).",
            ("asset", "result"),
            registry=registry,
        ),
        rollup_rows_changed=Counter(
            "shoppulse_rollup_rows_changed",
            "Serving rows deleted plus inserted by rollup writes, by asset.",
            ("asset",),
            registry=registry,
        ),
        rollup_fold_duration=Histogram(
            "shoppulse_rollup_fold_duration_seconds",
            "Wall time of one incremental fold of a day's event rollups, by mode (fold: only the new events; "
            "rebuild: the state rebuilt from the whole day).",
            ("mode",),
            buckets=RUN_SECONDS_BUCKETS,
            registry=registry,
        ),
        rollup_events_folded=Counter(
            "shoppulse_rollup_events_folded",
            "Events incremental folds counted into the rollups (first copies of new event ids), by mode.",
            ("mode",),
            registry=registry,
        ),
        simulator_sent=Counter(
            "shoppulse_simulator_messages_sent",
            "Messages the simulator handed to the Kafka producer.",
            registry=registry,
        ),
        simulator_delivery_errors=Counter(
            "shoppulse_simulator_delivery_errors",
            "Messages the Kafka producer reported as not delivered, by librdkafka error name.",
            ("reason",),
            registry=registry,
        ),
    )


class DrainOutcome(Protocol):
    """What :func:`record_drain` reads (shoppulse.lake.drain.DrainResult has these)."""

    status: str
    seq: int
    messages: int
    events: int
    late: int
    quarantined_by_code: dict[str, int]
    written_bytes: int
    commit_seconds: float
    seconds: float


def record_drain(result: DrainOutcome, now: float | None = None) -> None:
    """Count one drain call from its result (the drain sensor calls this after every tick)."""
    m = pipeline_metrics()
    m.drain_ticks.labels(result.status).inc()
    m.drain_duration.labels(result.status).observe(result.seconds)
    if result.status == "drained":
        m.drain_messages.inc(result.messages)
        m.drain_events.inc(result.events)
        m.drain_late_events.inc(result.late)
        for reason, count in result.quarantined_by_code.items():
            m.drain_quarantined.labels(reason).inc(count)
        m.drain_written_bytes.inc(result.written_bytes)
        m.drain_commit_duration.observe(result.commit_seconds)
    if result.seq:
        m.lake_version.set(result.seq)
    m.drain_last_tick.set(time.time() if now is None else now)


def record_drain_error(seconds: float) -> None:
    """Count a drain call that raised (the sensor tick fails; the last-tick time is not advanced)."""
    m = pipeline_metrics()
    m.drain_ticks.labels("error").inc()
    m.drain_duration.labels("error").observe(seconds)


class PartitionOutcome(Protocol):
    """One partition a rollup wrote (shoppulse.rollups.writer.WriteOutcome has these)."""

    asset: str
    written: bool
    rows_changed: int


@contextmanager
def rollup_run(group: str) -> Iterator[Callable[[Iterable[PartitionOutcome]], None]]:
    """Time one rollup asset execution and count its outcome; yields `record(outcomes)` for its partitions.

    An exception counts the run as a failure (and is re-raised).
    """
    m = pipeline_metrics()
    began = time.monotonic()

    def record(outcomes: Iterable[PartitionOutcome]) -> None:
        for outcome in outcomes:
            m.rollup_partitions.labels(outcome.asset, "written" if outcome.written else "superseded").inc()
            m.rollup_rows_changed.labels(outcome.asset).inc(outcome.rows_changed)

    try:
        yield record
    except BaseException:
        m.rollup_runs.labels(group, "failure").inc()
        raise
    finally:
        m.rollup_run_duration.labels(group).observe(time.monotonic() - began)
    m.rollup_runs.labels(group, "success").inc()


class FoldResult(Protocol):
    """One incremental fold (shoppulse.rollups.incremental.fold.FoldOutcome has these)."""

    rebuilt: bool
    events_folded: int
    seconds: float


def record_fold(outcome: FoldResult) -> None:
    """Time and count one incremental fold of a day's event rollups."""
    m = pipeline_metrics()
    mode = "rebuild" if outcome.rebuilt else "fold"
    m.rollup_fold_duration.labels(mode).observe(outcome.seconds)
    m.rollup_events_folded.labels(mode).inc(outcome.events_folded)


# ----------------------------------------------------------------------------------- scrape-time


@dataclass(frozen=True)
class FamilySpec:
    """A gauge family computed by a collector at scrape time."""

    name: str
    documentation: str
    labels: tuple[str, ...] = ()


KAFKA_HIGH_WATERMARK = FamilySpec(
    "shoppulse_kafka_partition_high_watermark",
    "Next offset the broker will assign in each partition of the events topic (read at scrape time).",
    ("topic", "partition"),
)
LAKE_OFFSET = FamilySpec(
    "shoppulse_lake_partition_offset",
    "Next offset of each partition that the newest lake commit holds.",
    ("topic", "partition"),
)
LAKE_LAG = FamilySpec(
    "shoppulse_lake_partition_lag_messages",
    "Messages in each partition of the events topic not yet in the lake (high watermark - lake offset).",
    ("topic", "partition"),
)
LAG_SCRAPE_ERROR = FamilySpec(
    "shoppulse_lake_lag_scrape_error",
    "1 when the broker could not be asked for its high watermarks at this scrape, else 0.",
)
ASSET_WATERMARK_AGE = FamilySpec(
    "shoppulse_asset_watermark_age_seconds",
    "Seconds since the newest event time (watermark) any partition of the asset was computed from (ledger).",
    ("asset",),
)
ASSET_MATERIALIZATION_AGE = FamilySpec(
    "shoppulse_asset_materialization_age_seconds",
    "Seconds since a partition of the asset was last written (ledger analytics.materializations).",
    ("asset",),
)
ASSET_PARTITIONS = FamilySpec("shoppulse_asset_partitions", "Partitions of the asset in the ledger.", ("asset",))
SALES_ORDERS = FamilySpec(
    "shoppulse_sales_orders",
    "Orders in the serving tables over all days (docs/metrics.md: orders); per minute = deriv() * 60.",
)
SALES_NET = FamilySpec(
    "shoppulse_sales_net_sales",
    "Net sales over all days in the reporting currency, major units (docs/metrics.md: net sales).",
    ("currency",),
)
SALES_TOTAL = FamilySpec(
    "shoppulse_sales_total_sales",
    "Total sales over all days in the reporting currency, major units (docs/metrics.md: total sales).",
    ("currency",),
)
LEDGER_SCRAPE_ERROR = FamilySpec(
    "shoppulse_ledger_scrape_error",
    "1 when PostgreSQL could not be read for the freshness and sales gauges at this scrape, else 0.",
)
