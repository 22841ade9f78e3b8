"""Dagster's PostgreSQL instance storage, keeping connections open in every process that uses it.

`dagster_postgres` opens a new connection for every statement outside the webserver (`NullPool`):
storing one event costs one to three PostgreSQL backend start-ups (~4 ms each here). A rollup run
stores an event per partition and asset, so a 30-day backfill spent seconds just connecting, and
the daemon paid the same on every sensor tick. This storage is `DagsterPostgresStorage` with the
pool Dagster's own webserver uses (`optimize_for_webserver`: one kept connection per storage plus
overflow) in the daemon, code server and run workers too.

Run workers never inherit a pool: they are forked from a fork server that has no instance, and
build theirs from the run's instance ref.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster import Field, IntSource
from dagster._config.config_schema import UserConfigSchema
from dagster._core.storage.config import pg_config
from dagster._serdes import ConfigurableClassData
from dagster_postgres import DagsterPostgresStorage
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config
from dagster_shared.yaml_utils import load_yaml_from_path

from shoppulse.settings import PROJECT_ROOT

DEFAULT_POOL_MAX_OVERFLOW = 10
DEFAULT_POOL_RECYCLE_SECONDS = 3600


class PooledPostgresStorage(DagsterPostgresStorage):
    """Run, event-log and schedule storage in PostgreSQL over pooled connections.

    dagster.yaml: `storage: {custom: {module: pipelines.storage, class: PooledPostgresStorage,
    config: {postgres_url: ..., pool_max_overflow: 10, pool_recycle_seconds: 3600}}}`.
    """

    def __init__(
        self,
        postgres_url: str,
        should_autocreate_tables: bool = True,
        inst_data: ConfigurableClassData | None = None,
        token_provider: Any = None,
        pool_max_overflow: int = DEFAULT_POOL_MAX_OVERFLOW,
        pool_recycle_seconds: int = DEFAULT_POOL_RECYCLE_SECONDS,
    ) -> None:
        super().__init__(postgres_url, should_autocreate_tables, inst_data, token_provider)
        self.pool_max_overflow = pool_max_overflow
        self.pool_recycle_seconds = pool_recycle_seconds
        for storage in (self.run_storage, self.event_log_storage, self.schedule_storage):
            # statement_timeout 0 = none, as with dagster_postgres' unpooled default.
            storage.optimize_for_webserver(
                statement_timeout=0, pool_recycle=pool_recycle_seconds, max_overflow=pool_max_overflow
            )

    @classmethod
    def config_type(cls) -> UserConfigSchema:
        return {
            **pg_config(),  # type: ignore[dict-item]
            "pool_max_overflow": Field(
                IntSource,
                is_required=False,
                default_value=DEFAULT_POOL_MAX_OVERFLOW,
                description="Connections a storage may open beyond the one it keeps, for concurrent threads.",
            ),
            "pool_recycle_seconds": Field(
                IntSource,
                is_required=False,
                default_value=DEFAULT_POOL_RECYCLE_SECONDS,
                description="A kept connection older than this is replaced before its next use.",
            ),
        }

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> PooledPostgresStorage:
        return cls(
            postgres_url=pg_url_from_config(config_value),  # type: ignore[arg-type]
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            inst_data=inst_data,
            token_provider=get_token_provider_from_config(config_value),  # type: ignore[arg-type]
            pool_max_overflow=config_value.get("pool_max_overflow", DEFAULT_POOL_MAX_OVERFLOW),
            pool_recycle_seconds=config_value.get("pool_recycle_seconds", DEFAULT_POOL_RECYCLE_SECONDS),
        )


def project_storage_config(postgres_url: str) -> dict[str, Any]:
    """The `storage` section of the project's dagster.yaml with its database set to `postgres_url` (for
    instances of benchmarks and tests that must store like the deployed instance)."""
    storage = load_yaml_from_path(str(PROJECT_ROOT / "dagster.yaml"))["storage"]  # type: ignore[index]
    for section in storage.values():
        section.get("config", section)["postgres_url"] = postgres_url
    return storage
