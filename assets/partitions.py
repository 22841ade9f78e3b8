"""The one partitioning of ShopPulse's assets: UTC days, today included (``end_offset=1``)."""

from dagster import DailyPartitionsDefinition

PARTITIONS_START = "2025-01-01"

daily_partitions = DailyPartitionsDefinition(start_date=PARTITIONS_START, end_offset=1, timezone="UTC")
"""Partition key = UTC date of the event (``YYYY-MM-DD``); today's partition exists and grows."""
