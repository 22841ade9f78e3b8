"""Writing to the lake's Delta table: data files first, then one commit that makes them visible.

A data file is written straight into its partition directory under a new unique name; it is invisible
until a commit's ``add`` action names it. A writer that dies before committing leaves only such
orphans, which no reader sees and `vacuum` deletes after its retention. The commit is delta-rs'
(local: atomic create of ``_delta_log/<version>.json``; S3: ``PUT`` with ``If-None-Match: *``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

import polars as pl
from deltalake import CommitProperties, DeltaTable, Transaction
from deltalake.exceptions import CommitFailedError
from deltalake.transaction import AddAction, PostCommitHookProperties

from shoppulse.contract.schema import LAKE_SCHEMA
from shoppulse.lake.layout import LakeTable
from shoppulse.lake.table import (
    DATE_COLUMN,
    KIND_COLUMN,
    PARTITION_COLUMNS,
    LakeRef,
    app_id,
    arrow_filesystem,
    commit_info,
    delta_schema,
    is_remote,
    open_table,
    read_log_entry,
    storage_options,
)


class StaleOffsetsError(RuntimeError):
    """The commit was refused: another writer committed offsets of the same Kafka partitions since this
    writer read them (a zombie after a rebalance, a restart, or an overlapping tick). Nothing landed."""


def write_file(
    lake: LakeRef, kind: LakeTable, date: dt.date, frame: pl.DataFrame, compression_level: int = 1
) -> AddAction:
    """Write `frame` (DATA_SCHEMA columns, any subset) as a new file of partition (kind, date), durably.

    Returns the add action that a commit must include to make it part of the table.
    """
    relative = (
        f"{KIND_COLUMN}={kind.value}/{DATE_COLUMN}={date.isoformat()}/{time.time_ns():020d}-{uuid.uuid4().hex}.parquet"
    )
    fs, root = arrow_filesystem(lake)
    path = f"{root}/{relative}"
    if is_remote(lake):
        with fs.open_output_stream(path) as stream:
            frame.write_parquet(stream, compression="zstd", compression_level=compression_level, statistics=True)
        size = fs.get_file_info(path).size
    else:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as handle:
            frame.write_parquet(handle, compression="zstd", compression_level=compression_level, statistics=True)
            handle.flush()
            os.fsync(handle.fileno())
        size = Path(path).stat().st_size
    return AddAction(
        path=relative,
        size=int(size or 0),
        partition_values={KIND_COLUMN: kind.value, DATE_COLUMN: date.isoformat()},
        modification_time=int(time.time() * 1000),
        data_change=True,
        stats=json.dumps({"numRecords": frame.height}),
    )


def remove_uncommitted(lake: LakeRef, adds: list[AddAction]) -> None:
    """Delete files written for a commit that did not happen (best effort: vacuum gets any left)."""
    fs, root = arrow_filesystem(lake)
    for add in adds:
        with contextlib.suppress(OSError):
            fs.delete_file(f"{root}/{add.path}")


def commit_files(
    table: DeltaTable,
    adds: list[AddAction],
    offsets: Mapping[tuple[str, int], int] | None = None,
    metadata: Mapping[str, object] | None = None,
) -> int:
    """Commit `adds` and the Kafka offsets (``(topic, partition) -> next offset``, as app transactions)
    in one Delta commit against `table`'s snapshot. Returns the new table version.

    delta-rs checks the commits made since that snapshot: if one recorded a transaction of the same
    app id (the same Kafka partition), the offsets read from the snapshot are stale and the commit is
    refused with StaleOffsetsError — a zombie writer cannot land a range twice.
    """
    transactions = [Transaction(app_id(topic, p), int(o)) for (topic, p), o in sorted((offsets or {}).items())]
    token = uuid.uuid4().hex
    read_version = table.version()
    try:
        table.create_write_transaction(
            adds,
            mode="append",
            schema=delta_schema(),
            partition_by=PARTITION_COLUMNS,
            commit_properties=CommitProperties(
                app_transactions=transactions or None,
                custom_metadata={"shoppulse": {**dict(metadata or {}), "commit_id": token}},
            ),
            post_commithook_properties=PostCommitHookProperties(create_checkpoint=True, cleanup_expired_logs=False),
        )
    except CommitFailedError as exc:
        raise StaleOffsetsError(f"commit refused (offsets changed since version {read_version}): {exc}") from exc
    return _version_of_commit(table, read_version, token)


def _version_of_commit(table: DeltaTable, read_version: int, token: str) -> int:
    """The version our commit got: the first after `read_version` whose commitInfo carries `token`
    (delta-rs retries a commit that lost a race without conflict at the next version)."""
    uri = table.table_uri
    latest = DeltaTable(uri, storage_options=storage_options(uri) or None).version()
    for version in range(read_version + 1, latest + 1):
        if commit_info(read_log_entry(uri, version)).get("shoppulse", {}).get("commit_id") == token:
            return version
    raise RuntimeError(f"commit {token} not found in versions {read_version + 1}..{latest} of {uri}")


def append_events(lake: LakeRef, events: pl.DataFrame) -> int:
    """Commit `events` (LAKE_SCHEMA columns) as one file per event_date. Kafka offsets are unchanged.

    For backfill loads, tests and benches. Returns the new table version.
    """
    missing = set(LAKE_SCHEMA) - set(events.columns)
    if missing:
        raise ValueError(f"events lack lake columns: {sorted(missing)}")
    frame = events.select(list(LAKE_SCHEMA)).cast(LAKE_SCHEMA)  # type: ignore[arg-type]
    table = open_table(lake)
    adds = [
        write_file(lake, LakeTable.EVENTS, date, part, compression_level=3)
        for (date,), part in frame.partition_by("event_date", as_dict=True, maintain_order=True).items()
    ]
    return commit_files(table, adds, metadata={"kind": "append", "counts": {"events": frame.height}})


__all__ = ["StaleOffsetsError", "append_events", "commit_files", "remove_uncommitted", "write_file"]
