"""The one Dagster `Definitions` entry for ShopPulse (found via `[tool.dagster]` in pyproject.toml)."""

from dagster import Definitions, EnvVar

from assets.raw import raw_events
from pipelines.ingest import kafka_drain
from resources import KafkaResource, LakeResource, PostgresResource

defs = Definitions(
    assets=[raw_events],
    sensors=[kafka_drain],
    resources={
        "kafka": KafkaResource(
            bootstrap_servers=EnvVar("KAFKA_BOOTSTRAP_SERVERS"), events_topic=EnvVar("SHOPPULSE_EVENTS_TOPIC")
        ),
        "lake": LakeResource(lake_dir=EnvVar("SHOPPULSE_LAKE_DIR")),
        "warehouse": PostgresResource(database_url=EnvVar("DATABASE_URL")),
    },
)
