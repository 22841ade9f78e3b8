"""Incremental folding of a day's event rollups (see `fold`): `fold_partition` is the entry point."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
import psycopg

from shoppulse.lake.layout import LakeTable, read_partition
from shoppulse.metrics import MAU_DAYS
from shoppulse.rollups.incremental import store
from shoppulse.rollups.incremental.fold import (
    FoldBatch,
    FoldOutcome,
    FxLookup,
    NeedsRebuildError,
    UsersWindow,
    fold,
    read_header,
)
from shoppulse.rollups.source import LakeState, load_day, load_day_added, scan_partition, source_offsets
from shoppulse.rollups.users import LOOKBACK_MINUTES, UserDaysCache, day_start, previous_day_tail

__all__ = ["FoldOutcome", "fold_partition", "prune_state", "users_window"]


def prune_state(conn: psycopg.Connection, before: dt.date) -> None:
    """Drop the fold state of days before `before` (their partitions recompute when they change)."""
    with conn.transaction():
        for table in store.STATE_TABLES:
            conn.execute(f"DELETE FROM {store.SCHEMA}.{table.name} WHERE event_date < %s", (before,))


def window_versions(lake_dir: Path, day: dt.date) -> dict[str, int]:
    """Lake version of each of the 29 days before `day` (what the users window of `day` reads)."""
    days = [day - dt.timedelta(days=back) for back in range(MAU_DAYS - 1, 0, -1)]
    return {d.isoformat(): read_partition(Path(lake_dir), LakeTable.EVENTS, d).version for d in days}


def _digest(versions: dict[str, int]) -> str:
    return json.dumps(versions, sort_keys=True)


def users_window(lake_dir: Path, day: dt.date) -> UsersWindow:
    """The 29 days before `day` with their users and the previous day's last hour (to rebuild)."""
    versions = window_versions(lake_dir, day)
    _, window = UserDaysCache(Path(lake_dir)).window_before(day)
    _, tail = previous_day_tail(Path(lake_dir), day)
    return UsersWindow(_digest(versions), max(versions.values()), window.last_seen(), tail)


def window_since(lake_dir: Path, day: dt.date, assumed: str) -> UsersWindow | None:
    """The users window of `day` as a change from the `assumed` one (the rows its days received since:
    late events), or None when that cannot be told (the lake went back, records pruned, compacted)."""
    try:
        before = {d: int(v) for d, v in json.loads(assumed).items()}
    except (ValueError, AttributeError):
        return None
    versions = window_versions(lake_dir, day)
    if set(versions) != set(before):
        before = {d: before.get(d, 0) for d in versions}  # the window slid (a new day): same days, older rows
    users, tails = [], []
    cutoff = day_start(day) - dt.timedelta(minutes=LOOKBACK_MINUTES)
    for name, version in versions.items():
        if version == before[name]:
            continue
        if version < before[name]:
            return None
        added, now = load_day_added(Path(lake_dir), dt.date.fromisoformat(name), before[name])
        if added is None:
            return None
        versions[name] = now
        raw = scan_partition(added.snapshot, {"user_id": pl.String(), "event_ts": pl.Datetime("ms", "UTC")}).collect()
        users.append(raw.select("user_id", day=pl.lit(dt.date.fromisoformat(name).toordinal(), pl.Int64)).unique())
        if dt.date.fromisoformat(name) == day - dt.timedelta(days=1):
            tails.append(raw.filter(pl.col("event_ts") >= cutoff))
    empty_users = pl.DataFrame(schema={"user_id": pl.String(), "day": pl.Int64()})
    empty_tail = pl.DataFrame(schema={"user_id": pl.String(), "event_ts": pl.Datetime("ms", "UTC")})
    return UsersWindow(
        _digest(versions),
        max(versions.values()),
        tail=pl.concat([empty_tail, *tails]),
        since=assumed,
        added=pl.concat([empty_users, *users]),
    )


def fold_partition(
    lake_dir: Path,
    conn: psycopg.Connection,
    day: dt.date,
    fx: FxLookup | None,
    reporting_currency: str,
    run_id: str | None = None,
) -> FoldOutcome:
    """Bring the event rollups of `day` up to the lake: fold what the partition received since the state's
    lake version, or rebuild the state from the whole day when that cannot be done exactly."""
    lake_dir = Path(lake_dir)
    state = LakeState.read(lake_dir)
    header = read_header(conn, day)
    if header is not None:
        added, version = load_day_added(lake_dir, day, int(header["lake_version"]))
        window = window_since(lake_dir, day, header["window_digest"])
        if added is not None and window is not None:
            batch = FoldBatch(
                day,
                added.events,
                added.sales,
                int(header["lake_version"]),
                version,
                window,
                source_offsets(state, [added.snapshot]),
            )
            try:
                return fold(conn, batch, fx, reporting_currency, run_id)
            except NeedsRebuildError:
                pass
    whole = load_day(lake_dir, day)
    batch = FoldBatch(
        day,
        whole.events,
        whole.sales,
        None,
        whole.snapshot.version,
        users_window(lake_dir, day),
        source_offsets(state, [whole.snapshot]),
    )
    return fold(conn, batch, fx, reporting_currency, run_id)
