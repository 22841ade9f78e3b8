"""Fold new events into a day's rollups: exact, with per-day state in PostgreSQL, in one transaction.

`fold` takes the events a partition received since the lake version its state reflects (deduplicated
among themselves), drops those whose event_id the day already counted (the first-delivered copy wins:
a new copy delivered *earlier* than the counted one means a rebuild), and turns the rest into deltas:

- sales, products, customers' order counts, page and product views: sums per bucket, added to the
  serving rows of the buckets touched (reporting-currency rows recomputed for the hours touched);
- customers: per-day customer set with a first-order flag;
- funnel and sessions: per-session state (first event by (event_ts, event_id), dimensions, steps); a
  session whose first event moves is retracted from its old dimensions and added to its new ones;
- DAU/WAU/MAU: per-day user set, each user with its last active day in the 29 days before (from the
  window state), so WAU/MAU are counts of the window plus the users new to it;
- active users per minute: each user's active minutes; a new (user, minute) m adds +1 in window N to
  the minutes [max(m, prev + N), min(m + N, next)) (prev/next: the user's neighbouring active minutes),
  exactly the coverage it adds (see users.sliding_distinct_counts).

State, serving rows and ledger rows change in ONE transaction, guarded by the state's lake version and
the ledger's: a crash leaves the old or the new of all of them. Folding from empty state (`rebuild`)
is how a day's state is first built, so every split of a day into batches gives the same rows.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np
import polars as pl
import psycopg
from psycopg.types.json import Jsonb

from shoppulse.metrics import (
    ACTIVE_USER_COLUMNS,
    ACTIVE_USER_WINDOWS_MINUTES,
    FUNNEL_DIMENSIONS,
    FUNNEL_STEPS,
    ORDER_PLACED,
)
from shoppulse.rollups import catalog
from shoppulse.rollups.catalog import TABLE_BY_NAME, TABLES
from shoppulse.rollups.customers import customers_daily
from shoppulse.rollups.incremental import store
from shoppulse.rollups.products import products_tables
from shoppulse.rollups.sales import in_reporting_currency, sales_tables
from shoppulse.rollups.traffic import traffic_hourly
from shoppulse.rollups.users import LOOKBACK_MINUTES, MINUTE_MS, day_start
from shoppulse.rollups.writer import LOCK_NAMESPACE, LOCK_TIMEOUT, NOTIFY_CHANNEL, UPSERT_LEDGER

FxLookup = Callable[[dt.date, Collection[str]], Mapping[str, Decimal]]
DAY_MINUTES = 24 * 60
TS = pl.Datetime("ms", "UTC")
MINUTE = pl.Datetime("ms", "UTC")


class NeedsRebuildError(Exception):
    """The state cannot take this batch (missing, at another lake version, another users window, serving
    rows rewritten by a full recompute, or a copy that beats an already counted one): fold from empty."""


@dataclass(frozen=True)
class UsersWindow:
    """The users window of the day: the 29 days before it, as the fold state assumes them."""

    digest: str
    """The lake versions of those days (JSON day -> version)."""
    version: int
    """Newest lake version among them (the users ledger records max(this, the day's version))."""
    last_seen: pl.DataFrame | None = None
    """(user_id, day ordinal) of every user active in those days; to rebuild."""
    tail: pl.DataFrame | None = None
    """(user_id, event_ts) of the previous day's last hour (to rebuild), or of the rows the previous
    day received since `since` (to fold)."""
    since: str | None = None
    """The window (digest) the state must assume for `added` and `tail` to bring it to `digest`."""
    added: pl.DataFrame | None = None
    """(user_id, day ordinal) of the rows those days received since `since` (late events)."""


@dataclass
class FoldBatch:
    day: dt.date
    events: pl.DataFrame
    """ACTIVITY_COLUMNS of the new rows (each event_id once among them)."""
    sales: pl.DataFrame
    """SALES_COLUMNS of the new money-moving rows."""
    after_version: int | None
    """Lake version the state must reflect (None: rebuild from empty state)."""
    new_version: int
    window: UsersWindow
    source_offsets: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class FoldOutcome:
    day: dt.date
    rebuilt: bool
    events_in: int
    events_folded: int
    rows_touched: dict[str, int] = field(default_factory=dict)
    row_counts: dict[str, int] = field(default_factory=dict)
    lake_version: int = 0
    seconds: float = 0.0
    steps: int = 1
    """Transactions (or chunks of one rebuild) the fold took to bound its memory."""

    @property
    def buckets_touched(self) -> int:
        return sum(self.rows_touched.values())

    def add(self, step: FoldOutcome) -> None:
        """Account for one more step of the same fold (its rows counts are the newest)."""
        self.rebuilt |= step.rebuilt
        self.events_in += step.events_in
        self.events_folded += step.events_folded
        for name, rows in step.rows_touched.items():
            self.rows_touched[name] = self.rows_touched.get(name, 0) + rows
        self.row_counts = step.row_counts
        self.seconds += step.seconds
        self.steps += 1


def _ts(expr: pl.Expr) -> pl.Expr:
    return expr.cast(TS)


def _key_schema(table: store.ServingTable, frame: pl.DataFrame) -> dict[str, pl.DataType]:
    return {c: frame.schema[c] for c in table.columns}


def _add(cur: psycopg.Cursor, name: str, partial: pl.DataFrame, rebuild: bool = False) -> pl.DataFrame:
    """Serving rows of `name` for the keys of `partial`, with `partial`'s sums added (`catalog.sum_rows`)."""
    table = TABLE_BY_NAME[name]
    partial = partial.select(table.columns)
    old = store.fetch(cur, table, partial.select(table.key), dict(partial.schema), rebuild)
    return catalog.sum_rows(name, [old, partial])


def _lock(cur: psycopg.Cursor, day: dt.date) -> None:
    cur.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
    for asset in sorted(catalog.EVENT_ROLLUPS):  # the same locks (and order) as writer.replace_partition
        cur.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (LOCK_NAMESPACE, f"{asset}:{day.isoformat()}"))


HEADER_SCHEMA = {
    "event_date": pl.Date(),
    "lake_version": pl.Int64(),
    "window_digest": pl.String(),
    "window_version": pl.Int64(),
    "max_event_ts": pl.Datetime("us", "UTC"),
    "last_minute": pl.Datetime("us", "UTC"),
    "before_7d": pl.Int64(),
    "before_30d": pl.Int64(),
    "new_7d": pl.Int64(),
    "new_30d": pl.Int64(),
}


def read_header(conn: psycopg.Connection | psycopg.Cursor, day: dt.date) -> dict[str, Any] | None:
    """The fold state's header of `day` (lake_version, window_digest, ...), or None without state."""
    cur = conn.cursor() if isinstance(conn, psycopg.Connection) else conn
    row = cur.execute(
        f"SELECT {', '.join(store.FOLD_DAYS.columns)} FROM {store.SCHEMA}.fold_days WHERE event_date = %s", (day,)
    ).fetchone()
    return None if row is None else dict(zip(store.FOLD_DAYS.columns, row, strict=True))


def _clear(cur: psycopg.Cursor, day: dt.date) -> None:
    for table in store.STATE_TABLES:
        store.clear_day(cur, table, day)
    for asset in catalog.EVENT_ROLLUPS:
        for table in TABLES[asset]:
            store.clear_day(cur, table, day)


def _check_state(cur: psycopg.Cursor, batch: FoldBatch) -> dict[str, Any]:
    header = read_header(cur, batch.day)
    if header is None or header["lake_version"] != batch.after_version:
        found = header and header["lake_version"]
        raise NeedsRebuildError(f"state of {batch.day} is at lake version {found}, not {batch.after_version}")
    if header["window_digest"] != (batch.window.since or batch.window.digest):
        raise NeedsRebuildError(f"the users window of {batch.day} is not the one the state assumes")
    ledger = cur.execute(
        f"SELECT asset, lake_version FROM {store.SCHEMA}.materializations"
        " WHERE partition_date = %s AND asset = ANY(%s)",
        (batch.day, list(catalog.EVENT_ROLLUPS)),
    ).fetchall()
    expected = {a: header["lake_version"] for a in catalog.EVENT_ROLLUPS}
    expected[catalog.USERS] = max(header["lake_version"], header["window_version"])
    if dict(ledger) != expected:
        raise NeedsRebuildError(f"serving rows of {batch.day} were rewritten outside the fold")
    return header


def _new_header(day: dt.date, window: UsersWindow) -> dict[str, Any]:
    last_seen = window.last_seen if window.last_seen is not None else pl.DataFrame(schema={"day": pl.Int64})
    ordinal = day.toordinal()
    return {
        "event_date": day,
        "lake_version": 0,
        "window_digest": window.digest,
        "window_version": window.version,
        "max_event_ts": None,
        "last_minute": None,
        "before_7d": int((last_seen["day"] >= ordinal - 6).sum()),
        "before_30d": int((last_seen["day"] >= ordinal - 29).sum()),
        "new_7d": 0,
        "new_30d": 0,
    }


def _unseen(cur: psycopg.Cursor, batch: FoldBatch) -> pl.DataFrame:
    """The batch's events whose event_id the day has not counted yet (all of them when rebuilding)."""
    order = ("kafka_ts", "kafka_partition", "kafka_offset")
    ids = batch.events.select(pl.lit(batch.day).alias("event_date"), "event_id", *order)
    if batch.after_version is None:
        seen = ids.clear()
    else:
        seen = store.fetch(cur, store.FOLD_EVENTS, ids.select("event_date", "event_id"), dict(ids.schema))
    if not seen.is_empty():
        clash = ids.join(seen, on="event_id", suffix="_seen")

        def key(values: tuple) -> tuple:
            return tuple((v is None, v) for v in values)  # nulls last, like dedup's sort

        for row in clash.select(*order, *(f"{c}_seen" for c in order)).iter_rows():
            if key(row[:3]) < key(row[3:]):
                raise NeedsRebuildError("a copy delivered before the counted one arrived late")
    fresh = batch.events.join(seen.select("event_id"), on="event_id", how="anti")
    store.insert(cur, store.FOLD_EVENTS, fresh.select(pl.lit(batch.day).alias("event_date"), "event_id", *order))
    return fresh


def _sales(
    cur: psycopg.Cursor, day: dt.date, sales: pl.DataFrame, fx: FxLookup | None, reporting: str, rebuild: bool
) -> dict[str, int]:
    touched: dict[str, int] = {}
    if sales.is_empty():
        return touched

    partial = sales_tables(sales, day)
    merged = {name: _add(cur, name, frame, rebuild) for name, frame in partial.items()}
    for name, frame in merged.items():
        touched[name] = store.upsert(cur, TABLE_BY_NAME[name], frame)
    hourly_schema = dict(merged["sales_hourly"].schema)
    daily_schema = dict(merged["sales_daily"].schema)
    hours = merged["sales_hourly"]["hour_start"].unique().implode()
    hourly = store.fetch_day(cur, TABLE_BY_NAME["sales_hourly"], day, hourly_schema).filter(
        pl.col("hour_start").is_in(hours)
    )
    daily = store.fetch_day(cur, TABLE_BY_NAME["sales_daily"], day, daily_schema)
    currencies = set(daily["currency"].to_list())
    per_usd = fx(day, currencies | {reporting}) if (fx and currencies) else {}
    reporting_hourly = in_reporting_currency(hourly, ("event_date", "hour_start"), reporting, per_usd)
    reporting_daily = in_reporting_currency(daily, ("event_date",), reporting, per_usd)
    touched["sales_hourly_reporting"] = store.upsert(cur, TABLE_BY_NAME["sales_hourly_reporting"], reporting_hourly)
    touched["sales_daily_reporting"] = store.upsert(cur, TABLE_BY_NAME["sales_daily_reporting"], reporting_daily)
    return touched


def _products(cur: psycopg.Cursor, day: dt.date, sales: pl.DataFrame, rebuild: bool) -> dict[str, int]:
    if sales.is_empty():
        return {}
    touched = {}
    for name, frame in products_tables(sales, day).items():
        touched[name] = store.upsert(cur, TABLE_BY_NAME[name], _add(cur, name, frame, rebuild))
    return touched


def _customers(cur: psycopg.Cursor, day: dt.date, sales: pl.DataFrame, rebuild: bool) -> dict[str, int]:
    table = TABLE_BY_NAME["customers_daily"]
    partial = customers_daily(sales, day, has_events=True)
    orders = sales.filter(pl.col("event_type") == ORDER_PLACED)
    per_user = orders.group_by("user_id").agg(first_order=(pl.col("customer_order_number") == 1).fill_null(False).any())
    per_user = per_user.select(pl.lit(day).alias("event_date"), "user_id", "first_order")
    keys = per_user.select("event_date", "user_id")
    old = store.fetch(cur, store.FOLD_CUSTOMERS, keys, dict(per_user.schema), rebuild)
    joined = per_user.join(old.select("user_id", old_first="first_order"), on="user_id", how="left")
    new_customers = int(joined["old_first"].is_null().sum())
    newly_first = int((joined["first_order"] & ~joined["old_first"].fill_null(False)).sum())
    store.upsert(
        cur,
        store.FOLD_CUSTOMERS,
        joined.select(
            "event_date", "user_id", first_order=pl.col("first_order") | pl.col("old_first").fill_null(False)
        ),
    )
    current = store.fetch(cur, table, partial.select(table.key), dict(partial.select(table.columns).schema), rebuild)
    base = current.row(0, named=True) if current.height else dict.fromkeys(table.columns, 0)
    row = {
        "event_date": day,
        "customers": base["customers"] + new_customers,
        "first_time_customers": base["first_time_customers"] + newly_first,
        **{m: base[m] + int(partial[m][0]) for m in ("orders", "first_time_orders", "returning_orders")},
    }
    row["returning_customers"] = row["customers"] - row["first_time_customers"]
    frame = pl.DataFrame([row]).select(table.columns).cast(dict(partial.select(table.columns).schema))
    return {"customers_daily": store.upsert(cur, table, frame)}


def _traffic(cur: psycopg.Cursor, day: dt.date, events: pl.DataFrame, rebuild: bool) -> dict[str, int]:
    """Fold the batch's events into `traffic_hourly`: events and payments add up; a session counts in an
    hour the first time one of its events lands in that hour (the (hour, session) pairs are state)."""
    table = TABLE_BY_NAME["traffic_hourly"]
    partial = traffic_hourly(events, day)
    pairs = events.select(
        pl.lit(day).alias("event_date"), pl.col("event_ts").dt.truncate("1h").alias("hour_start"), "session_id"
    ).unique()
    known = store.fetch(cur, store.FOLD_SESSION_HOURS, pairs, dict(pairs.schema), rebuild)
    new_pairs = pairs.join(known, on=list(store.FOLD_SESSION_HOURS.key), how="anti")
    store.insert(cur, store.FOLD_SESSION_HOURS, new_pairs)
    new_sessions = new_pairs.group_by("hour_start").agg(pl.len().cast(pl.Int64).alias("new_sessions"))
    partial = (
        partial.join(new_sessions, on="hour_start", how="left")
        .with_columns(sessions=pl.col("new_sessions").fill_null(0).cast(pl.Int64))
        .drop("new_sessions")
    )
    rows = _add(cur, table.name, partial, rebuild)
    return {table.name: store.upsert(cur, table, rows)}


def _sessions(cur: psycopg.Cursor, day: dt.date, events: pl.DataFrame, rebuild: bool) -> tuple[dict[str, int], int]:
    """Fold the batch's events into the sessions and `funnel_daily`; returns (rows touched, new sessions)."""
    steps = list(FUNNEL_STEPS)
    batch = (
        events.sort("session_id", "event_ts", "event_id")
        .group_by("session_id", maintain_order=True)
        .agg(
            pl.col("event_ts").first().alias("first_ts"),
            pl.col("event_id").first().alias("first_event_id"),
            *[pl.col(d).first() for d in FUNNEL_DIMENSIONS],
            **FUNNEL_STEPS,
        )
        .select(pl.lit(day).alias("event_date"), *store.FOLD_SESSIONS.columns[1:])
    )
    old = store.fetch(cur, store.FOLD_SESSIONS, batch.select("event_date", "session_id"), dict(batch.schema), rebuild)
    joined = batch.join(old.drop("event_date"), on="session_id", how="left", suffix="_old")
    old_first = pl.col("first_ts_old").is_not_null() & (
        (pl.col("first_ts_old") < pl.col("first_ts"))
        | ((pl.col("first_ts_old") == pl.col("first_ts")) & (pl.col("first_event_id_old") < pl.col("first_event_id")))
    )
    first_columns = ("first_ts", "first_event_id", *FUNNEL_DIMENSIONS)
    merged = joined.select(
        "event_date",
        "session_id",
        *[pl.when(old_first).then(pl.col(f"{c}_old")).otherwise(pl.col(c)).alias(c) for c in first_columns],
        *[(pl.col(s) | pl.col(f"{s}_old").fill_null(False)).alias(s) for s in steps],
    )
    retracted = old.select(
        *FUNNEL_DIMENSIONS, sessions=pl.lit(-1, pl.Int64), **{s: -pl.col(s).cast(pl.Int64) for s in steps}
    )
    added = merged.select(
        *FUNNEL_DIMENSIONS, sessions=pl.lit(1, pl.Int64), **{s: pl.col(s).cast(pl.Int64) for s in steps}
    )
    delta = (
        pl.concat([retracted, added])
        .group_by(list(FUNNEL_DIMENSIONS))
        .agg(pl.all().sum())
        .with_columns(event_date=pl.lit(day))
    )
    funnel = TABLE_BY_NAME["funnel_daily"]
    rows = _add(cur, "funnel_daily", delta.select(funnel.columns), rebuild)
    store.delete(cur, funnel, rows.filter(pl.col("sessions") == 0).select(funnel.key))
    touched = store.upsert(cur, funnel, rows.filter(pl.col("sessions") != 0))
    store.merge(cur, store.FOLD_SESSIONS, merged.select(store.FOLD_SESSIONS.columns))
    return {"funnel_daily": touched}, int(joined["first_ts_old"].is_null().sum())


def _users_daily(
    cur: psycopg.Cursor, day: dt.date, events: pl.DataFrame, new_sessions: int, header: dict[str, Any], rebuild: bool
) -> dict[str, int]:
    users = events.select(pl.lit(day).alias("event_date"), "user_id").unique("user_id")
    known = store.fetch(cur, store.FOLD_USERS, users, {**dict(users.schema), "last_before": pl.Date()}, rebuild)
    new = users.join(known.select("user_id"), on="user_id", how="anti")
    window = store.fetch(cur, store.FOLD_WINDOW, new, {**dict(new.schema), "last_before": pl.Date()})
    new = new.join(window.select("user_id", "last_before"), on="user_id", how="left")
    store.insert(cur, store.FOLD_USERS, new.select(store.FOLD_USERS.columns))
    week_start = day - dt.timedelta(days=6)
    header["new_7d"] += int((new["last_before"].is_null() | (new["last_before"] < week_start)).sum())
    header["new_30d"] += int(new["last_before"].is_null().sum())
    table = TABLE_BY_NAME["users_daily"]
    schema = {"event_date": pl.Date(), **dict.fromkeys(table.columns[1:], pl.Int64())}
    current = store.fetch(cur, table, pl.DataFrame({"event_date": [day]}), schema)
    base = current.row(0, named=True) if current.height else dict.fromkeys(table.columns, 0)
    kinds = events["event_type"]
    row = {
        "event_date": day,
        "dau": base["dau"] + new.height,
        "wau": header["before_7d"] + header["new_7d"],
        "mau": header["before_30d"] + header["new_30d"],
        "sessions": base["sessions"] + new_sessions,
        "page_views": base["page_views"] + int((kinds == "page_view").sum()),
        "product_views": base["product_views"] + int((kinds == "product_view").sum()),
    }
    return {"users_daily": store.upsert(cur, table, pl.DataFrame([row], schema=schema).select(table.columns))}


def _window_delta(cur: psycopg.Cursor, day: dt.date, added: pl.DataFrame, header: dict[str, Any]) -> dict[str, int]:
    """Late events in the 29 days before `day`: users enter the window (or their last day moves later),
    so WAU/MAU move; today's users who just entered it stop counting as new to it."""
    if added.is_empty():
        return {}
    ordinal_7d = (day - dt.timedelta(days=6)).toordinal()
    latest = added.group_by("user_id").agg(pl.col("day").max()).with_columns(event_date=pl.lit(day))
    schema = {"event_date": pl.Date(), "user_id": pl.String(), "last_before": pl.Date()}
    old = store.fetch(cur, store.FOLD_WINDOW, latest.select("event_date", "user_id"), schema)
    moved = latest.join(
        old.select("user_id", old_day=pl.col("last_before").dt.epoch("d") + 719_163), on="user_id", how="left"
    )
    moved = moved.filter(pl.col("old_day").is_null() | (pl.col("day") > pl.col("old_day")))
    if moved.is_empty():
        return {}

    def was_outside_7d(column: str) -> pl.Expr:
        return pl.col(column).is_null() | (pl.col(column) < ordinal_7d)

    enters_7d = was_outside_7d("old_day") & (pl.col("day") >= ordinal_7d)
    header["before_7d"] += int(moved.select(enters_7d.sum()).item())
    header["before_30d"] += int(moved["old_day"].is_null().sum())
    rows = moved.select(
        "event_date", "user_id", last_before=pl.col("day").map_elements(dt.date.fromordinal, return_dtype=pl.Date)
    )
    store.upsert(cur, store.FOLD_WINDOW, rows)
    today = store.fetch(cur, store.FOLD_USERS, rows.select("event_date", "user_id"), schema)
    if not today.is_empty():
        joined = today.select("user_id", today_day=pl.col("last_before").dt.epoch("d") + 719_163).join(
            moved.select("user_id", "day"), on="user_id"
        )
        header["new_7d"] -= int(
            joined.select((was_outside_7d("today_day") & (pl.col("day") >= ordinal_7d)).sum()).item()
        )
        header["new_30d"] -= int(joined["today_day"].is_null().sum())
        store.upsert(cur, store.FOLD_USERS, rows.join(today.select("user_id"), on="user_id", how="semi"))
    table = TABLE_BY_NAME["users_daily"]
    schema_daily = {"event_date": pl.Date(), **dict.fromkeys(table.columns[1:], pl.Int64())}
    current = store.fetch(cur, table, pl.DataFrame({"event_date": [day]}), schema_daily)
    if current.is_empty():
        return {}
    updated = current.with_columns(
        wau=pl.lit(header["before_7d"] + header["new_7d"], pl.Int64),
        mau=pl.lit(header["before_30d"] + header["new_30d"], pl.Int64),
    )
    return {"users_daily": store.upsert(cur, table, updated)}


def _minutes(
    cur: psycopg.Cursor,
    day: dt.date,
    events: pl.DataFrame,
    tail: pl.DataFrame | None,
    header: dict[str, Any],
    rebuild: bool,
) -> dict[str, int]:
    """Fold new (user, minute) pairs into the per-minute sliding counts and `active_users_minute`."""
    start_ms = int(day_start(day).timestamp() * 1000)
    sources = [events.select("user_id", "event_ts")]
    if tail is not None:
        sources.append(tail.select("user_id", pl.col("event_ts").cast(TS)))
    pairs = (
        pl.concat(sources)
        .select("user_id", m=(pl.col("event_ts").dt.epoch("ms") - start_ms) // MINUTE_MS)
        .filter(pl.col("m").is_between(-LOOKBACK_MINUTES, DAY_MINUTES - 1))
        .unique()
    )
    folded = _folded_minutes(cur, day, pairs.select("user_id").unique(), rebuild)
    new = _new_minutes(pairs, folded)
    _store_minutes(cur, day, new.select("user_id", "m"), folded)
    ordered = new.sort("user_id", "m").with_columns(
        prev=pl.max_horizontal("prev_old", pl.col("m").shift(1).over("user_id"))
    )
    counts_table = store.FOLD_MINUTE_COUNTS
    counts_schema = {"event_date": pl.Date(), "minute_start": MINUTE, **dict.fromkeys(ACTIVE_USER_COLUMNS, pl.Int64())}
    old_counts = store.fetch_day(cur, counts_table, day, counts_schema)
    minutes = pl.datetime_range(
        day_start(day), day_start(day) + dt.timedelta(minutes=DAY_MINUTES - 1), "1m", eager=True
    ).cast(MINUTE)
    counts = pl.DataFrame({"event_date": [day] * DAY_MINUTES, "minute_start": minutes}).join(
        old_counts, on=["event_date", "minute_start"], how="left"
    )
    counts = counts.with_columns(pl.col(c).fill_null(0) for c in ACTIVE_USER_COLUMNS)
    m = ordered["m"].to_numpy()
    prev = ordered["prev"].to_numpy(allow_copy=True).astype(np.float64)
    nxt = ordered["next_old"].to_numpy(allow_copy=True).astype(np.float64)
    changed = np.zeros(DAY_MINUTES, dtype=bool)
    updated = {}
    for n, column in zip(ACTIVE_USER_WINDOWS_MINUTES, ACTIVE_USER_COLUMNS, strict=True):
        low = np.where(np.isnan(prev), m, np.maximum(m, prev + n))
        high = np.where(np.isnan(nxt), m + n, np.minimum(m + n, nxt))
        keep = low < high
        low = np.clip(low[keep], 0, DAY_MINUTES).astype(np.int64)
        high = np.clip(high[keep], 0, DAY_MINUTES).astype(np.int64)
        delta = np.bincount(low, minlength=DAY_MINUTES + 1) - np.bincount(high, minlength=DAY_MINUTES + 1)
        delta = np.cumsum(delta[:DAY_MINUTES])
        changed |= delta != 0
        updated[column] = counts[column].to_numpy() + delta
    counts = counts.with_columns(pl.Series(c, v, dtype=pl.Int64) for c, v in updated.items())
    fresh = header["max_event_ts"] is None and old_counts.is_empty()
    touched = {}
    store.upsert(cur, counts_table, counts if fresh else counts.filter(pl.Series(changed)))
    newest = events.select(pl.col("event_ts").max()).item() if events.height else None
    old_last = header["last_minute"]
    last = max([t for t in (old_last, newest) if t is not None], default=None, key=lambda t: t.timestamp())
    if last is None:
        return touched
    last_index = (int(last.timestamp() * 1000) - start_ms) // MINUTE_MS
    old_index = -1 if old_last is None else (int(old_last.timestamp() * 1000) - start_ms) // MINUTE_MS
    header["last_minute"] = minutes[last_index]
    index = np.arange(DAY_MINUTES)
    serve = (changed | (index > old_index)) & (index <= last_index)
    rows = counts.filter(pl.Series(serve)).select(TABLE_BY_NAME["active_users_minute"].columns)
    touched["active_users_minute"] = store.upsert(cur, TABLE_BY_NAME["active_users_minute"], rows)
    return touched


MINUTE_CODE = np.dtype(">u2")
"""A user's folded minutes are stored as their sorted numbers m + LOOKBACK_MINUTES (minute m of the day;
the previous day's last minutes first, from 0), two bytes big-endian each: most users are active a few
minutes of a day, so a row costs what its user did, not a fixed bitmap of the day."""
_CODES = np.arange(LOOKBACK_MINUTES + DAY_MINUTES).astype(MINUTE_CODE).tobytes()
MINUTE_HEX = pl.Series(
    [_CODES[i : i + MINUTE_CODE.itemsize].hex() for i in range(0, len(_CODES), MINUTE_CODE.itemsize)]
)
"""Each minute's code as written in the row (bytea hex input), so a batch encodes its rows in Polars."""
MINUTES_SCHEMA = {"event_date": pl.Date(), "user_id": pl.String(), "minutes": pl.Binary()}


def _folded_minutes(cur: psycopg.Cursor, day: dt.date, users: pl.DataFrame, rebuild: bool) -> pl.DataFrame:
    """(user_id, m) of every minute already folded for `users` (one row per user: an index probe)."""
    keys = users.select(pl.lit(day).alias("event_date"), "user_id")
    rows = store.fetch(cur, store.FOLD_USER_MINUTES, keys, MINUTES_SCHEMA, rebuild)
    if rows.is_empty():
        return pl.DataFrame(schema={"user_id": pl.String(), "m": pl.Int64()})
    per_user = (rows["minutes"].bin.size() // MINUTE_CODE.itemsize).to_numpy()
    minutes = np.frombuffer(b"".join(rows["minutes"].to_list()), dtype=MINUTE_CODE).astype(np.int64) - LOOKBACK_MINUTES
    return pl.DataFrame({"user_id": rows["user_id"].gather(np.repeat(np.arange(rows.height), per_user)), "m": minutes})


def _new_minutes(pairs: pl.DataFrame, folded: pl.DataFrame) -> pl.DataFrame:
    """The pairs (user_id, m) not folded yet, each with its user's nearest folded minutes before and after
    (prev_old, next_old; null when none), by two as-of joins."""
    new = pairs.join(folded, on=["user_id", "m"], how="anti").sort("m")
    if folded.is_empty():
        return new.with_columns(prev_old=pl.lit(None, pl.Int64), next_old=pl.lit(None, pl.Int64))
    ordered = folded.sort("m")

    def nearest(strategy: str, name: str) -> pl.DataFrame:
        return new.join_asof(
            ordered.with_columns(pl.col("m").alias(name)),
            on="m",
            by="user_id",
            strategy=strategy,  # type: ignore[arg-type]
            allow_exact_matches=False,
            check_sortedness=False,
        ).select("user_id", "m", name)

    return new.join(nearest("backward", "prev_old"), on=["user_id", "m"]).join(
        nearest("forward", "next_old"), on=["user_id", "m"]
    )


def _store_minutes(cur: psycopg.Cursor, day: dt.date, new: pl.DataFrame, folded: pl.DataFrame) -> None:
    """Add the `new` pairs to their users' folded minutes (rows of new users are created)."""
    if new.is_empty():
        return
    users = new.select("user_id").unique()
    minutes = pl.concat([new, folded.join(users, on="user_id", how="semi")]).unique().sort("user_id", "m")
    # Each minute's code is looked up once over the whole column: a `pl.lit(MINUTE_HEX).gather` inside
    # the aggregation materialised the 1,500-code literal per user (2.4 GB and 4.8 s for 95k users).
    rows = (
        minutes.with_columns(code=MINUTE_HEX.gather(minutes["m"] + LOOKBACK_MINUTES))
        .group_by("user_id", maintain_order=True)
        .agg(minutes=pl.lit("\\x") + pl.col("code").str.join(""))
    )
    rows = rows.select(pl.lit(day).alias("event_date"), "user_id", "minutes")
    store.merge(cur, store.FOLD_USER_MINUTES, rows)


def _write_ledger(cur: psycopg.Cursor, batch: FoldBatch, header: dict[str, Any], run_id: str | None) -> dict[str, int]:
    counts = {}
    for asset in catalog.EVENT_ROLLUPS:
        rows = 0
        for table in TABLES[asset]:
            rows += cur.execute(
                f"SELECT count(*) FROM {table.qualified} WHERE {table.date_column} = %s", (batch.day,)
            ).fetchone()[0]  # type: ignore[index]
        counts[asset] = rows
        version = max(batch.new_version, batch.window.version) if asset == catalog.USERS else batch.new_version
        cur.execute(
            UPSERT_LEDGER,
            {
                "asset": asset,
                "day": batch.day,
                "rows": rows,
                "version": version,
                "offsets": Jsonb(dict(batch.source_offsets)),
                "max_event_ts": header["max_event_ts"],
                "run_id": run_id,
            },
        )
        cur.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, f"{asset}:{batch.day.isoformat()}"))
    return counts


def fold(
    conn: psycopg.Connection,
    batch: FoldBatch,
    fx: FxLookup | None,
    reporting_currency: str,
    run_id: str | None = None,
) -> FoldOutcome:
    """Fold `batch` into the day's state, serving rows and ledger rows, in one transaction (`conn` in
    autocommit mode). Raises NeedsRebuildError (nothing changed) when the state cannot take it."""
    began = time.monotonic()
    rebuild = batch.after_version is None
    outcome = FoldOutcome(batch.day, rebuild, batch.events.height, 0, lake_version=batch.new_version)
    with conn.transaction(), conn.cursor() as cur:
        _lock(cur, batch.day)
        store.probe_plans(cur)
        if rebuild:
            _clear(cur, batch.day)
            header = _new_header(batch.day, batch.window)
            if batch.window.last_seen is not None and batch.window.last_seen.height:
                window = batch.window.last_seen.select(
                    pl.lit(batch.day).alias("event_date"),
                    pl.col("user_id").cast(pl.String),
                    last_before=pl.col("day").map_elements(dt.date.fromordinal, return_dtype=pl.Date),
                )
                store.insert(cur, store.FOLD_WINDOW, window)
        else:
            header = _check_state(cur, batch)
            if batch.window.added is not None:
                outcome.rows_touched |= _window_delta(cur, batch.day, batch.window.added, header)
            header["window_digest"] = batch.window.digest
            header["window_version"] = batch.window.version
        events = _unseen(cur, batch) if batch.events.height else batch.events
        outcome.events_folded = events.height
        tail = batch.window.tail
        if events.height or rebuild or (tail is not None and tail.height):
            sales = batch.sales.join(events.select("event_id"), on="event_id", how="semi")
            touched = outcome.rows_touched
            if events.height:
                touched |= _sales(cur, batch.day, sales, fx, reporting_currency, rebuild)
                touched |= _products(cur, batch.day, sales, rebuild)
                touched |= _customers(cur, batch.day, sales, rebuild)
                touched |= _traffic(cur, batch.day, events, rebuild)
                funnel, new_sessions = _sessions(cur, batch.day, events, rebuild)
                touched |= funnel
                touched |= _users_daily(cur, batch.day, events, new_sessions, header, rebuild)
            touched |= _minutes(cur, batch.day, events, tail, header, rebuild)
            newest = events.select(pl.col("event_ts").max()).item() if events.height else None
            if newest is not None and (header["max_event_ts"] is None or newest > header["max_event_ts"]):
                header["max_event_ts"] = newest
        header["lake_version"] = batch.new_version
        frame = pl.DataFrame([header], schema=HEADER_SCHEMA)
        store.upsert(cur, store.FOLD_DAYS, frame)
        outcome.row_counts = _write_ledger(cur, batch, header, run_id)
    outcome.seconds = time.monotonic() - began
    return outcome


def state_bytes(conn: psycopg.Connection) -> int:
    """On-disk size of every fold state table (all days), indexes included."""
    sizes = [f"pg_total_relation_size('{store.SCHEMA}.{t.name}')" for t in store.STATE_TABLES]
    return int(conn.execute(f"SELECT {' + '.join(sizes)}").fetchone()[0])  # type: ignore[index]
