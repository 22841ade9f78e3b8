"""The one settings object for every ShopPulse process.

Values come from environment variables (see the README's configuration table);
defaults describe the project-local stack started by ``python -m shoppulse.stack``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[1]


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
        default=None, validation_alias="SHOPPULSE_LAKE_DIR", description="Parquet lake directory; unset = HOME/lake."
    )
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

    # Processes started by `make run`.
    dagster_port: int = Field(default=3000, description="Dagster webserver port.")
    dagster_code_server_port: int = Field(default=4266, description="Dagster code server (gRPC) port.")
    api_host: str = Field(default="127.0.0.1", description="API bind address.")
    api_port: int = Field(default=8000, description="API port.")
    simulator_rate: float = Field(default=50.0, gt=0, description="Live simulator events/s started by `make run`.")

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
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster_home"

    def service_env(self) -> dict[str, str]:
        """Environment that points child processes (Dagster, API, simulator, tests) at this stack."""
        return {
            "SHOPPULSE_HOME": str(self.home),
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
            "DATABASE_URL": self.database_url,
            "DAGSTER_DATABASE_URL": self.dagster_database_url,
            "SHOPPULSE_LAKE_DIR": str(self.lake_dir),
            "SHOPPULSE_EVENTS_TOPIC": self.events_topic,
            "DAGSTER_HOME": str(self.dagster_home),
            "DAGSTER_EVENT_BATCH_SIZE": str(self.dagster_event_batch_size),
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
