"""Compaction and cleanup of the lake's Delta table: `optimize` and `vacuum`.

Each drain adds one small file per touched partition, and every file costs a scan ~80 µs, so a busy
day would soon hold thousands. When a partition has `min_files` small files, Delta's `optimize`
(compact) rewrites the smallest of them, at most MAX_REWRITE_BYTES, into files of up to `target_bytes`
in one commit whose actions have ``dataChange: false`` (readers and `events_added` know nothing
changed). It streams one bin at a time (``max_concurrent_tasks=1``), so memory stays within the
drain's budget, and keeps the rows in insertion order. Files it removes stay on storage until
`vacuum` deletes them after VACUUM_RETENTION_HOURS, so a rollup pinned to an older version keeps
reading them.
"""

from __future__ import annotations

import datetime as dt
import logging

import pyarrow as pa
from deltalake import WriterProperties
from deltalake.exceptions import CommitFailedError
from deltalake.transaction import PostCommitHookProperties

from shoppulse.lake.layout import LakeTable, pinned_table
from shoppulse.lake.table import DATE_COLUMN, KIND_COLUMN, VACUUM_RETENTION_HOURS, LakeRef, open_table

logger = logging.getLogger(__name__)

TARGET_BYTES = 32 * 1024 * 1024
"""Files reach this size through compaction, then are left alone (bounds the rewriting of a busy day)."""


WRITER_PROPERTIES = WriterProperties(max_row_group_size=131_072, compression="ZSTD", compression_level=3)
"""Row groups of 128k rows: the writer buffers one row group, so this bounds optimize's memory (the
default, 1M rows of events, held hundreds of MB); zstd 3 recompresses the drains' quick zstd 1."""


MAX_REWRITE_BYTES = 16 * 1024 * 1024
"""At most this much data is rewritten per compaction (~1 s here): compaction runs inside a drain tick, and
after a backlog (a catch-up, a preload) a day holds hundreds of MB in drain-sized files; rewriting them
all at once stalled ingestion for 40 s at 10M events (minutes at 50M). Files past the budget stay as they
are: a backlog's drains already wrote them large."""


def partition_sizes(actions: pa.Table, kind: LakeTable, date: dt.date) -> list[int]:
    """Sizes of the data files of partition (kind, date)."""
    kinds = actions.column(f"partition.{KIND_COLUMN}").to_pylist()
    dates = actions.column(f"partition.{DATE_COLUMN}").to_pylist()
    sizes = actions.column("size_bytes").to_pylist()
    day = date.isoformat()
    return [int(size) for k, d, size in zip(kinds, dates, sizes, strict=True) if k == kind.value and str(d) == day]


def compaction_target(sizes: list[int], min_files: int, target_bytes: int, max_bytes: int) -> int | None:
    """The `target_size` to optimize a partition with, or None when it is not worth it.

    delta-rs rewrites every file of at most `target_size` bytes, packed into files of up to that size. So
    the smallest files whose sizes add up to at most `max_bytes` are chosen (at least `min_files` of
    them), and the target is set just under the first file left out (or to `target_bytes` when none is):
    a compaction rewrites at most `max_bytes`, whatever the partition holds.
    """
    small = sorted(size for size in sizes if size <= target_bytes)
    total, chosen = 0, 0
    for size in small:
        if total + size > max_bytes:
            break
        total, chosen = total + size, chosen + 1
    target = target_bytes if chosen == len(small) else min(target_bytes, small[chosen] - 1)
    if sum(1 for size in small if size <= target) < min_files:
        return None  # (files the size of the first one left out are left out too)
    return target


def compact_partition(lake: LakeRef, kind: LakeTable, date: dt.date, target_bytes: int = TARGET_BYTES) -> dict:
    """Optimize one partition (one commit; rows unchanged). Returns delta-rs' metrics."""
    table = open_table(lake)
    return table.optimize.compact(
        partition_filters=[(KIND_COLUMN, "=", kind.value), (DATE_COLUMN, "=", date.isoformat())],
        target_size=target_bytes,
        max_concurrent_tasks=1,
        writer_properties=WRITER_PROPERTIES,
        post_commithook_properties=PostCommitHookProperties(create_checkpoint=True, cleanup_expired_logs=False),
    )


def compact_one(
    lake: LakeRef,
    min_files: int,
    candidates: list[tuple[LakeTable, dt.date]],
    target_bytes: int = TARGET_BYTES,
    version: int | None = None,
    max_bytes: int = MAX_REWRITE_BYTES,
) -> list[str]:
    """Compact the first candidate partition holding `min_files` small files at `version`, rewriting at
    most `max_bytes` of them (`compaction_target`).

    Returns "kind/date" of what was compacted (at most one partition per call, to bound the time). A
    concurrent commit that conflicts with the rewrite (another shard compacting the same day) only
    means it is tried again later.
    """
    _, actions = pinned_table(lake, version)
    for kind, date in candidates:
        target = compaction_target(partition_sizes(actions, kind, date), min_files, target_bytes, max_bytes)
        if target is not None:
            try:
                compact_partition(lake, kind, date, target)
            except CommitFailedError as exc:
                logger.info("compaction of %s/%s lost a race (will retry): %s", kind.value, date, exc)
                return []
            return [f"{kind.value}/{date.isoformat()}"]
    return []


def vacuum(lake: LakeRef, retention_hours: int = VACUUM_RETENTION_HOURS, dry_run: bool = False) -> list[str]:
    """Delete files no version of the last `retention_hours` references (compacted-away inputs, and
    files of commits that never happened). Returns the files deleted (or, dry run, that would be)."""
    return open_table(lake).vacuum(
        retention_hours=retention_hours, dry_run=dry_run, enforce_retention_duration=False, full=True
    )
