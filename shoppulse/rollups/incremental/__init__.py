"""Incremental folding of a day's event rollups (see `fold`): `fold_partition` is the entry point."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import psycopg

from shoppulse.lake.layout import LakeTable, read_partition
from shoppulse.metrics import MAU_DAYS
from shoppulse.rollups.incremental.fold import (
    FoldBatch,
    FoldOutcome,
    FxLookup,
    NeedsRebuildError,
    UsersWindow,
    fold,
    read_header,
)
from shoppulse.rollups.source import LakeState, load_day, load_day_added, source_offsets
from shoppulse.rollups.users import UserDaysCache, previous_day_tail

__all__ = ["FoldOutcome", "fold_partition", "users_window"]


def users_window(lake_dir: Path, day: dt.date, with_users: bool) -> UsersWindow:
    """The 29 days before `day` as the users rollup reads them (with their users, to rebuild)."""
    days = [day - dt.timedelta(days=back) for back in range(MAU_DAYS - 1, 0, -1)]
    snapshots = {d: read_partition(Path(lake_dir), LakeTable.EVENTS, d) for d in days}
    digest = hashlib.sha256(";".join(f"{d}:{s.version}" for d, s in snapshots.items()).encode()).hexdigest()[:32]
    version = max(s.version for s in snapshots.values())
    if not with_users:
        return UsersWindow(digest, version)
    _, window = UserDaysCache(Path(lake_dir)).window_before(day)
    _, tail = previous_day_tail(Path(lake_dir), day)
    return UsersWindow(digest, version, window.last_seen(), tail)


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
        if added is not None:
            batch = FoldBatch(
                day,
                added.events,
                added.sales,
                int(header["lake_version"]),
                version,
                users_window(lake_dir, day, with_users=False),
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
        users_window(lake_dir, day, with_users=True),
        source_offsets(state, [whole.snapshot]),
    )
    return fold(conn, batch, fx, reporting_currency, run_id)
