"""Which rollup partitions a change in the lake makes stale: the input of the automation.

A partition of a rollup reads the lake partitions of its day and, for some rollups, of earlier days:

- fx_rates, sales, products, funnel, customers: the events of their own day only;
- users: the events of the 30 days ending with it (MAU), which also covers the previous day's last
  hour that the first minutes' sliding windows reach into. So a change to day X makes users X..X+29
  stale (those that exist: up to the last partition);
- ingest_quality: the quarantine and late (beyond-horizon) partitions of its received day.

fx_rates rides along with every day whose sales are recomputed (the sales conversion reads it).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping

from shoppulse.metrics import MAU_DAYS
from shoppulse.rollups.catalog import CUSTOMERS, FUNNEL, FX_RATES, INGEST_QUALITY, PRODUCTS, SALES, USERS

SAME_DAY_ROLLUPS = (FX_RATES, SALES, PRODUCTS, FUNNEL, CUSTOMERS)
USERS_REACH_DAYS = MAU_DAYS - 1
"""A change to day X reaches users partitions X .. X + USERS_REACH_DAYS."""


def _as_date(value: dt.date | str) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(value)


def partitions_to_refresh(
    events_dates: Iterable[dt.date | str],
    quality_dates: Iterable[dt.date | str] = (),
    *,
    last_partition: dt.date,
    first_partition: dt.date | None = None,
) -> dict[str, list[str]]:
    """Rollup asset -> partition keys (YYYY-MM-DD, ascending) to recompute after the given lake changes.

    `events_dates`: event_date partitions of the lake's `events` table that changed (new rows, or
    compaction); `quality_dates`: received_date partitions of `quarantine` / `late` that changed.
    Keys outside [first_partition, last_partition] (days Dagster has no partition for yet) are left out.
    """
    lowest = first_partition or dt.date.min

    def keep(day: dt.date) -> bool:
        return lowest <= day <= last_partition

    wanted: dict[str, set[dt.date]] = {}
    for day in map(_as_date, events_dates):
        for asset in SAME_DAY_ROLLUPS:
            if keep(day):
                wanted.setdefault(asset, set()).add(day)
        for offset in range(USERS_REACH_DAYS + 1):
            later = day + dt.timedelta(days=offset)
            if keep(later):
                wanted.setdefault(USERS, set()).add(later)
    for day in map(_as_date, quality_dates):
        if keep(day):
            wanted.setdefault(INGEST_QUALITY, set()).add(day)
    return {asset: [d.isoformat() for d in sorted(days)] for asset, days in sorted(wanted.items())}


def partitions_to_refresh_after_drain(
    changed: Mapping[str, Iterable[str]], *, last_partition: dt.date, first_partition: dt.date | None = None
) -> dict[str, list[str]]:
    """The same, from a drain's `changed` mapping: lake table name ("events", "late", "quarantine") -> dates."""
    return partitions_to_refresh(
        changed.get("events", ()),
        [*changed.get("late", ()), *changed.get("quarantine", ())],
        last_partition=last_partition,
        first_partition=first_partition,
    )


def runs_by_partition(to_refresh: Mapping[str, Iterable[str]]) -> dict[str, list[str]]:
    """Partition key -> rollup assets to recompute in it: one run per partition, selecting just these."""
    runs: dict[str, set[str]] = {}
    for asset, keys in to_refresh.items():
        for key in keys:
            runs.setdefault(key, set()).add(asset)
    return {key: sorted(assets) for key, assets in sorted(runs.items())}
