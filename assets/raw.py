"""The raw events in the lake, as Dagster sees them: an external asset the Kafka drain sensor materializes."""

from dagster import AssetSpec

from assets.partitions import daily_partitions

RAW_EVENTS_KEY = "raw_events"

raw_events = AssetSpec(
    key=RAW_EVENTS_KEY,
    partitions_def=daily_partitions,
    group_name="lake",
    kinds={"kafka", "parquet"},
    description=(
        "Validated shop events in the Parquet lake, one partition per UTC event date "
        "(lake/events/event_date=YYYY-MM-DD). Written by the `kafka_drain` sensor every few seconds; "
        "each materialization carries rows, Kafka offsets, consumer lag and quarantine counts."
    ),
)
