"""The rolling distinct-user counts against brute force (sets), across days and separate encodings."""

from __future__ import annotations

import datetime as dt
import random

import numpy as np
import polars as pl
import pytest

from shoppulse.rollups import users
from shoppulse.rollups.users import RollingActiveUsers, UserCodes, sliding_distinct_counts


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
