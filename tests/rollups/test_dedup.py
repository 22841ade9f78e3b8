"""The one deduplication rule: each (event_date, event_id) once, the first-delivered copy wins."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import polars as pl

from shoppulse.contract.schema import LAKE_SCHEMA
from shoppulse.lake.layout import LakeTable, PartitionSnapshot, read_partition
from shoppulse.lake.writer import append_events
from shoppulse.rollups.dedup import first_copies, later_copies
from shoppulse.rollups.source import (
    ACTIVITY_COLUMNS,
    later_copies_across,
    load_day,
    order_lines_of_rows,
    scan_partition,
)
from tests.rollups.scenario import D1, at, event, frame, line, order


def _copies() -> pl.DataFrame:
    first = event("page_view", at(D1, "10:00:00"), "u1", "s1", event_id="e-1", country="US", kafka_partition=2)
    same_ts_lower_partition = {**first, "country": "FR", "kafka_partition": 1, "kafka_offset": 99}
    later = {**first, "country": "CA", "kafka_ts": first["kafka_ts"] + dt.timedelta(seconds=5), "kafka_offset": 1}
    other = event("page_view", at(D1, "11:00:00"), "u2", "s2", event_id="e-2")
    return frame([later, first, other, same_ts_lower_partition])


def test_smallest_kafka_ts_then_partition_then_offset_wins() -> None:
    kept = first_copies(_copies())
    assert kept.height == 2
    winner = kept.filter(pl.col("event_id") == "e-1").row(0, named=True)
    # same kafka_ts as the US copy, lower Kafka partition: FR wins; CA came later
    assert winner["country"] == "FR"


def test_result_does_not_depend_on_row_order() -> None:
    rows = _copies()
    forward = first_copies(rows).sort("event_id")
    backward = first_copies(rows.reverse()).sort("event_id")
    assert forward.equals(backward)


def test_no_copies_returns_the_frame_untouched() -> None:
    rows = _copies().filter(pl.col("country") != "CA").filter(pl.col("country") != "FR")
    assert first_copies(rows).equals(rows)


def test_same_id_on_two_days_counts_once_per_day() -> None:
    a = event("page_view", at(D1, "23:59:59"), "u1", "s1", event_id="e-9")
    b = event("page_view", at(D1 + dt.timedelta(days=1), "00:00:01"), "u1", "s1", event_id="e-9")
    assert first_copies(frame([a, b])).height == 2


def test_copies_in_separate_lake_commits_are_deduplicated_on_read(tmp_path: Path) -> None:
    rows = _copies()
    append_events(tmp_path, rows.head(2))
    append_events(tmp_path, rows.tail(2))
    day = load_day(tmp_path, D1)
    assert day.events.height == 2
    assert day.copies_dropped == 2
    assert day.events.filter(pl.col("event_id") == "e-1")["country"].to_list() == ["FR"]


def test_money_columns_come_from_the_same_copy_as_the_rest_of_the_row(tmp_path: Path) -> None:
    """load_day decodes the money columns separately and joins them back by row number: each sales row
    must be one delivered copy, whole (here the copies disagree on country, shipping and lines)."""
    placed = order("order_placed", at(D1, "10:04:00"), "u1", "s1", "o1", "USD", [line("p1", "shoes", 2, 500)], 50, 0)
    placed |= {"event_id": "o-1", "country": "US"}
    late_copy = placed | {
        "country": "CA",
        "shipping": 999,
        "items": [line("p9", "toys", 1, 7)],
        "kafka_ts": placed["kafka_ts"] + dt.timedelta(seconds=30),
        "kafka_offset": placed["kafka_offset"] + 1,
    }
    views = [event("page_view", at(D1, f"09:0{i}:00"), f"u{i}", f"s{i}", event_id=f"v-{i}") for i in range(5)]
    cancelled_other = order(
        "order_cancelled", at(D1, "11:00:00"), "u2", "s2", "o2", "EUR", [line("p2", "hats", 1, 300)], 0, 0
    )
    append_events(tmp_path, frame([*views[:3], late_copy, cancelled_other]))
    append_events(tmp_path, frame([*views[3:], placed]))

    sales = load_day(tmp_path, D1).sales.sort("event_id")

    assert sales.height == 2
    kept = sales.filter(pl.col("event_type") == "order_placed").row(0, named=True)
    assert (kept["country"], kept["shipping"], kept["items"][0]["product_id"]) == ("US", 50, "p1")
    cancelled = sales.filter(pl.col("event_type") == "order_cancelled").row(0, named=True)
    assert (cancelled["currency"], cancelled["user_id"], cancelled["subtotal"]) == ("EUR", "u2", 300)


def test_order_lines_come_from_their_own_rows_across_files_and_older_files(tmp_path: Path) -> None:
    """The money read takes `items` by row number across the partition's files; a file written before
    the column existed gives its rows no order lines."""
    lines = pl.Series("items", [[line("p1", "c", 1, 100)], None, [line("p3", "c", 3, 300)]], dtype=LAKE_SCHEMA["items"])
    with_items = pl.DataFrame({"n": [0, 1, 2]}).with_columns(lines)
    older = pl.DataFrame({"n": [3, 4]})  # no items column at all
    paths = [tmp_path / "a.parquet", tmp_path / "b.parquet"]
    with_items.write_parquet(paths[0])
    older.write_parquet(paths[1])
    snapshot = PartitionSnapshot(LakeTable.EVENTS, D1, version=1, files=tuple(paths), rows=5)
    picked = order_lines_of_rows(snapshot, pl.Series([2, 0, 3], dtype=pl.UInt32))
    assert picked.dtype == LAKE_SCHEMA["items"]
    assert [None if v is None else [i["product_id"] for i in v] for v in picked.to_list()] == [["p3"], ["p1"], None]
    assert order_lines_of_rows(snapshot, pl.Series([], dtype=pl.UInt32)).dtype == LAKE_SCHEMA["items"]


def test_copies_that_lose_across_files_are_the_ones_the_whole_day_drops(tmp_path: Path) -> None:
    """`later_copies_across` (bounded memory, file by file) drops exactly the rows `later_copies` drops
    over the whole day read at once, including copies whose winner is in another file, in either order."""
    rng = random.Random(5)
    rows = []
    for number in range(400):
        row = event("page_view", at(D1, "10:00:00"), "u1", "s1", event_id=f"e-{number % 150}")
        row["kafka_ts"] += dt.timedelta(seconds=rng.randrange(0, 3))
        row["kafka_partition"], row["kafka_offset"] = rng.randrange(3), rng.randrange(1_000)
        rows.append(row)
    lake = tmp_path / "lake"
    for start in range(0, len(rows), 37):  # 11 commits: copies and their winners in different files
        append_events(lake, frame(rows[start : start + 37]))
    snapshot = read_partition(lake, LakeTable.EVENTS, D1)
    assert len(snapshot.files) == 11 and snapshot.file_rows == (37,) * 10 + (30,)
    whole = scan_partition(snapshot, ACTIVITY_COLUMNS).collect()
    expected = later_copies(whole)
    assert expected.len() == 250
    assert later_copies_across(snapshot).to_list() == expected.sort().to_list()
