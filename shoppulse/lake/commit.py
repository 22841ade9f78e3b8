"""Atomic, recoverable commits to the lake: the write-ahead commit log.

A commit is made in four steps, the third being the commit point:

1. write the new Parquet files under ``_staging/<seq>/`` and fsync them;
2. write the commit record (offsets after this commit, files added/removed) to a temp file, fsync;
3. link it to ``_log/<seq>.json`` — ``link`` fails if the name exists, so one writer wins a sequence
   number — and fsync the log directory;
4. apply: move staged files into their partitions, rewrite each touched partition's manifest,
   advance ``_log/_applied``.

A crash before step 3 leaves only staging debris, removed on recovery (the offsets were never
recorded, so the same messages are read again). A crash after it is rolled forward by
:func:`recover`, which re-applies every logged commit newer than ``_applied`` (applying is
idempotent). The Kafka offsets in the newest record are therefore exactly what the lake holds.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from shoppulse.lake.layout import LakeTable, fsync_dir, partition_dir, read_manifest, write_manifest

LOG_DIR = "_log"
STAGING_DIR = "_staging"
APPLIED = "_applied"
LOCK = "_lock"
KEEP_LOG_RECORDS = 20_000


class LakeBusyError(RuntimeError):
    """Another writer holds the lake lock (e.g. a timed-out sensor tick still draining)."""


class CommitConflictError(RuntimeError):
    """A commit record with this sequence number already exists: another writer committed first."""


@dataclass(frozen=True)
class FileRef:
    """One data file of a partition."""

    table: LakeTable
    date: dt.date
    name: str
    rows: int = 0
    size: int = 0

    def to_json(self) -> dict[str, object]:
        return {
            "table": self.table.value,
            "date": self.date.isoformat(),
            "file": self.name,
            "rows": self.rows,
            "bytes": self.size,
        }

    @staticmethod
    def from_json(data: dict) -> FileRef:
        return FileRef(
            LakeTable(data["table"]),
            dt.date.fromisoformat(data["date"]),
            data["file"],
            int(data.get("rows", 0)),
            int(data.get("bytes", 0)),
        )


@dataclass
class CommitRecord:
    """What one commit changed. `offsets` is cumulative: next offset per topic partition after it."""

    seq: int
    kind: str  # "append" | "compact"
    offsets: dict[str, dict[str, int]] = field(default_factory=dict)
    ranges: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    adds: list[FileRef] = field(default_factory=list)
    removes: list[FileRef] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    created_at: str = ""

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "seq": self.seq,
                "kind": self.kind,
                "created_at": self.created_at,
                "offsets": self.offsets,
                "ranges": self.ranges,
                "adds": [ref.to_json() for ref in self.adds],
                "removes": [ref.to_json() for ref in self.removes],
                "counts": self.counts,
            },
            sort_keys=True,
        ).encode()

    @staticmethod
    def from_json(raw: bytes) -> CommitRecord:
        data = json.loads(raw)
        return CommitRecord(
            seq=int(data["seq"]),
            kind=data["kind"],
            offsets={topic: {p: int(o) for p, o in parts.items()} for topic, parts in data["offsets"].items()},
            ranges=data.get("ranges", {}),
            adds=[FileRef.from_json(ref) for ref in data.get("adds", [])],
            removes=[FileRef.from_json(ref) for ref in data.get("removes", [])],
            counts=data.get("counts", {}),
            created_at=data.get("created_at", ""),
        )

    def touched(self) -> set[tuple[LakeTable, dt.date]]:
        return {(ref.table, ref.date) for ref in [*self.adds, *self.removes]}


def _log_path(lake_dir: Path, seq: int) -> Path:
    return lake_dir / LOG_DIR / f"{seq:020d}.json"


def _write_durably(path: Path, payload: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(payload)
        handle.flush()
        os.fsync(handle.fileno())


def read_applied(lake_dir: Path) -> int:
    """Sequence number of the newest commit fully applied (0 for an empty lake)."""
    try:
        return int((lake_dir / LOG_DIR / APPLIED).read_text().strip())
    except (FileNotFoundError, ValueError):
        return 0


def latest_seq(lake_dir: Path) -> int:
    """Sequence number of the newest commit record (applied or not)."""
    seq = read_applied(lake_dir)
    while _log_path(lake_dir, seq + 1).exists():
        seq += 1
    return seq


def read_commit(lake_dir: Path, seq: int) -> CommitRecord | None:
    try:
        return CommitRecord.from_json(_log_path(lake_dir, seq).read_bytes())
    except FileNotFoundError:
        return None


def committed_offsets(lake_dir: Path, topic: str) -> dict[int, int]:
    """Next offset to read per partition of `topic`: what the newest commit says the lake holds."""
    seq = latest_seq(lake_dir)
    while seq > 0:
        record = read_commit(lake_dir, seq)
        if record is not None:
            return {int(p): o for p, o in record.offsets.get(topic, {}).items()}
        seq -= 1  # pruned or missing record: fall back to an older one (never happens in normal operation)
    return {}


def commits_since(lake_dir: Path, after_seq: int, until_seq: int | None = None) -> Iterator[CommitRecord]:
    """Commit records with after_seq < seq <= until_seq (default: the newest applied)."""
    last = read_applied(lake_dir) if until_seq is None else until_seq
    for seq in range(after_seq + 1, last + 1):
        record = read_commit(lake_dir, seq)
        if record is not None:
            yield record


@contextlib.contextmanager
def lake_lock(lake_dir: Path, wait_seconds: float = 0.0) -> Iterator[None]:
    """Exclusive writer lock on the lake (flock; released if the process dies).

    Raises LakeBusyError when another writer holds it for longer than `wait_seconds`.
    """
    lake_dir.mkdir(parents=True, exist_ok=True)
    handle = open(lake_dir / LOCK, "a+")  # noqa: SIM115 - held for the duration of the context
    deadline = time.monotonic() + wait_seconds
    try:
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LakeBusyError(f"lake {lake_dir} is locked by another writer") from None
                time.sleep(0.05)
        yield
    finally:
        handle.close()


class Stage:
    """Files being prepared for commit `seq` (under ``_staging/<seq>/``)."""

    def __init__(self, lake_dir: Path, seq: int) -> None:
        self.lake_dir = lake_dir
        self.seq = seq
        self.root = staging_root(lake_dir, seq)
        self.files: list[FileRef] = []

    def path_for(self, table: LakeTable, date: dt.date, name: str) -> Path:
        path = self.root / table.value / date.isoformat() / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def add(self, ref: FileRef) -> None:
        """Register a file already written (and fsynced) at `path_for(ref.table, ref.date, ref.name)`."""
        self.files.append(ref)

    def discard(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def staging_root(lake_dir: Path, seq: int) -> Path:
    return lake_dir / STAGING_DIR / str(seq)


def commit(lake_dir: Path, stage: Stage, record: CommitRecord) -> CommitRecord:
    """Make `record` (with `stage`'s files as its adds) durable, then apply it. Caller holds the lock."""
    if record.seq != stage.seq:
        raise ValueError(f"record {record.seq} does not match stage {stage.seq}")
    record.adds = list(stage.files)
    record.created_at = record.created_at or dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
    log_dir = lake_dir / LOG_DIR
    log_dir.mkdir(parents=True, exist_ok=True)
    for directory in {stage.path_for(ref.table, ref.date, ref.name).parent for ref in stage.files}:
        fsync_dir(directory)
    tmp = log_dir / f".{record.seq}.{uuid.uuid4().hex}.tmp"
    _write_durably(tmp, record.to_json())
    try:
        os.link(tmp, _log_path(lake_dir, record.seq))  # the commit point
    except FileExistsError:
        tmp.unlink(missing_ok=True)
        raise CommitConflictError(f"commit {record.seq} already exists in {lake_dir}") from None
    tmp.unlink()
    fsync_dir(log_dir)
    apply(lake_dir, record)
    return record


def apply(lake_dir: Path, record: CommitRecord) -> None:
    """Move the commit's staged files into place and update manifests. Idempotent."""
    root = staging_root(lake_dir, record.seq)
    for ref in record.adds:
        final = partition_dir(lake_dir, ref.table, ref.date) / ref.name
        if final.exists():
            continue
        source = root / ref.table.value / ref.date.isoformat() / ref.name
        final.parent.mkdir(parents=True, exist_ok=True)
        source.replace(final)  # FileNotFoundError here means the lake lost a committed file
    for table, date in sorted(record.touched()):
        manifest = read_manifest(lake_dir, table, date)
        if int(manifest["version"]) >= record.seq:
            continue
        files = dict(manifest["files"])
        for ref in record.removes:
            if (ref.table, ref.date) == (table, date) and files.pop(ref.name, None) is not None:
                # Start the removed file's grace period now: `vacuum` deletes it only later.
                with contextlib.suppress(FileNotFoundError):
                    os.utime(partition_dir(lake_dir, table, date) / ref.name)
        for ref in record.adds:
            if (ref.table, ref.date) == (table, date):
                files[ref.name] = {"rows": ref.rows, "bytes": ref.size}
        fsync_dir(partition_dir(lake_dir, table, date))
        write_manifest(lake_dir, table, date, record.seq, files)
    applied = lake_dir / LOG_DIR / APPLIED
    tmp = applied.with_name(f".{APPLIED}.tmp")
    _write_durably(tmp, f"{record.seq}\n".encode())
    tmp.replace(applied)
    fsync_dir(applied.parent)
    shutil.rmtree(root, ignore_errors=True)


def recover(lake_dir: Path) -> int:
    """Roll forward logged-but-unapplied commits, then drop all other staging. Caller holds the lock.

    Returns the newest sequence number.
    """
    seq = read_applied(lake_dir)
    while (record := read_commit(lake_dir, seq + 1)) is not None:
        apply(lake_dir, record)
        seq += 1
    shutil.rmtree(lake_dir / STAGING_DIR, ignore_errors=True)  # only uncommitted attempts remain there
    if (lake_dir / LOG_DIR).exists():
        for tmp in (lake_dir / LOG_DIR).glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
    return seq


def prune_log(lake_dir: Path, keep: int = KEEP_LOG_RECORDS) -> int:
    """Delete commit records older than the newest `keep` (offsets are cumulative). Returns how many."""
    applied = read_applied(lake_dir)
    removed = 0
    seq = applied - keep
    while seq > 0 and _log_path(lake_dir, seq).exists():
        _log_path(lake_dir, seq).unlink()
        removed += 1
        seq -= 1
    return removed


def vacuum(lake_dir: Path, table: LakeTable, date: dt.date, grace_seconds: float) -> list[str]:
    """Delete files a partition's manifest no longer lists, once their grace period has passed.

    Compaction's inputs stay readable that long for readers still holding the previous manifest
    (``apply`` sets a removed file's mtime to its removal time).
    """
    base = partition_dir(lake_dir, table, date)
    if not base.exists():
        return []
    live = set(read_manifest(lake_dir, table, date)["files"])
    now = time.time()
    removed = []
    for entry in base.glob("*.parquet"):
        if entry.name not in live and now - entry.stat().st_mtime > grace_seconds:
            entry.unlink(missing_ok=True)
            removed.append(entry.name)
    return removed
