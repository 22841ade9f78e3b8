"""Incremental folding of a day's event rollups (see `fold`): `fold_partition` is the entry point."""

from __future__ import annotations

import datetime as dt
import json

import polars as pl
import psycopg

from shoppulse.lake import LakeLogUnavailableError
from shoppulse.lake.changes import days_changed, rows_added_per_version
from shoppulse.lake.layout import LakeTable, read_partition
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
from shoppulse.rollups.incremental.plan import fold_steps
from shoppulse.rollups.source import (
    LakeState,
    events_of_snapshot,
    first_copies_in_parts,
    load_day_added,
    scan_partition,
    source_offsets,
)
from shoppulse.rollups.users import LOOKBACK_MINUTES, UserDaysCache, day_start, previous_day_tail
from shoppulse.settings import get_settings

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
    max_events: int | None = None,
) -> FoldOutcome:
    """Bring the event rollups of `day` up to the lake's newest table version (pinned once for the whole
    fold): fold what the partition received since the state's version, or rebuild the state from the
    whole day when that cannot be done exactly.

    At most `max_events` (default: the `fold_max_events` setting) events are in memory at once: a backlog
    is folded in steps of commits, each its own transaction (the served rows move forward step by step,
    never back), and a rebuild reads the day in chunks of files inside one transaction (readers keep the
    old rows until it commits).
    """
    limit = max_events or get_settings().fold_max_events
    state = LakeState.read(lake)
    version = state.version
    header = read_header(conn, day)
    if header is not None:
        try:
            return _fold_backlog(lake, conn, day, header, version, limit, fx, reporting_currency, run_id)
        except NeedsRebuildError:
            pass
    return _rebuild(lake, conn, day, state, limit, fx, reporting_currency, run_id)


def _fold_backlog(
    lake: LakeRef,
    conn: psycopg.Connection,
    day: dt.date,
    header: dict,
    version: int,
    limit: int,
    fx: FxLookup | None,
    reporting_currency: str,
    run_id: str | None,
) -> FoldOutcome:
    """Fold the commits after the state's version in steps of at most `limit` events (raises
    NeedsRebuildError, with the steps already folded kept, when the state cannot take the rest)."""
    after = int(header["lake_version"])
    try:
        added_rows = rows_added_per_version(lake, LakeTable.EVENTS, day, after, version) if version > after else []
    except LakeLogUnavailableError as error:
        raise NeedsRebuildError("the log of the backlog was cleaned up") from error
    total = FoldOutcome(day, False, 0, 0, lake_version=version, steps=0)
    digest = header["window_digest"]
    for step in fold_steps(added_rows, version, limit):
        added, _ = load_day_added(lake, day, after, step)
        window = window_since(lake, day, digest, step)
        if added is None or window is None:
            raise NeedsRebuildError(f"the rows {day} received in ({after}, {step}] cannot be read any more")
        batch = FoldBatch(
            day,
            added.events,
            added.sales,
            after,
            step,
            window,
            source_offsets(LakeState.read(lake, step), [added.snapshot]),
        )
        total.add(fold(conn, batch, fx, reporting_currency, run_id))
        after, digest = step, window.digest
    return total


def _rebuild(
    lake: LakeRef,
    conn: psycopg.Connection,
    day: dt.date,
    state: LakeState,
    limit: int,
    fx: FxLookup | None,
    reporting_currency: str,
    run_id: str | None,
) -> FoldOutcome:
    """Build the day's state and serving rows from empty at the pinned version, in chunks of files of at
    most `limit` rows, all in one transaction. The copies that lose to a copy in another chunk are found
    first (`later_copies_across`), so each chunk holds only first-delivered copies and every event_id is
    folded once, by the chunk that holds its winning copy."""
    version = state.version
    whole = read_partition(lake, LakeTable.EVENTS, day, version)
    window = users_window(lake, day, version)
    offsets = source_offsets(state, [whole])
    if whole.rows <= limit:
        loaded = events_of_snapshot(whole)
        return fold(conn, FoldBatch(day, loaded.events, loaded.sales, None, version, window, offsets), fx,
                    reporting_currency, run_id)  # fmt: skip
    unchanged = UsersWindow(window.digest, window.version, since=window.digest)
    total = FoldOutcome(day, True, 0, 0, lake_version=version, steps=0)
    with conn.transaction():
        for number, loaded in enumerate(first_copies_in_parts(whole, limit)):
            first = number == 0
            batch = FoldBatch(
                day, loaded.events, loaded.sales, None if first else version, version,
                window if first else unchanged, offsets,
            )  # fmt: skip
            total.add(fold(conn, batch, fx, reporting_currency, run_id))
    total.rebuilt = True
    return total
