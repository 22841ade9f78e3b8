"""The lake as one Delta Lake table (delta-rs), on a local path or on S3.

Layout: a single table partitioned by ``record_kind`` (``events``, ``late``, ``quarantine``) and
``partition_date`` (the event's UTC date for ``events``; the UTC date the broker received the message
for ``late`` and ``quarantine``). Its columns are the union of the contract's lake columns and the
quarantine columns (original key/value bytes, reason); a row uses the ones of its kind, the rest are null.
One table is what makes a drain ONE Delta commit: the files of all three kinds it lands, plus one app
transaction (``txn``) per Kafka partition holding that partition's next offset, are committed together.

Everything here goes through the Delta log, so Spark, Trino, DuckDB (delta extension) and Polars
(``scan_delta``) read the same table. Readers pin a table version; a version stays readable until
``vacuum`` removes the files it references (retention: :data:`VACUUM_RETENTION_HOURS`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.fs as pafs
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError
from deltalake.schema import Schema as DeltaSchema

from shoppulse.contract.schema import LAKE_SCHEMA
from shoppulse.lake.decode import QUARANTINE_SCHEMA

KIND_COLUMN = "record_kind"
DATE_COLUMN = "partition_date"
PARTITION_COLUMNS = [KIND_COLUMN, DATE_COLUMN]

DATA_SCHEMA: dict[str, pl.DataType] = {**LAKE_SCHEMA, **QUARANTINE_SCHEMA}
"""Columns stored in the data files: events/late rows fill LAKE_SCHEMA's, quarantine rows QUARANTINE_SCHEMA's."""

TABLE_SCHEMA: dict[str, pl.DataType] = {KIND_COLUMN: pl.String(), DATE_COLUMN: pl.Date(), **DATA_SCHEMA}

VACUUM_RETENTION_HOURS = 168
"""Files removed by optimize stay this long (Delta's default, 7 days): a rollup pinned to any version of
the last week can still read it, and "rerun as of version V" works for that long."""

LakeRef = str | Path
"""A lake location: a local directory (Path or str) or an ``s3://bucket/prefix`` URI."""


class LakeLogUnavailableError(RuntimeError):
    """The Delta log entries needed for a version range are gone (checkpointed and cleaned up): recompute."""


def lake_uri(lake: LakeRef) -> str:
    """Normalized table URI: ``s3://...`` kept as is, a local path made absolute."""
    text = str(lake)
    if text.startswith("file://"):
        text = text.removeprefix("file://")
    elif "://" in text:
        return text.rstrip("/")
    return str(Path(text).absolute())


def is_remote(lake: LakeRef) -> bool:
    return "://" in str(lake) and not str(lake).startswith("file://")


def lake_ref(value: str) -> LakeRef:
    """A configured lake location as the code passes it around (Path for local, str URI otherwise)."""
    return value if "://" in value else Path(value)


def storage_options(lake: LakeRef) -> dict[str, str]:
    """delta-rs / object_store options for the lake, from the usual AWS variables (empty for local).

    AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION (default us-east-1).
    Commits rely on S3 conditional writes (``If-None-Match: *``), so no lock service is configured.
    """
    if not is_remote(lake):
        return {}
    options = {"AWS_REGION": os.environ.get("AWS_REGION", "us-east-1")}
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        if os.environ.get(name):
            options[name] = os.environ[name]
    endpoint = options.get("AWS_ENDPOINT_URL", "")
    if endpoint.startswith("http://"):
        options["AWS_ALLOW_HTTP"] = "true"
    if endpoint:
        options["AWS_VIRTUAL_HOSTED_STYLE_REQUEST"] = "false"
    return options


def polars_storage_options(lake: LakeRef) -> dict[str, str] | None:
    """The same options in the spelling Polars' cloud readers take (None for local)."""
    options = storage_options(lake)
    return {key.lower(): value for key, value in options.items()} or None


@functools.cache
def _s3_filesystem(endpoint: str, region: str, key: str, secret: str) -> pafs.S3FileSystem:
    scheme, _, host = endpoint.partition("://")
    return pafs.S3FileSystem(
        access_key=key or None,
        secret_key=secret or None,
        region=region,
        endpoint_override=host or None,
        scheme=scheme or "https",
        allow_bucket_creation=False,
    )


def arrow_filesystem(lake: LakeRef) -> tuple[pafs.FileSystem, str]:
    """A PyArrow filesystem for the lake's files and the table root's path in it."""
    uri = lake_uri(lake)
    if not is_remote(uri):
        return pafs.LocalFileSystem(), uri
    options = storage_options(uri)
    fs = _s3_filesystem(
        options.get("AWS_ENDPOINT_URL", ""),
        options["AWS_REGION"],
        options.get("AWS_ACCESS_KEY_ID", ""),
        options.get("AWS_SECRET_ACCESS_KEY", ""),
    )
    return fs, uri.split("://", 1)[1]


def file_path(lake: LakeRef, uri: str | Path) -> str:
    """A data file URI as `arrow_filesystem(lake)` addresses it."""
    text = str(uri)
    return text.split("://", 1)[1] if "://" in text else text


def delta_schema() -> DeltaSchema:
    return DeltaSchema.from_arrow(pl.DataFrame(schema=TABLE_SCHEMA).to_arrow().schema)


def arrow_data_schema() -> pa.Schema:
    return pl.DataFrame(schema=DATA_SCHEMA).to_arrow().schema


def open_table(lake: LakeRef, version: int | None = None) -> DeltaTable:
    """The lake's table (at `version`, or the newest), created empty if it does not exist yet."""
    uri = lake_uri(lake)
    options = storage_options(uri)
    try:
        return DeltaTable(uri, version=version, storage_options=options or None)
    except TableNotFoundError:
        if version is not None:
            raise
    with contextlib.suppress(Exception):  # a concurrent creator may win: then open what it made
        DeltaTable.create(
            uri,
            schema=delta_schema(),
            partition_by=PARTITION_COLUMNS,
            mode="ignore",
            storage_options=options or None,
            configuration={"delta.deletedFileRetentionDuration": f"interval {VACUUM_RETENTION_HOURS} hours"},
        )
    return DeltaTable(uri, storage_options=options or None)


def table_version(lake: LakeRef) -> int:
    """The lake's newest table version (0: just created, nothing landed)."""
    return open_table(lake).version()


def app_id(topic: str, partition: int) -> str:
    """The app transaction id holding one Kafka partition's next offset (kafka-delta-ingest style)."""
    return f"shoppulse-drain:{topic}:{partition}"


def offsets_in(table: DeltaTable, topic: str, partitions: list[int] | None = None) -> dict[int, int]:
    """Next offset per partition recorded in `table`'s snapshot (partitions never committed are absent).

    Without `partitions`, ids 0, 1, 2, ... are probed until 16 in a row have none (a topic has
    contiguous partition numbers; a drain records every partition of its shard in each commit, and
    shards own partitions p % N == i, so shards that never committed leave gaps shorter than N).
    """
    found: dict[int, int] = {}
    if partitions is not None:
        for p in partitions:
            version = table.transaction_version(app_id(topic, p))
            if version is not None:
                found[p] = int(version)
        return found
    misses, p = 0, 0
    while misses < 16:
        version = table.transaction_version(app_id(topic, p))
        if version is None:
            misses += 1
        else:
            misses = 0
            found[p] = int(version)
        p += 1
    return found


def committed_offsets(lake: LakeRef, topic: str, partitions: list[int] | None = None) -> dict[int, int]:
    """Kafka partition -> next offset the lake holds, read from the Delta log's app transactions."""
    return offsets_in(open_table(lake), topic, partitions)


def read_log_entry(lake: LakeRef, version: int) -> list[dict[str, Any]]:
    """The actions of commit `version` (its ``_delta_log`` JSON file; commits are immutable, so each is
    read once per process).

    Raises LakeLogUnavailableError when the file was cleaned up (only a checkpoint covers it now).
    """
    return list(_log_entry(lake_uri(lake), version))


@functools.lru_cache(maxsize=8192)
def _log_entry(uri: str, version: int) -> tuple[dict[str, Any], ...]:
    fs, root = arrow_filesystem(uri)
    path = f"{root}/_delta_log/{version:020d}.json"
    try:
        with fs.open_input_stream(path) as stream:
            raw = stream.read()
    except FileNotFoundError as exc:
        raise LakeLogUnavailableError(f"Delta log entry {version} of {uri} is gone") from exc
    except OSError as exc:  # S3 reports a missing key as a generic OSError
        if "NoSuchKey" in str(exc) or "Path does not exist" in str(exc) or "not found" in str(exc).lower():
            raise LakeLogUnavailableError(f"Delta log entry {version} of {uri} is gone") from exc
        raise
    return tuple(json.loads(line) for line in raw.decode().splitlines() if line.strip())


def oldest_log_version(lake: LakeRef) -> int:
    """The oldest commit whose ``_delta_log`` JSON is still there (older ones were cleaned up)."""
    fs, root = arrow_filesystem(lake)
    infos = fs.get_file_info(pafs.FileSelector(f"{root}/_delta_log", allow_not_found=True))
    stems = [Path(info.path).stem for info in infos if info.path.endswith(".json")]
    versions = [int(stem) for stem in stems if stem.isdigit()]
    return min(versions, default=0)


@dataclass(frozen=True)
class AddedFile:
    """A file a commit added, with its partition and row count (from the add action's stats)."""

    version: int
    path: str
    kind: str
    date: str
    rows: int
    data_change: bool


def commits_between(lake: LakeRef, after_version: int, until_version: int) -> Iterator[tuple[int, list[dict]]]:
    """(version, actions) of every commit in (after_version, until_version]."""
    for version in range(after_version + 1, until_version + 1):
        yield version, read_log_entry(lake, version)


def added_files(version: int, actions: list[dict]) -> list[AddedFile]:
    files = []
    for action in actions:
        add = action.get("add")
        if add is None:
            continue
        stats = json.loads(add.get("stats") or "{}")
        values = add.get("partitionValues", {})
        files.append(
            AddedFile(
                version=version,
                path=add["path"],
                kind=values.get(KIND_COLUMN, ""),
                date=values.get(DATE_COLUMN, ""),
                rows=int(stats.get("numRecords", 0)),
                data_change=bool(add.get("dataChange", True)),
            )
        )
    return files


def commit_info(actions: list[dict]) -> dict[str, Any]:
    for action in actions:
        if "commitInfo" in action:
            return action["commitInfo"]
    return {}


def data_file_uri(lake: LakeRef, relative: str) -> str:
    """Absolute URI of a file named by a log action (paths in the log are relative to the table root)."""
    from urllib.parse import unquote

    if "://" in relative:
        return relative
    return f"{lake_uri(lake)}/{unquote(relative)}"


def events_added(lake: LakeRef, day: Any, after_version: int, until_version: int) -> list[str]:
    """Files that data-changing commits in (after_version, until_version] added to day `day`'s events.

    Optimize rewrites (``dataChange: false``) are not additions. The URIs are readable by Polars with
    `polars_storage_options(lake)`, as long as `vacuum` has not removed them (a file later compacted
    away is kept for VACUUM_RETENTION_HOURS). Raises LakeLogUnavailableError if part of the range's log is
    gone: the caller must recompute the day in full.
    """
    wanted = day.isoformat() if hasattr(day, "isoformat") else str(day)
    uris = []
    for version, actions in commits_between(lake, after_version, until_version):
        for added in added_files(version, actions):
            if added.data_change and added.kind == "events" and added.date == wanted:
                uris.append(data_file_uri(lake, added.path))
    return uris
