"""The distinct-count rollups (users, funnel, customers) of a day too large to recompute in memory, exactly,
in slices of users.

Every measure of those rollups counts events, users or sessions. The day's deduplicated events are split
by a hash of `user_id`: all of a user's events fall in one slice, so each slice's distinct users (DAU, WAU,
MAU, active users per minute, customers) add up to the day's, and so do its sessions as long as no session
has events of two users. That is checked: a day with such sessions is reported, not compared. Summing the
slices' rows per key (`catalog.sum_rows`) then gives exactly the rows of one full recompute, the same
functions computing each slice, in memory that follows a slice (about `max_events` events), not the day.

The slices are spilled to Parquet under a scratch directory (one pass over the lake), then read back one
at a time.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from shoppulse.lake.layout import PartitionSnapshot
from shoppulse.lake.table import LakeRef
from shoppulse.metrics import ORDER_PLACED
from shoppulse.rollups import catalog
from shoppulse.rollups.customers import customers_daily
from shoppulse.rollups.funnel import funnel_daily
from shoppulse.rollups.source import ACTIVITY_COLUMNS, SALES_COLUMNS, first_copies_in_parts
from shoppulse.rollups.traffic import traffic_hourly
from shoppulse.rollups.users import (
    DAY,
    RollingActiveUsers,
    UserDaysCache,
    active_users_minute,
    distinct_users,
    minute_of,
    previous_day_tail,
    users_daily,
)
from shoppulse.rollups.writer import PartitionWrite

SLICED_ROLLUPS = (catalog.USERS, catalog.FUNNEL, catalog.CUSTOMERS)
"""Rollups whose measures count distinct users or sessions (they do not add up over parts of events)."""

SLICE_SLACK = 1.25
"""Slices per `max_events` events of the day, so that a slice hashed a little above its share still fits."""

_SLICE_SEED = 0x51CE
_ORDER_COLUMNS = ("event_type", "user_id", "customer_order_number")


def slice_of_user(slices: int) -> pl.Expr:
    """The slice (0 .. slices − 1) of each row's user_id."""
    return (pl.col("user_id").hash(_SLICE_SEED) % slices).cast(pl.UInt32).alias("slice")


@dataclass
class SlicedWrites:
    """The sliced recompute of a day: its writes, and why users and funnel may be missing from them."""

    writes: list[PartitionWrite]
    slices: int
    sessions_across_users: int
    """Sessions with events of users in different slices: then users and funnel (which count sessions)
    were not computed, only customers."""


def sliced_rollup_writes(
    lake_dir: LakeRef, snapshot: PartitionSnapshot, assets: Collection[str], max_events: int, scratch: Path
) -> SlicedWrites:
    """The rows of the selected SLICED_ROLLUPS of the day of `snapshot`, computed as `event_rollup_writes`
    computes them, slice of users by slice (the users window and the previous day's tail read at the
    snapshot's version, as a full recompute reads them)."""
    day = snapshot.date
    slices = max(1, math.ceil(snapshot.rows * SLICE_SLACK / max_events))
    last_minute = _spill_slices(snapshot, slices, max_events, scratch)
    span = _sessions_across_slices(scratch, slices) if {catalog.USERS, catalog.FUNNEL} & set(assets) else 0
    if span:  # session counts would not add up over slices; customers only count users
        assets = [a for a in assets if a == catalog.CUSTOMERS]
    _, window = UserDaysCache(lake_dir, snapshot.version).window_before(day)
    window_users = window.last_seen().with_columns(slice_of_user(slices))
    _, tail = previous_day_tail(lake_dir, day, snapshot.version)
    tail = tail.with_columns(slice_of_user(slices))
    parts: dict[str, list[pl.DataFrame]] = {}
    for k in range(slices):
        events = _read_slice(scratch, "events", k, ACTIVITY_COLUMNS)
        tables: dict[str, pl.DataFrame] = {}
        if catalog.USERS in assets:
            users = distinct_users(events)
            slice_window = RollingActiveUsers.from_last_seen(
                window_users.filter(pl.col("slice") == k).drop("slice"), day - DAY
            )
            slice_window.add(day, users)
            slice_tail = tail.filter(pl.col("slice") == k).drop("slice")
            tables["active_users_minute"] = active_users_minute(events, slice_tail, day, users, last_minute)
            tables["users_daily"] = users_daily(events, day, slice_window)
            tables["traffic_hourly"] = traffic_hourly(events, day)
        if catalog.FUNNEL in assets:
            tables["funnel_daily"] = funnel_daily(events, day)
        if catalog.CUSTOMERS in assets:
            orders = _read_slice(scratch, "orders", k, {c: SALES_COLUMNS[c] for c in _ORDER_COLUMNS})
            tables["customers_daily"] = customers_daily(orders, day, has_events=not events.is_empty())
        for name, frame in tables.items():
            parts.setdefault(name, []).append(frame)
        del events
    writes = [
        PartitionWrite(
            asset=asset,
            day=day,
            tables={t.name: catalog.sum_rows(t.name, parts[t.name]) for t in catalog.TABLES[asset]},
            lake_version=snapshot.version,
        )
        for asset in SLICED_ROLLUPS
        if asset in assets
    ]
    return SlicedWrites(writes, slices, span)


def _spill_slices(snapshot: PartitionSnapshot, slices: int, max_events: int, scratch: Path) -> int | None:
    """Write the day's first copies, split by slice of user, under `scratch` (events: every event;
    orders: order_placed rows); returns the minute (since the epoch) of the day's newest event."""
    newest: dt.datetime | None = None
    for n, part in enumerate(first_copies_in_parts(snapshot, max_events)):
        if part.events.height:
            part_newest = part.events["event_ts"].max()
            newest = part_newest if newest is None else max(newest, part_newest)  # type: ignore[type-var]
        orders = part.sales.filter(pl.col("event_type") == ORDER_PLACED).select(_ORDER_COLUMNS)
        for kind, frame in (("events", part.events), ("orders", orders)):
            for (k,), rows in frame.with_columns(slice_of_user(slices)).partition_by("slice", as_dict=True).items():
                path = scratch / kind / f"slice={k}" / f"{n:06d}.parquet"
                path.parent.mkdir(parents=True, exist_ok=True)
                rows.drop("slice").write_parquet(path, compression="lz4")
    if newest is None:
        return None
    return int(pl.select(minute_of(pl.lit(newest, pl.Datetime("ms", "UTC")))).item())


def _read_slice(scratch: Path, kind: str, k: int, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    folder = scratch / kind / f"slice={k}"
    if not folder.exists():
        return pl.DataFrame(schema=schema)
    return pl.read_parquet(folder / "*.parquet").select(list(schema))


def _sessions_across_slices(scratch: Path, slices: int) -> int:
    """Sessions seen in more than one slice (by a 64-bit hash of session_id; a collision could only make
    the check skip a day, never pass a wrong one)."""
    hashed = []
    for k in range(slices):
        folder = scratch / "events" / f"slice={k}"
        if folder.exists():
            hashed.append(
                pl.scan_parquet(folder / "*.parquet")
                .select(pl.col("session_id").hash(_SLICE_SEED).unique())
                .collect()
                .to_series()
                .to_numpy()
            )
    if not hashed:
        return 0
    ordered = np.sort(np.concatenate(hashed))
    return int(np.count_nonzero(ordered[1:] == ordered[:-1]))
