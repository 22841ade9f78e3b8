"""Users rollup: active users per minute over sliding 1/5/15/30/60-minute windows, and per day DAU,
WAU, MAU, sessions and views.

Sliding distinct counts use one exact algorithm for minutes and days: sort each user's active slots;
a user active at slot a whose next active slot is b counts in window N at every slot of
[a, min(a + N, b)). These spans never overlap for one user, so summing +1/−1 span ends and taking the
running total gives the distinct count of every slot in one pass (no per-window set unions).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from shoppulse.lake.layout import LakeTable, PartitionSnapshot, read_partition
from shoppulse.lake.table import LakeRef, is_remote, lake_uri
from shoppulse.metrics import (
    ACTIVE_USER_COLUMNS,
    ACTIVE_USER_WINDOWS_MINUTES,
    DAU_DAYS,
    MAU_DAYS,
    USER_DAILY_COUNTS,
    WAU_DAYS,
)
from shoppulse.rollups.source import entity_codes, scan_partition
from shoppulse.settings import get_settings

MINUTE_MS = 60_000
DAY = dt.timedelta(days=1)
LOOKBACK_MINUTES = max(ACTIVE_USER_WINDOWS_MINUTES) - 1
"""Minutes of the previous day the first minutes of a day's windows reach back into."""
KEEP_WINDOW_DAYS = 7
KEEP_USER_DAYS = 2 * MAU_DAYS


def sliding_distinct_counts(
    entities: pl.Series, slots: pl.Series, first: int, last: int, windows: Sequence[int]
) -> dict[int, np.ndarray]:
    """For each window N: distinct entities with a slot in [s − N + 1, s], for every slot s in first..last.

    `entities` (non-negative integers: codes, or hashes short enough to leave room for the slots) and
    `slots` (integers) are parallel; pairs may repeat, and slots before `first` reach into the first
    windows.
    """
    size = last - first + 1
    if size <= 0 or entities.is_empty():
        return {n: np.zeros(max(size, 0), dtype=np.int64) for n in windows}
    base = int(slots.min())  # type: ignore[arg-type]
    slot_bits = packed_slot_bits(slots)
    if int(entities.max()) >= 1 << (64 - slot_bits):  # type: ignore[operator]
        raise ValueError(f"entities must be below 2**{64 - slot_bits} to pack them with slots")
    keys = (
        pl.DataFrame({"e": entities.cast(pl.UInt64), "s": (slots.cast(pl.Int64) - base).cast(pl.UInt64)})
        .select(key=pl.col("e") * (1 << slot_bits) + pl.col("s"))
        .select(pl.col("key").unique().sort())["key"]
        .to_numpy()
    )
    entity = keys >> np.uint64(slot_bits)
    start = (keys & np.uint64((1 << slot_bits) - 1)).astype(np.int64) + (base - first)
    same_next = np.append(entity[1:] == entity[:-1], False)
    gap = np.where(same_next, np.append(start[1:], 0) - start, np.iinfo(np.int64).max // 4)
    counts = {}
    for n in windows:
        stop = start + np.minimum(gap, n)
        inside = (stop > 0) & (start < size)
        deltas = np.bincount(np.clip(start[inside], 0, size), minlength=size + 1)
        deltas -= np.bincount(np.clip(stop[inside], 0, size), minlength=size + 1)
        counts[n] = np.cumsum(deltas[:size])
    return counts


def packed_slot_bits(slots: pl.Series) -> int:
    """Bits `sliding_distinct_counts` packs each slot into (entities get the other 64 − n)."""
    return max(int(slots.max()) - int(slots.min()), 1).bit_length()  # type: ignore[operator]


def day_start(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), dt.UTC)


def minute_of(expr: pl.Expr) -> pl.Expr:
    """Minutes since the epoch of a UTC timestamp column."""
    return expr.dt.epoch("ms") // MINUTE_MS


def previous_day_tail(
    lake_dir: LakeRef, day: dt.date, version: int | None = None
) -> tuple[PartitionSnapshot, pl.DataFrame]:
    """(user_id, event_ts) of the previous day's last LOOKBACK_MINUTES minutes (reach of the first windows),
    at table `version` (default: the newest)."""
    snapshot = read_partition(lake_dir, LakeTable.EVENTS, day - DAY, version)
    cutoff = day_start(day) - dt.timedelta(minutes=LOOKBACK_MINUTES)
    schema = {"user_id": pl.String(), "event_ts": pl.Datetime("ms", "UTC")}
    tail = scan_partition(snapshot, schema).filter(pl.col("event_ts") >= cutoff).collect()
    return snapshot, tail


def active_users_minute(
    events: pl.DataFrame,
    tail: pl.DataFrame,
    day: dt.date,
    day_users: pl.Series | None = None,
    last_minute: int | None = None,
) -> pl.DataFrame:
    """Rows of `active_users_minute` for `day`: every minute from 00:00 to the minute of its newest event
    (or to `last_minute`, minutes since the epoch, when the events are a slice of the day's users).

    `events` (the day's) and `tail` (the previous day's last hour) have columns user_id and event_ts;
    `day_users`, the distinct user_ids of `events` if already known, saves finding them again.
    """
    schema = {"event_date": pl.Date, "minute_start": pl.Datetime("ms", "UTC")}
    if events.is_empty() and (last_minute is None or tail.is_empty()):
        return pl.DataFrame(schema={**schema, **dict.fromkeys(ACTIVE_USER_COLUMNS, pl.Int64)})
    pairs = pl.concat([events.select("user_id", "event_ts"), tail.select("user_id", "event_ts")])
    minutes = pairs.select(minute_of(pl.col("event_ts"))).to_series()
    first = int(day_start(day).timestamp()) // 60
    last = last_minute if last_minute is not None else int(events.select(minute_of(pl.col("event_ts")).max()).item())
    keys = _user_keys(pairs, tail, day_users, bits=64 - packed_slot_bits(minutes))
    counts = sliding_distinct_counts(keys, minutes, first, last, ACTIVE_USER_WINDOWS_MINUTES)
    minute_starts = np.arange(first, last + 1, dtype=np.int64) * MINUTE_MS
    return pl.DataFrame(
        {
            "event_date": [day] * len(minute_starts),
            "minute_start": pl.Series(minute_starts).cast(pl.Datetime("ms")).dt.replace_time_zone("UTC"),
            **{column: counts[n] for n, column in zip(ACTIVE_USER_WINDOWS_MINUTES, ACTIVE_USER_COLUMNS, strict=True)},
        },
        schema_overrides=schema,
    )


def _user_keys(pairs: pl.DataFrame, tail: pl.DataFrame, day_users: pl.Series | None, bits: int) -> pl.Series:
    """One integer below 2**bits per user of `pairs`: the top bits of a hash of its user_id (hashing is
    ~40x faster than building a dictionary of the strings), or dictionary codes should two of these users
    share those bits — so two users are never counted as one."""
    drop = 1 << (64 - bits)  # keep the top `bits` bits
    hashed = pairs.get_column("user_id").hash() // drop
    if day_users is not None:
        users = pl.concat([day_users.cast(pl.String), tail.get_column("user_id")]).unique()
        exact = (users.hash() // drop).n_unique() == users.len()
    else:
        exact = hashed.n_unique() == pairs.get_column("user_id").n_unique()
    if exact:
        return hashed
    return pairs.select(entity_codes("user_id")).to_series()


class UserCodes:
    """A growing dictionary user_id -> dense integer code (in first-seen order), so users can be grouped
    and indexed as integers across days and frames.

    Lookups join on a 64-bit hash of the id and then compare the ids themselves: ~2x faster than joining
    on the strings, and exact — should two ids ever share a hash, that lookup joins on the strings.
    """

    def __init__(self, known: pl.Series | None = None) -> None:
        """Start with `known` (distinct user_ids; codes 0..n−1 in that order), or empty."""
        known = pl.Series("user_id", [], dtype=pl.String) if known is None else known.rename("user_id")
        self._table = _hashed(known.to_frame().with_row_index("code").select("user_id", "code"))

    def encode(self, users: pl.Series) -> pl.Series:
        """The code of each user_id (ids not seen before get new codes)."""
        frame = _hashed(pl.DataFrame({"user_id": users.cast(pl.String)}))
        coded = frame.join(self._table.drop("user_id"), on="h", how="left", maintain_order="left")
        known = self._table["user_id"].gather(coded["code"].fill_null(0)) if self._table.height else None
        same = known is None or bool((coded["code"].is_null() | (known == coded["user_id"])).all())
        unknown = _unknown(coded)
        if coded.height != frame.height or not same or unknown["h"].n_unique() != unknown.height:
            return self._encode_by_id(frame)  # a hash shared by two ids: exact, slower
        return self._with_new_codes(frame, coded, unknown, on="h")

    def _encode_by_id(self, frame: pl.DataFrame) -> pl.Series:
        coded = frame.join(self._table.drop("h"), on="user_id", how="left", maintain_order="left")
        return self._with_new_codes(frame, coded, _unknown(coded), on="user_id")

    def _with_new_codes(self, frame: pl.DataFrame, coded: pl.DataFrame, unknown: pl.DataFrame, on: str) -> pl.Series:
        """`coded`'s codes, the `unknown` ids given new ones (appended to the table) and looked up by `on`."""
        if unknown.is_empty():
            return coded["code"]
        added = unknown.with_row_index("code", offset=self._table.height).select(self._table.columns)
        self._table = pl.concat([self._table, added])
        new_codes = frame.join(added.select(on, "code"), on=on, how="left", maintain_order="left")["code"]
        return coded["code"].fill_null(new_codes)

    def decode(self, codes: np.ndarray) -> pl.Series:
        """The user_ids of `codes`."""
        return self._table["user_id"].gather(codes)


def _hashed(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(h=pl.col("user_id").hash())


def _unknown(coded: pl.DataFrame) -> pl.DataFrame:
    """The distinct (user_id, h) of the looked-up rows that found no code, in first-seen order."""
    return coded.filter(pl.col("code").is_null()).select("user_id", "h").unique("user_id", maintain_order=True)


class RollingActiveUsers:
    """Distinct users over trailing windows of UTC days, fed day by day, oldest first.

    The window is one array indexed by user code (`UserCodes`): the last day each user was active.
    Adding a day is a scatter, counting a window is a comparison, whatever the number of days.
    """

    def __init__(self) -> None:
        self.user_codes = UserCodes()
        self._last_seen = np.zeros(0, dtype=np.int64)
        self._latest: dt.date | None = None

    @classmethod
    def of_days(cls, days: Sequence[tuple[dt.date, pl.Series]], latest: dt.date) -> RollingActiveUsers:
        """A window holding `days` (distinct user_ids per day), all days up to `latest` added."""
        frames = [
            pl.DataFrame({"user_id": users.cast(pl.String)}).with_columns(day=pl.lit(day.toordinal(), pl.Int64))
            for day, users in days
        ]
        empty = pl.DataFrame(schema={"user_id": pl.String, "day": pl.Int64})
        last_seen = pl.concat([empty, *frames]).group_by("user_id").agg(pl.col("day").max())
        return cls.from_last_seen(last_seen, latest)

    @classmethod
    def from_last_seen(cls, last_seen: pl.DataFrame, latest: dt.date) -> RollingActiveUsers:
        """A window from (user_id, day) rows: each user's last active day (proleptic ordinal)."""
        window = cls()
        window.user_codes = UserCodes(last_seen["user_id"])
        window._last_seen = last_seen["day"].cast(pl.Int64).to_numpy().copy()
        window._latest = latest
        return window

    def last_seen(self) -> pl.DataFrame:
        """(user_id, day) of every user in the window (to store it and resume with `from_last_seen`)."""
        codes = np.flatnonzero(self._last_seen)
        return pl.DataFrame({"user_id": self.user_codes.decode(codes), "day": self._last_seen[codes]})

    def codes(self, users: pl.Series) -> np.ndarray:
        return self.user_codes.encode(users).to_numpy()

    def strings(self, codes: np.ndarray) -> pl.Series:
        """The user_ids of `codes`."""
        return self.user_codes.decode(codes)

    def add(self, day: dt.date, users: pl.Series) -> None:
        """Record the users (user_ids) active on `day` (after every day already added)."""
        self.add_codes(day, self.codes(users))

    def add_codes(self, day: dt.date, codes: np.ndarray) -> None:
        """Record the users (codes of `self.user_codes`) active on `day` (after every day already added)."""
        if self._latest is not None and day <= self._latest:
            raise ValueError("days must be added in ascending order")
        if codes.size:
            size = int(codes.max()) + 1
            if size > self._last_seen.size:
                grown = np.zeros(max(size, 2 * self._last_seen.size), dtype=np.int64)
                grown[: self._last_seen.size] = self._last_seen
                self._last_seen = grown
            self._last_seen[codes] = day.toordinal()
        self._latest = day

    def distinct(self, day: dt.date, window_days: int) -> int:
        """Distinct users active in the `window_days` days ending with `day` (all days up to `day` added)."""
        if self._latest is not None and self._latest > day:
            raise ValueError(f"days after {day} were already added")
        return int(np.count_nonzero(self._last_seen >= day.toordinal() - window_days + 1))


def users_daily(events: pl.DataFrame, day: dt.date, window: RollingActiveUsers) -> pl.DataFrame:
    """The `users_daily` row of `day`, also for a day without events: its DAU and counts are 0, and its
    WAU/MAU are still the users of the trailing 7/30 days. `window` must include `day`."""
    if events.is_empty():
        counts = pl.DataFrame(
            {name: [0] for name in USER_DAILY_COUNTS}, schema=dict.fromkeys(USER_DAILY_COUNTS, pl.Int64)
        )
    else:
        counts = events.select(**USER_DAILY_COUNTS).cast(pl.Int64)
    return counts.with_columns(
        event_date=pl.lit(day),
        dau=pl.lit(window.distinct(day, DAU_DAYS), pl.Int64),
        wau=pl.lit(window.distinct(day, WAU_DAYS), pl.Int64),
        mau=pl.lit(window.distinct(day, MAU_DAYS), pl.Int64),
    )


class UserDaysCache:
    """Derived data the users rollup would otherwise re-read from the lake on every run, as Parquet:

    - `user_days/event_date=D/<content key>`: the distinct user_ids of partition D with that file set;
    - `user_window/before=D/<digest>`: each user's last active day over the MAU_DAYS − 1 days before D,
      keyed by a digest of those partitions' content keys (so a late event anywhere in them invalidates it).

    It lives under `<lake>/_derived/` for a local lake (Delta ignores paths starting with `_`), and under
    the local state directory for a remote one. Entries are immutable and exact for their key; a newer
    entry replaces older ones of the same day, and deleting the directory only costs recomputation.
    """

    def __init__(self, lake_dir: LakeRef, version: int | None = None) -> None:
        self.lake_dir = lake_dir
        self.version = version
        """The table version the partitions are read at (None: the newest at each read)."""
        if is_remote(lake_dir):
            digest = hashlib.sha256(lake_uri(lake_dir).encode()).hexdigest()[:16]
            self.root = get_settings().home / "derived" / digest
        else:
            self.root = Path(lake_dir) / "_derived"

    def _day_path(self, snapshot: PartitionSnapshot) -> Path:
        day = snapshot.date.isoformat()
        return self.root / "user_days" / f"event_date={day}" / f"{snapshot.content_key}.parquet"

    @staticmethod
    def _write(path: Path, frame: pl.DataFrame) -> None:
        """Write atomically, then drop the other entries of the same day."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        frame.write_parquet(tmp)
        tmp.replace(path)
        for stale in path.parent.glob("*.parquet"):
            if stale.name != path.name:
                stale.unlink(missing_ok=True)

    def put(self, snapshot: PartitionSnapshot, users: pl.Series) -> None:
        """Record the distinct users of a partition snapshot."""
        self._write(self._day_path(snapshot), pl.DataFrame({"user_id": users.cast(pl.String).sort()}))

    def users_of(self, snapshot: PartitionSnapshot) -> pl.Series:
        """Distinct users of a partition snapshot (cached, or read from the lake and cached)."""
        try:
            return pl.read_parquet(self._day_path(snapshot))["user_id"]
        except FileNotFoundError:
            pass
        users = distinct_users(scan_partition(snapshot, {"user_id": pl.String()}))
        if snapshot.files:
            self.put(snapshot, users)
        return users

    def window_before(self, day: dt.date) -> tuple[dict[dt.date, PartitionSnapshot], RollingActiveUsers]:
        """The rolling window over the MAU_DAYS − 1 days before `day`, and the snapshots it was built from."""
        days = [day - dt.timedelta(days=back) for back in range(MAU_DAYS - 1, 0, -1)]
        snapshots = {d: read_partition(self.lake_dir, LakeTable.EVENTS, d, self.version) for d in days}
        key = hashlib.sha256(";".join(f"{d}:{s.content_key}" for d, s in snapshots.items()).encode()).hexdigest()[:32]
        path = self.root / "user_window" / f"before={day.isoformat()}" / f"{key}.parquet"
        try:
            return snapshots, RollingActiveUsers.from_last_seen(pl.read_parquet(path), day - DAY)
        except FileNotFoundError:
            pass
        window = RollingActiveUsers.of_days([(d, self.users_of(s)) for d, s in snapshots.items()], day - DAY)
        self._write(path, window.last_seen())
        self.prune(day)
        return snapshots, window

    def prune(self, newest: dt.date) -> None:
        """Bound the cache: windows of the last KEEP_WINDOW_DAYS days and user sets of the last
        KEEP_USER_DAYS days before `newest` stay; anything older is only ever recomputed anyway."""
        for kind, prefix, keep in (
            ("user_window", "before=", KEEP_WINDOW_DAYS),
            ("user_days", "event_date=", KEEP_USER_DAYS),
        ):
            oldest = newest - dt.timedelta(days=keep)
            root = self.root / kind
            for entry in root.glob(f"{prefix}*") if root.exists() else ():
                try:
                    stale = dt.date.fromisoformat(entry.name.removeprefix(prefix)) < oldest
                except ValueError:
                    continue
                if stale:
                    shutil.rmtree(entry, ignore_errors=True)


def distinct_users(frame: pl.LazyFrame | pl.DataFrame) -> pl.Series:
    return frame.lazy().select(pl.col("user_id").unique()).collect()["user_id"]
