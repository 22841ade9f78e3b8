"""Dagster resources: configuration-carrying handles to Kafka, the lake and PostgreSQL.

Each is a thin ConfigurableResource over `shoppulse` code; values come from `EnvVar`s in
`pipelines/definitions.py` (the local stack and docker-compose set them).
"""

from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource

from shoppulse.lake.table import lake_ref
from shoppulse.settings import get_settings


class KafkaResource(ConfigurableResource):
    """Where the shop's events are produced."""

    bootstrap_servers: str
    events_topic: str = "shop.events"


class LakeResource(ConfigurableResource):
    """The lake, a Delta table: a local directory or an s3:// URI (SHOPPULSE_LAKE_URI)."""

    lake_dir: str

    @property
    def path(self) -> Path | str:
        return lake_ref(self.lake_dir)


class PostgresResource(ConfigurableResource):
    """The analytics database holding the serving tables."""

    database_url: str


def default_settings_resources() -> dict[str, ConfigurableResource]:
    """Resources built from the settings object (used where no EnvVar wiring is wanted, e.g. tests)."""
    settings = get_settings()
    return {
        "kafka": KafkaResource(bootstrap_servers=settings.bootstrap_servers, events_topic=settings.events_topic),
        "lake": LakeResource(lake_dir=str(settings.lake_location)),
        "warehouse": PostgresResource(database_url=settings.database_url),
    }
