"""Compute and write rollup partitions: the plain-Python body of the Dagster rollup assets.

One read of a day's events (deduplicated once) serves every selected event rollup; a range of days is
processed in ascending order so a day's events also give the next day its previous-day tail and the
rolling DAU window. Every partition's rows depend only on the lake, never on the range it was
computed in or on other serving tables, so any rerun, in any order, writes identical rows.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal

import polars as pl
import psycopg

from shoppulse.lake.layout import PartitionSnapshot
from shoppulse.lake.table import LakeRef
from shoppulse.metrics import MAU_DAYS
from shoppulse.rollups import catalog
from shoppulse.rollups.customers import customers_daily
from shoppulse.rollups.funnel import funnel_daily
from shoppulse.rollups.fx import fx_rows, rates_in_force
from shoppulse.rollups.incremental.fold import FoldOutcome
from shoppulse.rollups.products import products_tables
from shoppulse.rollups.quality import (
    late_events_daily,
    newest_received,
    quality_snapshots,
    quarantine_daily,
    quarantine_hourly,
)
from shoppulse.rollups.sales import in_reporting_currency, sales_tables
from shoppulse.rollups.source import (
    DayEvents,
    LakeState,
    first_copies_in_parts,
    load_day,
    source_offsets,
)
from shoppulse.rollups.traffic import traffic_hourly
from shoppulse.rollups.users import (
    DAY,
    LOOKBACK_MINUTES,
    RollingActiveUsers,
    UserDaysCache,
    active_users_minute,
    day_start,
    distinct_users,
    previous_day_tail,
    users_daily,
)
from shoppulse.rollups.writer import PartitionWrite, WriteOutcome, replace_partition
from shoppulse.warehouse.db import alembic_config, current_revision, migrate

logger = logging.getLogger(__name__)

FxLookup = Callable[[dt.date, Collection[str]], Mapping[str, Decimal]]


@dataclass
class DayInputs:
    """Everything the event rollups of one day read."""

    day: dt.date
    state: LakeState
    events: DayEvents
    tail: pl.DataFrame | None = None
    """(user_id, event_ts) of the previous day's last hour (users rollup only)."""
    window: RollingActiveUsers | None = None
    """Distinct users of the MAU window ending with `day` (users rollup only)."""
    window_snapshots: dict[dt.date, PartitionSnapshot] = field(default_factory=dict)
    users: pl.Series | None = None
    """The distinct user_ids of the day's events (users rollup only)."""


def _read_day(lake_dir: LakeRef, day: dt.date, state: LakeState) -> tuple[LakeState, DayEvents]:
    """The day's events at the pinned table version of `state`."""
    return state, load_day(lake_dir, day, state.version)


class EventInputs:
    """Reads DayInputs for ascending days, reusing the previous day's data for the users rollup.

    With a `read_ahead` executor, `prefetch(day)` starts reading a day in the background, so a range's
    next day is decoded while the current one is computed (together they keep both cores busier).
    """

    def __init__(
        self, lake_dir: LakeRef, with_users: bool, read_ahead: Executor | None = None, version: int | None = None
    ) -> None:
        self.lake_dir = lake_dir
        self.with_users = with_users
        self.state = LakeState.read(lake_dir, version)
        """Every day is read at this one table version (the newest when the reader was made, by default)."""
        self.cache = UserDaysCache(self.lake_dir, self.state.version)
        self._previous: DayInputs | None = None
        self._window: RollingActiveUsers | None = None
        self._snapshots: dict[dt.date, PartitionSnapshot] = {}
        self._read_ahead = read_ahead
        self._prefetched: dict[dt.date, Future[tuple[LakeState, DayEvents]]] = {}

    def prefetch(self, day: dt.date) -> None:
        if self._read_ahead is not None and day not in self._prefetched:
            self._prefetched[day] = self._read_ahead.submit(_read_day, self.lake_dir, day, self.state)

    def read(self, day: dt.date) -> DayInputs:
        pending = self._prefetched.pop(day, None)
        state, events = pending.result() if pending is not None else _read_day(self.lake_dir, day, self.state)
        inputs = DayInputs(day, state, events)
        if self.with_users:
            window = self._window_before(day)
            users = distinct_users(events.events)
            if events.snapshot.files:
                self.cache.put(events.snapshot, users)
            window.add(day, users)
            self._snapshots[day] = events.snapshot
            oldest = day - dt.timedelta(days=MAU_DAYS - 1)
            self._snapshots = {d: s for d, s in self._snapshots.items() if d >= oldest}
            inputs.window = window
            inputs.users = users
            inputs.window_snapshots = dict(self._snapshots)
            inputs.tail = self._tail(day)
            self._previous = inputs
        return inputs

    def _window_before(self, day: dt.date) -> RollingActiveUsers:
        """The rolling window holding the MAU_DAYS − 1 days before `day` (kept from the previous day)."""
        if self._window is not None and self._previous is not None and self._previous.day == day - DAY:
            return self._window
        self._snapshots, self._window = self.cache.window_before(day)
        return self._window

    def _tail(self, day: dt.date) -> pl.DataFrame:
        previous = self._previous
        if previous is not None and previous.day == day - DAY:
            cutoff = day_start(day) - dt.timedelta(minutes=LOOKBACK_MINUTES)
            return previous.events.events.select("user_id", "event_ts").filter(pl.col("event_ts") >= cutoff)
        _, tail = previous_day_tail(self.lake_dir, day, self.state.version)
        return tail


HEAVY_ROLLUPS = (catalog.USERS, catalog.FUNNEL)
"""Computed beside the others when an executor is given (Polars releases the GIL while it works)."""


def event_rollup_writes(
    inputs: DayInputs,
    assets: Collection[str],
    fx: FxLookup | None,
    reporting_currency: str,
    run_id: str | None = None,
    executor: Executor | None = None,
) -> list[PartitionWrite]:
    """The new contents of each selected event rollup's partition for `inputs.day` (nothing written)."""
    day, events, sales = inputs.day, inputs.events.events, inputs.events.sales
    own = [inputs.events.snapshot]
    common = {
        "source_offsets": source_offsets(inputs.state, own),
        "lake_version": inputs.state.version,
        "max_event_ts": inputs.events.max_event_ts,
        "run_id": run_id,
    }

    def compute(asset: str) -> PartitionWrite:
        extra: dict[str, object] = {}
        if asset == catalog.SALES:
            tables = with_reporting_currency(sales_tables(sales, day), day, fx, reporting_currency)
        elif asset == catalog.PRODUCTS:
            tables = products_tables(sales, day)
        elif asset == catalog.USERS:
            if inputs.window is None or inputs.tail is None:
                raise ValueError("users rollup needs inputs read with_users=True")
            tables = {
                "active_users_minute": active_users_minute(events, inputs.tail, day, inputs.users),
                "users_daily": users_daily(events, day, inputs.window),
                "traffic_hourly": traffic_hourly(events, day),
            }
            snapshots = list(inputs.window_snapshots.values())
            extra = {
                "source_offsets": source_offsets(inputs.state, snapshots),
                "lake_version": inputs.state.version,
            }
        elif asset == catalog.FUNNEL:
            tables = {"funnel_daily": funnel_daily(events, day)}
        else:
            tables = {"customers_daily": customers_daily(sales, day, has_events=not events.is_empty())}
        return PartitionWrite(asset=asset, day=day, tables=tables, **{**common, **extra})  # type: ignore[arg-type]

    selected = [asset for asset in catalog.EVENT_ROLLUPS if asset in assets]
    if executor is None:
        return [compute(asset) for asset in selected]
    heavy = {asset: executor.submit(compute, asset) for asset in selected if asset in HEAVY_ROLLUPS}
    light = {asset: compute(asset) for asset in selected if asset not in HEAVY_ROLLUPS}
    return [light[asset] if asset in light else heavy[asset].result() for asset in selected]


def with_reporting_currency(
    tables: dict[str, pl.DataFrame], day: dt.date, fx: FxLookup | None, reporting_currency: str
) -> dict[str, pl.DataFrame]:
    """The sales tables with their hourly and daily rows converted into the reporting currency."""
    currencies = set(tables["sales_daily"]["currency"].to_list())
    per_usd = fx(day, currencies | {reporting_currency}) if (fx and currencies) else {}
    return {
        **tables,
        "sales_daily_reporting": in_reporting_currency(
            tables["sales_daily"], ("event_date",), reporting_currency, per_usd
        ),
        "sales_hourly_reporting": in_reporting_currency(
            tables["sales_hourly"], ("event_date", "hour_start"), reporting_currency, per_usd
        ),
    }


ADDITIVE_ROLLUPS = (catalog.SALES, catalog.PRODUCTS)
"""Rollups whose rows are sums over events (category: a min): any split of a day's deduplicated events
into parts gives them as the per-key sums of the parts' rows."""


def additive_rollup_writes_in_parts(
    snapshot: PartitionSnapshot,
    assets: Collection[str],
    fx: FxLookup | None,
    reporting_currency: str,
    max_events: int,
) -> list[PartitionWrite]:
    """The rows of the selected ADDITIVE_ROLLUPS of a day too large to hold in memory, computed exactly
    as `event_rollup_writes` does, over parts of at most `max_events` rows: the copies that lose to a
    copy in another part are dropped first (`later_copies_across`), then each part's rows are summed."""
    day = snapshot.date
    parts: dict[str, list[pl.DataFrame]] = {}
    for part in first_copies_in_parts(snapshot, max_events):
        tables: dict[str, pl.DataFrame] = {}
        if catalog.SALES in assets:
            tables |= sales_tables(part.sales, day)
        if catalog.PRODUCTS in assets:
            tables |= products_tables(part.sales, day)
        for name, frame in tables.items():
            parts.setdefault(name, []).append(frame)
    writes = []
    for asset in (a for a in ADDITIVE_ROLLUPS if a in assets):
        tables = {t.name: catalog.sum_rows(t.name, parts[t.name]) for t in catalog.TABLES[asset] if t.name in parts}
        if asset == catalog.SALES:
            tables = with_reporting_currency(tables, day, fx, reporting_currency)
        writes.append(PartitionWrite(asset=asset, day=day, tables=tables, lake_version=snapshot.version))
    return writes


def quality_write(
    lake_dir: LakeRef, day: dt.date, run_id: str | None = None, version: int | None = None
) -> PartitionWrite:
    """The new contents of the ingest_quality partition of received date `day`, at table `version`
    (default: the newest)."""
    state = LakeState.read(lake_dir, version)
    quarantine, late = quality_snapshots(lake_dir, day, state.version)
    return PartitionWrite(
        asset=catalog.INGEST_QUALITY,
        day=day,
        tables={
            "quarantine_daily": quarantine_daily(quarantine),
            "late_events_daily": late_events_daily(late),
            "quarantine_hourly": quarantine_hourly(quarantine),
        },
        lake_version=state.version,
        source_offsets=source_offsets(state, [quarantine, late]),
        max_event_ts=newest_received(quarantine, late),
        run_id=run_id,
    )


def fx_write(day: dt.date, run_id: str | None = None) -> PartitionWrite:
    """The new contents of the fx_rates partition of `day` (synthetic rates, no lake input: version 0)."""
    return PartitionWrite(catalog.FX_RATES, day, {"fx_rates": fx_rows([day])}, lake_version=0, run_id=run_id)


@dataclass
class RunSummary:
    """What a rollup run wrote, per partition."""

    outcomes: list[WriteOutcome] = field(default_factory=list)
    seconds: float = 0.0

    def for_asset(self, asset: str) -> list[WriteOutcome]:
        return [o for o in self.outcomes if o.asset == asset]


class PartitionWriters:
    """Replace partitions on a few connections in background threads, so computing the next day
    overlaps writing the previous one. At most `max_pending` writes wait at a time (bounded memory)."""

    def __init__(self, database_url: str, workers: int = 2, max_pending: int = 8) -> None:
        self.database_url = database_url
        self._local = threading.local()
        self._connections: list[psycopg.Connection] = []
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rollup-writer")
        self._slots = threading.BoundedSemaphore(max_pending)
        self._futures: list[Future[WriteOutcome]] = []

    def _connection(self) -> psycopg.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = psycopg.connect(self.database_url, autocommit=True)
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _write(self, write: PartitionWrite) -> WriteOutcome:
        try:
            return replace_partition(self._connection(), write)
        finally:
            self._slots.release()

    def submit(self, write: PartitionWrite) -> None:
        for done in [f for f in self._futures if f.done()]:
            done.result()  # surface a failed write early
        self._slots.acquire()
        self._futures.append(self._pool.submit(self._write, write))

    def finish(self) -> list[WriteOutcome]:
        """Wait for every write; raises the first failure."""
        try:
            return [future.result() for future in self._futures]
        finally:
            self.close()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        for conn in self._connections:
            conn.close()

    def __enter__(self) -> PartitionWriters:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()  # after `finish`, or on an error: pending writes are cancelled, connections closed


def run_event_rollups(
    lake_dir: LakeRef,
    database_url: str,
    days: Sequence[dt.date],
    assets: Collection[str],
    reporting_currency: str,
    run_id: str | None = None,
    writers: int = 2,
    version: int | None = None,
) -> RunSummary:
    """Compute and replace the selected event rollups for `days` (read in ascending order), all from
    one table version: `version` ("as of": a rerun of it writes identical rows), default the newest."""
    began = time.monotonic()
    selected = [a for a in catalog.EVENT_ROLLUPS if a in assets]
    with PartitionWriters(database_url, workers=writers) as pool:
        with (
            psycopg.connect(database_url, autocommit=True) as conn,
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="rollup-read-ahead") as read_ahead,
            ThreadPoolExecutor(max_workers=len(HEAVY_ROLLUPS), thread_name_prefix="rollup-compute") as compute,
        ):
            reader = EventInputs(lake_dir, with_users=catalog.USERS in selected, read_ahead=read_ahead, version=version)

            def fx(day: dt.date, currencies: Collection[str]) -> Mapping[str, Decimal]:
                return rates_in_force(conn, day, currencies)

            ordered = sorted(set(days))
            for day, following in zip(ordered, [*ordered[1:], None], strict=True):
                inputs = reader.read(day)
                if following is not None:
                    reader.prefetch(following)
                for write in event_rollup_writes(inputs, selected, fx, reporting_currency, run_id, compute):
                    pool.submit(write)
        summary = RunSummary(pool.finish())
    for outcome in summary.outcomes:
        if not outcome.written:
            logger.info(
                "%s %s: ledger has newer lake version %s; skipped", outcome.asset, outcome.day, outcome.ledger_version
            )
    summary.seconds = time.monotonic() - began
    return summary


def run_partition_writes(
    database_url: str, days: Iterable[dt.date], make_write: Callable[[dt.date], PartitionWrite], writers: int = 2
) -> RunSummary:
    """Replace one partition per day with `make_write(day)` (fx_rates, ingest_quality); a day's write
    overlaps computing the next one's, on `writers` connections."""
    began = time.monotonic()
    with PartitionWriters(database_url, workers=writers) as pool:
        for day in sorted(set(days)):
            pool.submit(make_write(day))
        summary = RunSummary(pool.finish())
    summary.seconds = time.monotonic() - began
    return summary


_MIGRATED: set[str] = set()


def ensure_migrated(database_url: str) -> None:
    """Apply pending migrations once per process (a no-op query after the first call)."""
    if database_url in _MIGRATED:
        return
    if current_revision(database_url) != head_revision():
        migrate(database_url)
    _MIGRATED.add(database_url)


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("postgresql://unused/unused")).get_current_head()


def fold_event_rollups(
    lake_dir: LakeRef,
    database_url: str,
    day: dt.date,
    assets: Collection[str],
    reporting_currency: str,
    run_id: str | None = None,
    keep_state_days: int = 4,
) -> tuple[RunSummary, FoldOutcome]:
    """Bring every event rollup of `day` up to the lake by folding only the events it received since its
    fold state's lake version (see `shoppulse.rollups.incremental`); fold state of days more than
    `keep_state_days` before `day` is dropped (those partitions only ever recompute)."""
    from shoppulse.rollups.incremental import fold_partition, prune_state

    began = time.monotonic()
    with psycopg.connect(database_url, autocommit=True) as conn:

        def fx(d: dt.date, currencies: Collection[str]) -> Mapping[str, Decimal]:
            return rates_in_force(conn, d, currencies)

        outcome = fold_partition(lake_dir, conn, day, fx, reporting_currency, run_id)
        prune_state(conn, day - dt.timedelta(days=keep_state_days))
    per_asset = {asset: sum(outcome.rows_touched.get(t.name, 0) for t in catalog.TABLES[asset]) for asset in assets}
    summary = RunSummary(
        [
            WriteOutcome(
                asset, day, True, outcome.row_counts.get(asset, 0), outcome.lake_version, None, per_asset[asset]
            )
            for asset in catalog.EVENT_ROLLUPS
            if asset in assets
        ]
    )
    summary.seconds = time.monotonic() - began
    return summary, outcome
