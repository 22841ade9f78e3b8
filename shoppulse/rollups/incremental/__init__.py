"""Incremental folding of a day's event rollups (see `fold`): `fold_partition` is the entry point."""

from __future__ import annotations

import datetime as dt
import json

import polars as pl
import psycopg

from shoppulse.lake import LakeLogUnavailableError
from shoppulse.lake.changes import days_changed
from shoppulse.lake.layout import LakeTable
from shoppulse.lake.table import LakeRef
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


def _window_days(day: dt.date) -> list[dt.date]:
    """The 29 days before `day` (what its WAU/MAU window reads besides the day itself)."""
    return [day - dt.timedelta(days=back) for back in range(MAU_DAYS - 1, 0, -1)]


def _digest(version: int) -> str:
    """The users window as the fold state assumes it: the table version it was read at."""
    return json.dumps({"table_version": version})


def users_window(lake: LakeRef, day: dt.date, version: int) -> UsersWindow:
    """The 29 days before `day` at table `version`, with their users and the previous day's last hour (to
    rebuild)."""
    _, window = UserDaysCache(lake, version).window_before(day)
    _, tail = previous_day_tail(lake, day, version)
    return UsersWindow(_digest(version), version, window.last_seen(), tail)


def window_since(lake: LakeRef, day: dt.date, assumed: str, version: int) -> UsersWindow | None:
    """The users window of `day` at table `version` as a change from the `assumed` one (the rows its days
    received since: late events), or None when that cannot be told (the lake went back, or the log of
    the range was cleaned up)."""
    try:
        before = int(json.loads(assumed)["table_version"])
    except (ValueError, KeyError, TypeError):
        return None
    if version < before:
        return None
    try:  # only the commits since the state's window: a run worker reads a few log entries, not the log
        changed = days_changed(lake, LakeTable.EVENTS, before, version)
    except LakeLogUnavailableError:
        return None
    users, tails = [], []
    cutoff = day_start(day) - dt.timedelta(minutes=LOOKBACK_MINUTES)
    for window_day in _window_days(day):
        if window_day not in changed:
            continue  # nothing landed for that day since the state's window
        added, _ = load_day_added(lake, window_day, before, version)
        if added is None:
            return None
        raw = scan_partition(added.snapshot, {"user_id": pl.String(), "event_ts": pl.Datetime("ms", "UTC")}).collect()
        users.append(raw.select("user_id", day=pl.lit(window_day.toordinal(), pl.Int64)).unique())
        if window_day == day - dt.timedelta(days=1):
            tails.append(raw.filter(pl.col("event_ts") >= cutoff))
    empty_users = pl.DataFrame(schema={"user_id": pl.String(), "day": pl.Int64()})
    empty_tail = pl.DataFrame(schema={"user_id": pl.String(), "event_ts": pl.Datetime("ms", "UTC")})
    return UsersWindow(
        _digest(version),
        version,
        tail=pl.concat([empty_tail, *tails]),
        since=assumed,
        added=pl.concat([empty_users, *users]),
    )


def fold_partition(
    lake: LakeRef,
    conn: psycopg.Connection,
    day: dt.date,
    fx: FxLookup | None,
    reporting_currency: str,
    run_id: str | None = None,
) -> FoldOutcome:
    """Bring the event rollups of `day` up to the lake's newest table version (pinned once for the whole
    fold): fold what the partition received since the state's version, or rebuild the state from the
    whole day when that cannot be done exactly."""
    state = LakeState.read(lake)
    version = state.version
    header = read_header(conn, day)
    if header is not None:
        added, _ = load_day_added(lake, day, int(header["lake_version"]), version)
        window = window_since(lake, day, header["window_digest"], version)
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
    whole = load_day(lake, day, version)
    batch = FoldBatch(
        day,
        whole.events,
        whole.sales,
        None,
        version,
        users_window(lake, day, version),
        source_offsets(state, [whole.snapshot]),
    )
    return fold(conn, batch, fx, reporting_currency, run_id)
