"""The one deduplication rule of the rollups: each `event_id` counts once per partition.

The lake keeps every delivered copy of an event (a producer retry or a redelivery lands twice). Of
the copies sharing (event_date, event_id), the rollups keep the one delivered first: the smallest
(kafka_ts, kafka_partition, kafka_offset). The rule depends only on the copies themselves, so the
result is the same whichever files, ranges or order a partition is read in.
"""

from __future__ import annotations

import polars as pl

DEDUP_KEY = ("event_date", "event_id")
FIRST_COPY_ORDER = ("kafka_ts", "kafka_partition", "kafka_offset")


def later_copies(events: pl.DataFrame) -> pl.Series:
    """Positions (row numbers) of the rows that are not the first-delivered copy of their event.

    Only rows whose event_id hash occurs more than once (the copies, plus the astronomically rare hash
    collision) are sorted and resolved exactly by key. (Repeated hashes are found by sorting them:
    ~2x faster than `is_duplicated` on a million rows.)
    """
    empty = pl.Series("row", [], dtype=pl.UInt32)
    hashes = events.get_column("event_id").hash()
    ordered = hashes.sort()
    repeated = ordered.filter(ordered == ordered.shift(1))
    if repeated.is_empty():
        return empty
    suspect = hashes.is_in(repeated.implode())
    candidates = events.select(*DEDUP_KEY, *FIRST_COPY_ORDER).with_row_index("row").filter(suspect)
    return (
        candidates.sort([*FIRST_COPY_ORDER, "row"], nulls_last=True)
        .filter(~pl.struct(*DEDUP_KEY).is_first_distinct())
        .get_column("row")
    )


def first_copies(events: pl.DataFrame) -> pl.DataFrame:
    """`events` with only the first-delivered copy of each (event_date, event_id)."""
    drop = later_copies(events)
    if drop.is_empty():
        return events
    return events.filter(pl.repeat(True, events.height, dtype=pl.Boolean, eager=True).scatter(drop, False))
