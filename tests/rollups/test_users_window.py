"""The rolling distinct-user counts against brute force (sets), across days and separate encodings."""

from __future__ import annotations

import datetime as dt
import random

import numpy as np
import polars as pl
import pytest

from shoppulse.rollups import users
from shoppulse.rollups.users import RollingActiveUsers, UserCodes, sliding_distinct_counts

MINUTE = dt.timedelta(minutes=1)


def test_user_codes_are_stable_across_calls() -> None:
    codes = UserCodes()
    first = codes.encode(pl.Series(["a", "b", "a", "c"])).to_list()
    second = codes.encode(pl.Series(["c", "d", "a"])).to_list()
    assert first == [0, 1, 0, 2]
    assert second == [2, 3, 0]
    assert codes.decode(np.array([3, 1])).to_list() == ["d", "b"]


def test_user_codes_stay_exact_when_ids_share_a_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lookups join on a hash of the id; ids sharing one (forced here: every id hashes to 0) must still
    get their own codes."""
    monkeypatch.setattr(users, "_hashed", lambda frame: frame.with_columns(h=pl.lit(0, dtype=pl.UInt64)))
    codes = UserCodes(pl.Series(["x", "y"]))
    assert codes.encode(pl.Series(["a", "b", "a", "y"])).to_list() == [2, 3, 2, 1]
    assert codes.encode(pl.Series(["b", "x", "c"])).to_list() == [3, 0, 4]
    assert codes.decode(np.array([4, 2, 0])).to_list() == ["c", "a", "x"]
    single = UserCodes(pl.Series(["x"]))  # one match per lookup: only comparing the ids tells them apart
    assert single.encode(pl.Series(["a", "x"])).to_list() == [1, 0]


def test_rolling_windows_match_set_unions() -> None:
    rng = random.Random(7)
    start = dt.date(2025, 1, 1)
    days = [start + dt.timedelta(days=i) for i in range(45) if i % 6 != 3]  # some days without data
    active = {day: {f"u{rng.randrange(400)}" for _ in range(rng.randrange(1, 60))} for day in days}
    window = RollingActiveUsers()
    for day in days:
        window.add(day, pl.Series(sorted(active[day])))
        for size in (1, 7, 30):
            expected = set().union(*(users for d, users in active.items() if day - dt.timedelta(size) < d <= day))
            assert window.distinct(day, size) == len(expected), (day, size)


def test_sliding_minute_counts_match_brute_force() -> None:
    rng = np.random.default_rng(3)
    users = rng.integers(0, 50, 2_000)
    minutes = rng.integers(-60, 300, 2_000)  # some before the first counted minute
    counts = sliding_distinct_counts(pl.Series(users), pl.Series(minutes), 0, 299, (1, 5, 60))
    for n in (1, 5, 60):
        for minute in (0, 1, 17, 59, 60, 150, 299):
            inside = (minutes <= minute) & (minutes > minute - n)
            assert counts[n][minute] == len(set(users[inside])), (n, minute)


def test_sliding_counts_take_hash_sized_entities() -> None:
    rng = np.random.default_rng(5)
    entities = rng.integers(0, 1 << 52, 40, dtype=np.int64)[rng.integers(0, 40, 3_000)]  # 40 big "hashes"
    minutes = rng.integers(-60, 1_440, 3_000)  # 11 bits of slots: entities may use 53
    counts = sliding_distinct_counts(pl.Series(entities), pl.Series(minutes), 0, 1_439, (1, 30))
    for n in (1, 30):
        for minute in (0, 29, 700, 1_439):
            inside = (minutes <= minute) & (minutes > minute - n)
            assert counts[n][minute] == len(set(entities[inside])), (n, minute)
    with pytest.raises(ValueError, match="below 2\\*\\*53"):
        sliding_distinct_counts(pl.Series([1 << 53, 1]), pl.Series([1_000, -60]), 0, 1_439, (1,))


def _minute_frame(rng: random.Random, day: dt.date, rows: int, users: int) -> pl.DataFrame:
    start = dt.datetime.combine(day, dt.time(), dt.UTC)
    return pl.DataFrame(
        {
            "user_id": [f"u{rng.randrange(users)}" for _ in range(rows)],
            "event_ts": [start + dt.timedelta(seconds=rng.randrange(3 * 3600)) for _ in range(rows)],
        },
        schema={"user_id": pl.String, "event_ts": pl.Datetime("ms", "UTC")},
    )


def test_active_users_per_minute_match_brute_force_with_and_without_hashing() -> None:
    rng = random.Random(11)
    day = dt.date(2025, 3, 2)
    midnight = dt.datetime.combine(day, dt.time(), dt.UTC)
    events = _minute_frame(rng, day, 3_000, 300)
    tail = (
        _minute_frame(rng, day - dt.timedelta(days=1), 400, 300)
        .with_columns(
            pl.col("event_ts") + dt.timedelta(hours=23)  # the previous day's last hour
        )
        .filter(pl.col("event_ts").is_between(midnight - dt.timedelta(minutes=59), midnight, closed="left"))
    )
    assert tail.height > 0
    both = pl.concat([events, tail])
    given = users.active_users_minute(events, tail, day, events["user_id"].unique())
    assert given.equals(users.active_users_minute(events, tail, day))
    for row in given.filter(pl.col("minute_start").dt.minute().is_in([0, 7, 59])).iter_rows(named=True):
        for n, column in zip(users.ACTIVE_USER_WINDOWS_MINUTES, users.ACTIVE_USER_COLUMNS, strict=True):
            since = row["minute_start"] - dt.timedelta(minutes=n - 1)
            inside = both.filter((pl.col("event_ts") >= since) & (pl.col("event_ts") < row["minute_start"] + MINUTE))
            assert row[column] == inside["user_id"].n_unique(), (row["minute_start"], n)


def test_user_keys_fall_back_to_codes_when_hashes_collide() -> None:
    pairs = pl.DataFrame({"user_id": ["a", "b", "c", "a", "d", "b"]})
    empty_tail = pl.DataFrame({"user_id": []}, schema={"user_id": pl.String})
    for known in (None, pl.Series(["a", "b", "c", "d"])):
        keys = users._user_keys(pairs, empty_tail, known, bits=1)  # 4 users cannot have distinct 1-bit keys
        per_user = pairs.with_columns(key=keys).group_by("user_id").agg(pl.col("key").n_unique())
        assert per_user["key"].to_list() == [1, 1, 1, 1]
        assert keys.n_unique() == 4
        hashed = users._user_keys(pairs, empty_tail, known, bits=52)
        assert hashed.n_unique() == 4 and hashed.max() < 1 << 52


def test_derived_cache_is_bounded(tmp_path) -> None:
    from shoppulse.rollups.users import KEEP_USER_DAYS, KEEP_WINDOW_DAYS, UserDaysCache

    cache = UserDaysCache(tmp_path)
    newest = dt.date(2025, 6, 30)
    for back in (0, KEEP_WINDOW_DAYS + 1, KEEP_USER_DAYS + 1):
        day = newest - dt.timedelta(days=back)
        for kind, prefix in (("user_window", "before="), ("user_days", "event_date=")):
            (cache.root / kind / f"{prefix}{day.isoformat()}").mkdir(parents=True)
    cache.prune(newest)
    left = {p.parent.name + "/" + p.name for p in cache.root.glob("*/*")}
    assert left == {
        f"user_window/before={newest}",
        f"user_days/event_date={newest}",
        f"user_days/event_date={newest - dt.timedelta(days=KEEP_WINDOW_DAYS + 1)}",
    }
