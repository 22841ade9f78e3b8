"""Compaction: merge a partition's small files into one, atomically, through the commit log.

Each drain adds one small file per touched partition, and every file costs a scan ~80 µs, so a busy
day would soon hold thousands. Files are grouped in size tiers (by rows); when a tier of one partition
has `min_files` files, they are merged into one file of the next tier in a ``compact`` commit that
removes the inputs and adds the output. The merge streams (memory stays flat whatever the rows) and
keeps the rows in arrival order. Readers holding the previous manifest keep reading the inputs,
which `vacuum` deletes only after a grace period.
Write amplification stays logarithmic; nothing is ever rewritten in place.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import time
from pathlib import Path

import polars as pl

from shoppulse.lake import commit as log
from shoppulse.lake.layout import LakeTable, partition_dates, partition_dir, read_manifest

TIER_BASE_ROWS = 50_000
TIER_FACTOR = 10
VACUUM_QUEUE = "_vacuum.json"


def tier(rows: int) -> int:
    """0 below 50k rows, 1 below 500k, 2 below 5M, ..."""
    return 0 if rows < TIER_BASE_ROWS else 1 + int(math.log(rows / TIER_BASE_ROWS, TIER_FACTOR))


def plan(lake_dir: Path, table: LakeTable, date: dt.date, min_files: int, max_rows: int) -> list[str]:
    """Files of one partition to merge now (empty when no tier has `min_files` files within `max_rows`)."""
    files = read_manifest(lake_dir, table, date)["files"]
    tiers: dict[int, list[str]] = {}
    for name, info in sorted(files.items()):
        tiers.setdefault(tier(int(info["rows"])), []).append(name)
    for level in sorted(tiers):
        names = tiers[level]
        if len(names) >= min_files:
            chosen, rows = [], 0
            for name in names:
                if rows + int(files[name]["rows"]) > max_rows and chosen:
                    break
                chosen.append(name)
                rows += int(files[name]["rows"])
            if len(chosen) >= 2:
                return chosen
    return []


def compact_partition(lake_dir: Path, table: LakeTable, date: dt.date, names: list[str]) -> log.CommitRecord:
    """Merge `names` of one partition into a single file, in one commit. Caller holds the lake lock."""
    seq = log.latest_seq(lake_dir) + 1
    previous = log.read_commit(lake_dir, seq - 1)
    base = partition_dir(lake_dir, table, date)
    manifest = read_manifest(lake_dir, table, date)["files"]
    merged = pl.concat([pl.scan_parquet(base / name) for name in names], how="diagonal_relaxed")
    stage = log.Stage(lake_dir, seq)
    name = f"{seq:012d}-c.parquet"
    path = stage.path_for(table, date, name)
    # A sort would hold every row in memory (~1.5 KB/row measured); the streaming sink holds ~150 MB flat.
    merged.sink_parquet(path, compression="zstd", compression_level=3, statistics=True)
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())
    rows = pl.scan_parquet(path).select(pl.len()).collect().item()
    stage.add(log.FileRef(table, date, name, rows=rows, size=path.stat().st_size))
    record = log.CommitRecord(
        seq=seq,
        kind="compact",
        offsets=previous.offsets if previous else {},
        removes=[log.FileRef(table, date, n, rows=int(manifest[n]["rows"])) for n in names],
        counts={"merged_files": len(names), "rows": rows},
    )
    log.commit(lake_dir, stage, record)
    _queue_vacuum(lake_dir, table, date)
    return record


def compact_one(
    lake_dir: Path,
    min_files: int,
    max_rows: int,
    grace_seconds: float,
    candidates: list[tuple[LakeTable, dt.date]] | None = None,
) -> list[str]:
    """Vacuum what is due, then compact the first partition that needs it. Caller holds the lake lock.

    Returns "table/date" of what was compacted (at most one partition per call, to bound the time).
    """
    vacuum_due(lake_dir, grace_seconds)
    if candidates is None:
        candidates = [(table, date) for table in LakeTable for date in reversed(partition_dates(lake_dir, table))]
    for table, date in candidates:
        names = plan(lake_dir, table, date, min_files, max_rows)
        if names:
            compact_partition(lake_dir, table, date, names)
            return [f"{table.value}/{date.isoformat()}"]
    return []


def _queue_path(lake_dir: Path) -> Path:
    return lake_dir / log.LOG_DIR / VACUUM_QUEUE


def _read_queue(lake_dir: Path) -> dict[str, float]:
    try:
        return json.loads(_queue_path(lake_dir).read_text())
    except FileNotFoundError:
        return {}


def _write_queue(lake_dir: Path, queue: dict[str, float]) -> None:
    tmp = _queue_path(lake_dir).with_suffix(".tmp")
    tmp.write_text(json.dumps(queue, sort_keys=True))
    tmp.replace(_queue_path(lake_dir))


def _queue_vacuum(lake_dir: Path, table: LakeTable, date: dt.date) -> None:
    queue = _read_queue(lake_dir)
    queue[f"{table.value}/{date.isoformat()}"] = time.time()
    _write_queue(lake_dir, queue)


def vacuum_due(lake_dir: Path, grace_seconds: float) -> list[str]:
    """Delete compacted-away files whose grace period has passed."""
    queue = _read_queue(lake_dir)
    now = time.time()
    done = []
    for key, queued_at in list(queue.items()):
        if now - queued_at < grace_seconds:
            continue
        table, day = key.split("/")
        log.vacuum(lake_dir, LakeTable(table), dt.date.fromisoformat(day), grace_seconds)
        del queue[key]
        done.append(key)
    if done:
        _write_queue(lake_dir, queue)
    return done
