"""A lake of the old commit log (manifests + `_log/`) is adopted by the Delta table once, in place."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl

from shoppulse.lake import committed_offsets, table_version
from shoppulse.lake.layout import LakeTable, partition_dates, read_partition
from shoppulse.lake.legacy import import_legacy
from tests.lake.test_commit import _events

DAY = dt.date(2026, 11, 20)


def old_lake(root: Path) -> None:
    """The layout the commit log left: two live files and one compacted away, a quarantine file, offsets."""
    part = root / "events" / f"event_date={DAY}"
    part.mkdir(parents=True)
    _events(3, DAY, 0).write_parquet(part / "000000000001-0000.parquet")
    _events(2, DAY, 3).write_parquet(part / "000000000002-0000.parquet")
    _events(5, DAY, 0).write_parquet(part / "000000000003-c.parquet")  # not in the manifest: dropped
    (part / "_manifest.json").write_text(
        json.dumps(
            {
                "version": 2,
                "files": {"000000000001-0000.parquet": {"rows": 3}, "000000000002-0000.parquet": {"rows": 2}},
            }
        )
    )
    quarantine = root / "quarantine" / f"received_date={DAY}"
    quarantine.mkdir(parents=True)
    pl.DataFrame({"reason_code": ["empty"], "kafka_partition": [1], "kafka_offset": [0]}).write_parquet(
        quarantine / "000000000002-0000.parquet"
    )
    (quarantine / "_manifest.json").write_text(
        json.dumps({"version": 2, "files": {"000000000002-0000.parquet": {"rows": 1}}})
    )
    log = root / "_log"
    log.mkdir()
    (log / f"{1:020d}.json").write_text(json.dumps({"seq": 1, "offsets": {"shop.events": {"0": 3}}}))
    (log / f"{2:020d}.json").write_text(json.dumps({"seq": 2, "offsets": {"shop.events": {"0": 5, "1": 1}}}))
    (log / "_applied").write_text("2\n")


def test_import_adopts_the_manifests_files_and_offsets_once(tmp_path: Path) -> None:
    old_lake(tmp_path)
    assert import_legacy(tmp_path) == 1
    snap = read_partition(tmp_path, LakeTable.EVENTS, DAY)
    assert [Path(f).name for f in snap.files] == ["000000000001-0000.parquet", "000000000002-0000.parquet"]
    assert snap.rows == 5
    assert pl.read_parquet(snap.paths)["kafka_offset"].to_list() == [0, 1, 2, 3, 4]
    assert read_partition(tmp_path, LakeTable.QUARANTINE, DAY).rows == 1
    assert partition_dates(tmp_path, LakeTable.LATE) == []
    assert committed_offsets(tmp_path, "shop.events") == {0: 5, 1: 1}
    assert import_legacy(tmp_path) is None  # once
    assert table_version(tmp_path) == 1
