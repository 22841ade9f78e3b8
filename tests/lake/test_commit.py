"""The commit log: crashes at each step leave the lake either without the commit or with all of it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from shoppulse.lake import commit as log
from shoppulse.lake.compaction import compact_one, plan, vacuum_due
from shoppulse.lake.layout import LakeTable, partition_dir, read_partition
from shoppulse.lake.writer import append_events

DAY = dt.date(2026, 11, 20)
OTHER_DAY = dt.date(2026, 11, 18)


def stage_two_days(lake: Path, seq: int, rows: int = 3) -> tuple[log.Stage, log.CommitRecord]:
    stage = log.Stage(lake, seq)
    for day in (DAY, OTHER_DAY):
        name = f"{seq:012d}-0000.parquet"
        path = stage.path_for(LakeTable.EVENTS, day, name)
        pl.DataFrame({"x": list(range(rows))}).write_parquet(path)
        stage.add(log.FileRef(LakeTable.EVENTS, day, name, rows=rows, size=path.stat().st_size))
    record = log.CommitRecord(seq=seq, kind="append", offsets={"t": {"0": seq * 10}})
    return stage, record


def test_commit_applies_files_manifests_and_offsets(tmp_path: Path) -> None:
    stage, record = stage_two_days(tmp_path, 1)
    log.commit(tmp_path, stage, record)
    for day in (DAY, OTHER_DAY):
        snap = read_partition(tmp_path, LakeTable.EVENTS, day)
        assert snap.version == 1 and snap.rows == 3 and all(f.exists() for f in snap.files)
    assert log.committed_offsets(tmp_path, "t") == {0: 10}
    assert not (tmp_path / log.STAGING_DIR / "1").exists()


def test_crash_before_the_commit_point_leaves_nothing(tmp_path: Path) -> None:
    stage, _ = stage_two_days(tmp_path, 1)  # files staged, no log record: the process "died" here
    assert log.recover(tmp_path) == 0
    assert read_partition(tmp_path, LakeTable.EVENTS, DAY).rows == 0
    assert log.committed_offsets(tmp_path, "t") == {}
    assert not stage.root.exists()


def test_crash_after_the_commit_point_is_rolled_forward(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stage, record = stage_two_days(tmp_path, 1)
    real_write_manifest = log.write_manifest
    calls = {"n": 0}

    def die_after_first_manifest(*args: object, **kwargs: object) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("simulated crash between two manifest writes")
        real_write_manifest(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(log, "write_manifest", die_after_first_manifest)
    with pytest.raises(OSError, match="simulated crash"):
        log.commit(tmp_path, stage, record)
    monkeypatch.setattr(log, "write_manifest", real_write_manifest)
    # Half applied: one day visible, the other not, `_applied` not advanced.
    assert log.read_applied(tmp_path) == 0
    assert log.recover(tmp_path) == 1
    for day in (DAY, OTHER_DAY):
        assert read_partition(tmp_path, LakeTable.EVENTS, day).rows == 3
    assert log.read_applied(tmp_path) == 1
    assert log.recover(tmp_path) == 1  # idempotent


def test_a_sequence_number_can_be_committed_once(tmp_path: Path) -> None:
    stage, record = stage_two_days(tmp_path, 1)
    log.commit(tmp_path, stage, record)
    stage2, record2 = stage_two_days(tmp_path, 1)
    with pytest.raises(log.CommitConflictError):
        log.commit(tmp_path, stage2, record2)
    assert read_partition(tmp_path, LakeTable.EVENTS, DAY).rows == 3


def test_lock_excludes_a_second_writer(tmp_path: Path) -> None:
    with log.lake_lock(tmp_path), pytest.raises(log.LakeBusyError), log.lake_lock(tmp_path):
        pass
    with log.lake_lock(tmp_path):  # released
        pass


def _events(n: int, day: dt.date, offset: int) -> pl.DataFrame:
    from shoppulse.contract.schema import LAKE_SCHEMA

    ts = dt.datetime.combine(day, dt.time(12), tzinfo=dt.UTC)
    data = {name: [None] * n for name in LAKE_SCHEMA}
    data.update(
        event_id=[f"00000000-0000-4000-8000-{offset + i:012d}" for i in range(n)],
        event_type=["page_view"] * n,
        event_ts=[ts] * n,
        kafka_partition=[0] * n,
        kafka_offset=list(range(offset, offset + n)),
        kafka_ts=[ts] * n,
        event_date=[day] * n,
    )
    return pl.DataFrame(data, schema=LAKE_SCHEMA)


def test_compaction_merges_small_files_and_readers_see_the_same_rows(tmp_path: Path) -> None:
    for i in range(12):
        append_events(tmp_path, _events(10, DAY, offset=i * 10))
    before = read_partition(tmp_path, LakeTable.EVENTS, DAY)
    assert len(before.files) == 12
    rows_before = pl.read_parquet(before.paths).sort("kafka_offset")
    assert plan(tmp_path, LakeTable.EVENTS, DAY, min_files=10, max_rows=1_000_000)
    with log.lake_lock(tmp_path):
        compacted = compact_one(tmp_path, 10, 1_000_000, grace_seconds=3600, candidates=[(LakeTable.EVENTS, DAY)])
    assert compacted == [f"events/{DAY}"]
    after = read_partition(tmp_path, LakeTable.EVENTS, DAY)
    assert len(after.files) == 1 and after.rows == 120
    assert pl.read_parquet(after.paths).sort("kafka_offset").equals(rows_before)
    # A reader that listed the old manifest can still read its files during the grace period ...
    assert all(path.exists() for path in before.files)
    assert vacuum_due(tmp_path, grace_seconds=3600) == []
    # ... and they are deleted once it has passed.
    assert vacuum_due(tmp_path, grace_seconds=0) == [f"events/{DAY}"]
    assert not any(path.exists() for path in before.files)
    assert sorted(p.name for p in partition_dir(tmp_path, LakeTable.EVENTS, DAY).glob("*.parquet")) == [
        after.files[0].name
    ]
