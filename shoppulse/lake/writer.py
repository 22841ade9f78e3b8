"""Append already-decoded rows to the lake through the commit log (for backfill loads, tests, benches).

The drain stages its own files chunk by chunk; this is the same commit protocol for a frame in hand.
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

from shoppulse.contract.schema import LAKE_SCHEMA
from shoppulse.lake import commit as log
from shoppulse.lake.layout import LakeTable


def append_events(lake_dir: Path, events: pl.DataFrame, wait_seconds: float = 30.0) -> log.CommitRecord:
    """Commit `events` (LAKE_SCHEMA columns) as one file per event_date. Kafka offsets are unchanged."""
    missing = set(LAKE_SCHEMA) - set(events.columns)
    if missing:
        raise ValueError(f"events lack lake columns: {sorted(missing)}")
    lake_dir = Path(lake_dir)
    with log.lake_lock(lake_dir, wait_seconds=wait_seconds):
        seq = log.recover(lake_dir) + 1
        previous = log.read_commit(lake_dir, seq - 1)
        stage = log.Stage(lake_dir, seq)
        name = f"{seq:012d}-0000.parquet"
        frame = events.select(list(LAKE_SCHEMA)).cast(LAKE_SCHEMA)  # type: ignore[arg-type]
        for (date,), part in frame.partition_by("event_date", as_dict=True).items():
            path = stage.path_for(LakeTable.EVENTS, date, name)
            with open(path, "wb") as handle:
                part.write_parquet(handle, compression="zstd", compression_level=3, statistics=True)
                handle.flush()
                os.fsync(handle.fileno())
            stage.add(log.FileRef(LakeTable.EVENTS, date, name, rows=part.height, size=path.stat().st_size))
        record = log.CommitRecord(
            seq=seq, kind="append", offsets=previous.offsets if previous else {}, counts={"events": frame.height}
        )
        return log.commit(lake_dir, stage, record)
