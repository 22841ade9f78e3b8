"""The one settings object for every ShopPulse process.

Values come from environment variables (see the README's configuration table);
defaults describe the project-local stack started by ``python -m shoppulse.stack``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CODE_LOCATION_MODULE = "pipelines.definitions"
"""The module holding the one `Definitions` (the code server loads it; the run launcher preloads it)."""


class Settings(BaseSettings):
    """Configuration shared by the stack, the pipeline, the API and the simulator."""

    model_config = SettingsConfigDict(env_prefix="SHOPPULSE_", extra="ignore", frozen=True, populate_by_name=True)

    # Where all local state lives: service data, lake, logs, caches.
    home: Path = Field(default=PROJECT_ROOT / ".shoppulse", description="Local state directory.")

    # Kafka. KAFKA_BOOTSTRAP_SERVERS (no prefix) switches to an external cluster.
    kafka_bootstrap_servers: str | None = Field(
        default=None, validation_alias="KAFKA_BOOTSTRAP_SERVERS", description="External Kafka; unset = local broker."
    )
    kafka_port: int = Field(default=19092, description="Local broker listener port.")
    kafka_controller_port: int = Field(default=19093, description="Local KRaft controller port.")
    kafka_version: str = Field(default="4.1.1", description="Apache Kafka broker version resolved from Maven Central.")
    kafka_heap: str = Field(default="768m", description="Local broker JVM heap (-Xmx/-Xms).")
    events_topic: str = Field(default="shop.events", description="Topic the shop's events are produced to.")
    events_topic_partitions: int = Field(default=6, ge=1, description="Partitions of the events topic when created.")

    # PostgreSQL. DATABASE_URL (no prefix) switches to an external server.
    database_url_override: str | None = Field(
        default=None, validation_alias="DATABASE_URL", description="External analytics database; unset = local cluster."
    )
    dagster_database_url_override: str | None = Field(
        default=None,
        validation_alias="DAGSTER_DATABASE_URL",
        description="Dagster instance storage; unset = local cluster, or DATABASE_URL when that is set.",
    )
    dagster_event_batch_size: int = Field(
        default=100,
        ge=0,
        validation_alias="DAGSTER_EVENT_BATCH_SIZE",
        description="Dagster stores a run's per-partition events in batches of this size (0 = one by one).",
    )
    pg_port: int = Field(default=15432, description="Local PostgreSQL port.")
    pg_user: str = Field(default="shoppulse", description="Local PostgreSQL superuser.")
    pg_database: str = Field(default="shoppulse", description="Local analytics database.")
    pg_dagster_database: str = Field(default="shoppulse_dagster", description="Local Dagster storage database.")

    # Lake and ingestion.
    lake_dir_override: Path | None = Field(
        default=None,
        validation_alias="SHOPPULSE_LAKE_DIR",
        description="Local lake directory (a Delta table) when SHOPPULSE_LAKE_URI is unset; unset = HOME/lake.",
    )
    lake_uri: str | None = Field(
        default=None,
        description=(
            "The lake (a Delta table): a local path or s3://bucket/prefix (endpoint and credentials from "
            "AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION); unset = SHOPPULSE_LAKE_DIR."
        ),
    )
    drain_shards: int = Field(
        default=1, ge=1, description="Drain sensors, each owning a fixed subset of the topic's partitions."
    )
    aws_endpoint_url: str | None = Field(
        default=None, validation_alias="AWS_ENDPOINT_URL", description="External S3 endpoint; unset = local s3proxy."
    )
    s3_port: int = Field(default=22900, description="Local S3 server (s3proxy) port, started when the lake is s3://.")
    s3proxy_version: str = Field(default="4.1.0", description="s3proxy version resolved from Maven Central.")
    max_event_bytes: int = Field(default=65536, gt=0, description="Larger messages are quarantined as oversized.")
    lateness_horizon_hours: float = Field(
        default=72.0, gt=0, description="Events older than this (vs. their Kafka timestamp) land as adjustments."
    )

    # Rollups.
    reporting_currency: str = Field(default="USD", description="Currency that totals are converted into.")
    incremental_rollups: bool = Field(
        default=True,
        description="Live rollup runs (today, late days within the horizon) fold only the new events into the "
        "rollups (shoppulse/rollups/incremental); off = every run recomputes its whole day.",
    )
    recompute_check_max_events: int = Field(
        default=5_000_000,
        ge=1,
        description="The recompute checks (matches_lake_recompute) recompute a day in memory (~1 GB per 2M events). "
        "On a day holding more events, sales and products (sums) are recomputed in parts of this many events, and "
        "users, funnel and customers (distinct counts) in slices of users of about this many events.",
    )
    fold_max_events: int = Field(
        default=250_000,
        ge=1,
        description="Most events one fold step holds in memory: a backlog is folded in steps of lake commits "
        "(each its own transaction), and a day's state is rebuilt in chunks of files (one transaction), so a "
        "run worker's memory follows this (~2.3 KB per event at the peak), not the size of the day or the backlog.",
    )

    # API.
    api_keys: str = Field(default="", description="Comma-separated API keys; empty = no authentication.")
    api_rate_limit: str = Field(default="600/minute", description="Per-key (or per-client) rate limit.")
    api_cache_max_entries: int = Field(default=4096, ge=0, description="In-process response cache size; 0 = off.")
    api_cache_ttl_seconds: float = Field(
        default=300.0, gt=0, description="Longest a cached response is served while the NOTIFY listener is connected."
    )
    api_cache_fallback_ttl_seconds: float = Field(
        default=2.0, gt=0, description="Longest a cached response is served while the NOTIFY listener is down."
    )
    api_db_pool_size: int = Field(default=8, ge=1, description="Most PostgreSQL connections one API process opens.")
    api_statement_timeout_ms: int = Field(default=5000, ge=100, description="PostgreSQL statement timeout for the API.")
    api_max_streams: int = Field(
        default=200, ge=0, description="Most live-update streams (`/analytics/stream`) one API process holds open."
    )

    # Processes started by `make run`.
    dagster_port: int = Field(default=3000, description="Dagster webserver port.")
    dagster_code_server_port: int = Field(default=4266, description="Dagster code server (gRPC) port.")
    api_host: str = Field(default="127.0.0.1", description="API bind address.")
    api_port: int = Field(default=8000, description="API port.")
    simulator_rate: float = Field(default=50.0, gt=0, description="Live simulator events/s started by `make run`.")
    chromium: str | None = Field(
        default=None, description="Chromium executable for the browser tests; unset = Debian's `chromium` (installed)."
    )

    # Health, supervision and the drain watchdog (docs/operations.md).
    health_ingest_stall_seconds: float = Field(
        default=30.0, gt=0, description="Not ready when Kafka holds messages and the lake has not moved this long."
    )
    health_rollup_stall_seconds: float = Field(
        default=300.0, gt=0, description="Not ready when lake data has waited this long for a materialization."
    )
    health_broker_timeout_seconds: float = Field(
        default=2.0, gt=0, description="Longest the API waits for Kafka's high watermarks (then: lag unknown)."
    )
    supervisor_backoff_max_seconds: float = Field(
        default=30.0, gt=0, description="Longest wait before restarting a dead process (doubles from 1 s)."
    )
    supervisor_crash_loop_restarts: int = Field(
        default=5, ge=1, description="Restarts allowed per process within the window; one more death stops `make run`."
    )
    supervisor_crash_loop_window_seconds: float = Field(
        default=300.0, gt=0, description="Window of the crash-loop limit."
    )
    drain_watchdog_stall_seconds: float = Field(
        default=20.0,
        gt=0,
        description="A drain with no lake commit this long while Kafka holds newer messages gets healed.",
    )
    drain_watchdog_grace_seconds: float = Field(
        default=60.0, ge=0, description="Time the drain gets after a (re)start or a heal before the watchdog judges it."
    )
    api_timeout_keep_alive_seconds: int = Field(
        default=5, ge=1, description="Idle keep-alive connections are closed after this many seconds."
    )
    api_header_timeout_seconds: float = Field(
        default=10.0, gt=0, description="A request head not complete this long after its first byte gets 408."
    )
    api_limit_concurrency: int = Field(
        default=1000, ge=1, description="Connections + tasks one API process accepts at once; beyond: 503."
    )

    # Observability (docs/observability.md).
    metrics_dir_override: Path | None = Field(
        default=None,
        validation_alias="SHOPPULSE_METRICS_DIR",
        description="Pipeline processes' metric files (PROMETHEUS_MULTIPROC_DIR); unset = HOME/metrics.",
    )
    metrics_host: str = Field(default="127.0.0.1", description="Bind address of the pipeline metrics exporter.")
    metrics_port: int = Field(default=24901, description="Port of the pipeline metrics exporter (/metrics).")
    prometheus_enabled: bool | None = Field(
        default=None,
        validation_alias="SHOPPULSE_PROMETHEUS",
        description="`make run` starts Prometheus: 1 = yes (apt-installed if missing), 0 = no, unset = if installed.",
    )
    prometheus_port: int = Field(default=24990, description="Port of the local Prometheus server.")
    prometheus_retention: str = Field(default="7d", description="How long the local Prometheus keeps samples.")
    prometheus_scrape_interval: str | None = Field(
        default=None, description="Local Prometheus scrape and rule interval; unset = ops/prometheus's (15s)."
    )

    # Runs on many workers (docs/scaling.md).
    run_launcher: Literal["forkserver", "celery"] = Field(
        default="forkserver",
        description="How runs start: forkserver (this machine) or celery (Celery workers over Redis).",
    )
    celery_workers: int = Field(default=2, ge=1, description="Celery workers `make run` starts (run_launcher=celery).")
    celery_worker_concurrency: int = Field(default=1, ge=1, description="Runs one Celery worker executes at a time.")
    redis_url_override: str | None = Field(
        default=None,
        validation_alias="SHOPPULSE_REDIS_URL",
        description="External Redis for Celery (redis://host:port); unset = a local redis-server.",
    )
    redis_port: int = Field(default=24979, description="Local redis-server port (run_launcher=celery).")

    # Alerts: the anomaly detector on complete hours (docs/alerts.md).
    alert_baseline_weeks: int = Field(
        default=8, ge=1, le=52, description="Same hour-of-week of up to this many previous weeks form the baseline."
    )
    alert_min_baseline_weeks: int = Field(
        default=4, ge=1, le=52, description="Fewer materialized baseline weeks than this: the hour is not scored."
    )
    alert_z_threshold: float = Field(default=3.5, gt=0, description="Alert when the absolute robust z exceeds this.")
    alert_critical_z: float = Field(default=7.0, gt=0, description="An absolute score at or above this is critical.")
    alert_p_value: float = Field(
        default=1e-4,
        gt=0,
        lt=1,
        description="Count (Poisson / negative binomial) and share (binomial) tests alert below this p-value.",
    )
    alert_count_test_below: float = Field(
        default=30.0,
        ge=0,
        description="Counts whose baseline median is below this (or whose MAD is 0) use the "
        "count test; net sales are then not scored.",
    )
    alert_min_relative_change: float = Field(
        default=0.25, ge=0, description="Level alerts need a change of at least this share of the baseline."
    )
    alert_min_change_orders: float = Field(default=5, ge=0, description="Smallest change of hourly orders alerted.")
    alert_min_change_sessions: float = Field(
        default=30, ge=0, description="Smallest change of hourly sessions alerted."
    )
    alert_min_change_net_sales: float = Field(
        default=20000,
        ge=0,
        description="Smallest change of hourly net sales alerted (minor units, reporting currency).",
    )
    alert_count_dispersion: float = Field(
        default=1.5, ge=1, description="Variance / mean assumed at least for hourly counts (1 = Poisson)."
    )
    alert_order_value_cv: float = Field(
        default=2.0,
        ge=0,
        description="Coefficient of variation of order values assumed for the noise floor of hourly net sales.",
    )
    alert_share_baseline_hours: int = Field(
        default=168,
        ge=1,
        description="Payment-failure and quarantine shares are compared with these previous hours pooled.",
    )
    alert_payment_min_attempts: int = Field(
        default=20, ge=1, description="Hours with fewer payment attempts are not scored."
    )
    alert_payment_min_change: float = Field(
        default=0.05, ge=0, description="Smallest rise of the payment-failure share alerted (0.05 = 5 points)."
    )
    alert_quarantine_min_messages: int = Field(
        default=20, ge=1, description="Hours with fewer quarantined messages are not scored."
    )
    alert_quarantine_min_change: float = Field(
        default=0.02, ge=0, description="Smallest rise of the quarantine share alerted (0.02 = 2 points)."
    )
    alert_stall_minutes: float = Field(
        default=15.0, gt=0, description="Pipeline stalled: the ledger watermark is older than this."
    )
    alert_webhook_url: str | None = Field(
        default=None, description="POST each new alert here as JSON (at least once, see docs/alerts.md); unset = off."
    )

    @property
    def external_kafka(self) -> bool:
        return self.kafka_bootstrap_servers is not None

    @property
    def external_postgres(self) -> bool:
        return self.database_url_override is not None

    @property
    def bootstrap_servers(self) -> str:
        return self.kafka_bootstrap_servers or f"127.0.0.1:{self.kafka_port}"

    def local_database_url(self, database: str) -> str:
        return f"postgresql://{self.pg_user}@127.0.0.1:{self.pg_port}/{database}"

    @property
    def database_url(self) -> str:
        return self.database_url_override or self.local_database_url(self.pg_database)

    @property
    def dagster_database_url(self) -> str:
        if self.dagster_database_url_override:
            return self.dagster_database_url_override
        if self.database_url_override:
            return self.database_url_override
        return self.local_database_url(self.pg_dagster_database)

    @property
    def lake_dir(self) -> Path:
        return self.lake_dir_override or self.home / "lake"

    @property
    def lake_location(self) -> Path | str:
        """The lake as the code addresses it: a Path for a local lake, the s3:// URI otherwise."""
        if self.lake_uri:
            return self.lake_uri if "://" in self.lake_uri else Path(self.lake_uri)
        return self.lake_dir

    @property
    def lake_on_s3(self) -> bool:
        return str(self.lake_location).startswith("s3://")

    @property
    def local_s3(self) -> bool:
        """The stack runs s3proxy: the lake is on S3 and no AWS_ENDPOINT_URL names another server."""
        return self.lake_on_s3 and self.aws_endpoint_url is None

    def local_s3_env(self) -> dict[str, str]:
        """The AWS variables that point delta-rs, Polars and PyArrow at the local s3proxy (127.0.0.1 only)."""
        return {
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{self.s3_port}",
            "AWS_ACCESS_KEY_ID": "shoppulse",
            "AWS_SECRET_ACCESS_KEY": "shoppulse-local-secret",
            "AWS_REGION": "us-east-1",
        }

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster_home"

    @property
    def redis_url(self) -> str:
        return self.redis_url_override or f"redis://127.0.0.1:{self.redis_port}"

    @property
    def metrics_dir(self) -> Path:
        return self.metrics_dir_override or self.home / "metrics"

    def service_env(self) -> dict[str, str]:
        """Environment that points child processes (Dagster, API, simulator, tests) at this stack."""
        return {
            "SHOPPULSE_HOME": str(self.home),
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
            "DATABASE_URL": self.database_url,
            "DAGSTER_DATABASE_URL": self.dagster_database_url,
            "SHOPPULSE_LAKE_DIR": str(self.lake_dir),
            "SHOPPULSE_LAKE_URI": str(self.lake_location),
            **(self.local_s3_env() if self.local_s3 else {}),
            "SHOPPULSE_EVENTS_TOPIC": self.events_topic,
            "DAGSTER_HOME": str(self.dagster_home),
            "DAGSTER_EVENT_BATCH_SIZE": str(self.dagster_event_batch_size),
            "SHOPPULSE_METRICS_DIR": str(self.metrics_dir),
        }


def environment_variables() -> list[tuple[str, str, str]]:
    """(variable, default, description) for every setting, for the README's configuration table."""
    rows = []
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias if isinstance(field.validation_alias, str) else None
        variable = alias or f"SHOPPULSE_{name.upper()}"
        default = field.default
        if isinstance(default, Path):
            default = default.relative_to(PROJECT_ROOT) if default.is_relative_to(PROJECT_ROOT) else default
        rows.append((variable, "" if default is None else str(default), field.description or ""))
    return rows


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings read once from the environment."""
    return Settings()
