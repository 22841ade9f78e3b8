"""The lake's Delta commits: all of a commit or none of it, stale offsets refused, optimize and vacuum."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import polars as pl
import pytest

from shoppulse.contract.schema import LAKE_SCHEMA
from shoppulse.lake import LakeLogUnavailableError, committed_offsets, events_added, table_version
from shoppulse.lake.compaction import compact_one, compaction_target, vacuum
from shoppulse.lake.drain import DrainConfig
from shoppulse.lake.layout import LakeTable, partition_dates, read_partition
from shoppulse.lake.table import _log_entry, open_table
from shoppulse.lake.writer import StaleOffsetsError, append_events, commit_files, write_file

DAY = dt.date(2026, 11, 20)
OTHER_DAY = dt.date(2026, 11, 18)


def _events(n: int, day: dt.date, offset: int) -> pl.DataFrame:
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


def _rows(lake: Path, day: dt.date, version: int | None = None) -> pl.DataFrame:
    snap = read_partition(lake, LakeTable.EVENTS, day, version)
    return pl.read_parquet(snap.paths, columns=["kafka_offset"]).sort("kafka_offset") if snap.files else pl.DataFrame()


def test_one_commit_lands_files_of_several_partitions_and_the_offsets(tmp_path: Path) -> None:
    table = open_table(tmp_path)
    adds = [write_file(tmp_path, LakeTable.EVENTS, day, _events(3, day, 0)) for day in (DAY, OTHER_DAY)]
    adds.append(write_file(tmp_path, LakeTable.QUARANTINE, DAY, pl.DataFrame({"reason_code": ["empty"]})))
    version = commit_files(table, adds, offsets={("t", 0): 10, ("t", 1): 4})
    assert version == table_version(tmp_path) == 1
    for day in (DAY, OTHER_DAY):
        snap = read_partition(tmp_path, LakeTable.EVENTS, day)
        assert snap.version == 1 and snap.rows == 3 and all(Path(f).exists() for f in snap.files)
    assert read_partition(tmp_path, LakeTable.QUARANTINE, DAY).rows == 1
    assert committed_offsets(tmp_path, "t") == {0: 10, 1: 4}
    assert committed_offsets(tmp_path, "other") == {}


def test_files_written_but_never_committed_are_invisible(tmp_path: Path) -> None:
    open_table(tmp_path)
    orphan = write_file(tmp_path, LakeTable.EVENTS, DAY, _events(3, DAY, 0))  # the writer "died" here
    assert (tmp_path / orphan.path).exists()
    assert read_partition(tmp_path, LakeTable.EVENTS, DAY).rows == 0
    assert partition_dates(tmp_path, LakeTable.EVENTS) == []
    assert committed_offsets(tmp_path, "t") == {}
    assert vacuum(tmp_path, retention_hours=0) != []  # vacuum deletes such orphans once they are old enough
    assert not (tmp_path / orphan.path).exists()


def test_a_writer_with_stale_offsets_cannot_commit(tmp_path: Path) -> None:
    open_table(tmp_path)
    zombie = open_table(tmp_path)  # read offsets {} at version 0 ...
    current = open_table(tmp_path)
    commit_files(current, [write_file(tmp_path, LakeTable.EVENTS, DAY, _events(5, DAY, 0))], offsets={("t", 0): 5})
    # ... and tries to land the same range after another writer did: refused, nothing lands.
    with pytest.raises(StaleOffsetsError):
        commit_files(zombie, [write_file(tmp_path, LakeTable.EVENTS, DAY, _events(5, DAY, 0))], offsets={("t", 0): 5})
    assert committed_offsets(tmp_path, "t") == {0: 5}
    assert _rows(tmp_path, DAY)["kafka_offset"].to_list() == [0, 1, 2, 3, 4]
    assert table_version(tmp_path) == 1


def test_writers_of_disjoint_partitions_commit_concurrently(tmp_path: Path) -> None:
    open_table(tmp_path)
    shard_a, shard_b = open_table(tmp_path), open_table(tmp_path)  # same snapshot, different partitions
    commit_files(shard_a, [write_file(tmp_path, LakeTable.EVENTS, DAY, _events(2, DAY, 0))], offsets={("t", 0): 2})
    commit_files(shard_b, [write_file(tmp_path, LakeTable.EVENTS, DAY, _events(3, DAY, 100))], offsets={("t", 1): 3})
    assert committed_offsets(tmp_path, "t") == {0: 2, 1: 3}
    assert read_partition(tmp_path, LakeTable.EVENTS, DAY).rows == 5


def test_optimize_merges_files_pinned_versions_stay_readable_until_vacuum(tmp_path: Path) -> None:
    for i in range(12):
        append_events(tmp_path, _events(10, DAY, offset=i * 10))
    before = read_partition(tmp_path, LakeTable.EVENTS, DAY)
    assert len(before.files) == 12 and before.version == 12
    rows_before = _rows(tmp_path, DAY)
    assert compact_one(tmp_path, 10, [(LakeTable.EVENTS, DAY)]) == [f"events/{DAY}"]
    after = read_partition(tmp_path, LakeTable.EVENTS, DAY)
    assert len(after.files) == 1 and after.rows == 120 and after.version == 13
    assert _rows(tmp_path, DAY).equals(rows_before)
    # The optimize commit changed no data: no file of it counts as added events.
    assert events_added(tmp_path, DAY, 12, 13) == []
    assert len(events_added(tmp_path, DAY, 0, 13)) == 12
    # A reader pinned to version 12 still reads its files during the retention ...
    assert _rows(tmp_path, DAY, version=12).equals(rows_before)
    assert vacuum(tmp_path) == []
    # ... and they are deleted once it has passed.
    assert len(vacuum(tmp_path, retention_hours=0)) == 12
    assert not any(Path(path).exists() for path in before.files)
    assert _rows(tmp_path, DAY).equals(rows_before)


@pytest.mark.parametrize(
    ("sizes", "expected"),
    [
        ([5] * 12, 100),  # all small files fit the budget: the usual target
        ([5] * 3, None),  # too few to be worth a commit
        ([5] * 10 + [40] * 4, 39),  # a backlog's big files stay out: only the small ones, under 40
        ([5] * 10 + [7] * 10 + [60], 6),  # the budget (60) stops among the 7s: none of them, all the 5s
        ([70] * 20, None),  # no file fits the budget at all
        ([5] * 12 + [150], 100),  # files over the target are never rewritten
    ],
)
def test_a_compaction_rewrites_at_most_its_budget(sizes: list[int], expected: int | None) -> None:
    target = compaction_target(sizes, min_files=10, target_bytes=100, max_bytes=60)
    assert target == expected
    if target is not None and target < 100:  # bounded: what it rewrites fits the budget
        assert sum(size for size in sizes if size <= target) <= 60


def test_after_a_backlog_only_the_small_files_are_compacted(tmp_path: Path) -> None:
    """Drains of a backlog write big files; a compaction must not rewrite them all in one drain tick."""
    for i in range(3):
        append_events(tmp_path, _events(200_000, DAY, offset=i * 200_000))  # a backlog's drains
    for i in range(12):
        append_events(tmp_path, _events(5, DAY, offset=700_000 + i * 5))  # live drains
    before = read_partition(tmp_path, LakeTable.EVENTS, DAY)
    sizes = sorted(Path(f).stat().st_size for f in before.files)
    big = set(sorted(before.files, key=lambda f: Path(f).stat().st_size)[-3:])
    budget = sum(sizes[:12]) + 1  # the live files, not one backlog file more
    assert budget < sizes[-3]
    assert compact_one(tmp_path, 10, [(LakeTable.EVENTS, DAY)], target_bytes=10 * sizes[-1], max_bytes=budget) == [
        f"events/{DAY}"
    ]
    after = read_partition(tmp_path, LakeTable.EVENTS, DAY)
    assert big <= set(after.files)  # the backlog's files are untouched
    assert len(after.files) == 4 and after.rows == before.rows == 600_060


def test_events_added_lists_the_data_files_of_a_version_range(tmp_path: Path) -> None:
    append_events(tmp_path, _events(3, DAY, 0))
    append_events(tmp_path, pl.concat([_events(2, DAY, 10), _events(4, OTHER_DAY, 20)]))
    assert table_version(tmp_path) == 2
    first, second = events_added(tmp_path, DAY, 0, 2)
    assert pl.read_parquet(first)["kafka_offset"].to_list() == [0, 1, 2]
    assert pl.read_parquet(second)["kafka_offset"].to_list() == [10, 11]
    assert events_added(tmp_path, DAY, 1, 2) == [second]
    assert [pl.read_parquet(f).height for f in events_added(tmp_path, OTHER_DAY, 0, 2)] == [4]
    assert events_added(tmp_path, DAY, 2, 2) == []
    # A process keeps the commits it read (they are immutable); one that never read them, when the log
    # of the range is gone, is told to recompute.
    shutil.move(tmp_path / "_delta_log" / f"{1:020d}.json", tmp_path / "moved.json")
    assert events_added(tmp_path, DAY, 0, 2) == [first, second]
    _log_entry.cache_clear()
    with pytest.raises(LakeLogUnavailableError):
        events_added(tmp_path, DAY, 0, 2)


def test_exactly_one_drain_of_a_sharded_set_compacts(tmp_path: Path) -> None:
    """delta-rs lets two optimize commits from one snapshot both land (the partition's rows then count
    twice: shown here), so only the unsharded drain or shard 0 of a set runs optimize and vacuum."""
    for i in range(4):
        append_events(tmp_path, _events(2, DAY, 10 * i))
    first, second = open_table(tmp_path), open_table(tmp_path)
    first.optimize.compact()
    second.optimize.compact()  # not refused, although the files it removes are gone
    rows = pl.concat([pl.read_parquet(f) for f in read_partition(tmp_path, LakeTable.EVENTS, DAY).paths])
    assert rows.height == 2 * rows["kafka_offset"].n_unique()  # why a second compactor must not exist

    def config(**shard: object) -> DrainConfig:
        return DrainConfig("127.0.0.1:1", "t", tmp_path, **shard)  # type: ignore[arg-type]

    assert config().compacts
    assert config(shard=(0, 3)).compacts
    assert not config(shard=(1, 3)).compacts and not config(shard=(2, 3)).compacts
    assert not config(partitions=(0, 1)).compacts
