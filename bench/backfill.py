"""Backfill benchmark: N days × M events/day through a Dagster asset backfill, against a bare DuckDB
query over the same Parquet files, measured in the same run.

    uv run python bench/backfill.py [--days 30] [--events-per-day 1000000] [--lake-dir DIR] [--repeat N] [--s3]

1. Builds (or reuses) a lake of synthetic, contract-valid events written with `append_events`: sessions
   of ~8 events, Zipf product popularity, USD/EUR/GBP/JPY markets, ~0.5% re-delivered copies.
2. Bare baseline: one DuckDB query aggregating every file of the range (group by day, type, country,
   channel, device, currency with counts, a sum and distinct users) — reading and aggregating, nothing else.
3. The backfill: every rollup asset over the whole range, launched like the UI's "Materialize →
   backfill" (a PartitionBackfill driven by the daemon's backfill iteration, against the real
   Definitions), executed in this process into a fresh, migrated PostgreSQL database on the stack's
   server, with a Dagster instance that stores like the deployed one (dagster.yaml's storage, in a
   scratch database). The single-run backfill policy makes it ONE run; its asset checks run too, as in the UI.
4. Prints wall times, events/s, rows written, the run/step breakdown (and the time outside the steps),
   the CPU the backfill used (this process and the PostgreSQL server) against the cores' capacity, and
   the ratio to the baseline. With --repeat N: N backfills, each into fresh databases, and their median
   (the machine's speed drifts between runs; `make bench` runs three).
5. With --s3: copies the lake (the Delta table as is) to ``SHOPPULSE_BENCH_S3_URI`` (default
   ``s3://shoppulse/bench-backfill-...``, on the server AWS_ENDPOINT_URL names) and runs the same
   backfill reading from S3; prints its wall time and the ratio to the local backfill.
"""

from __future__ import annotations

# ruff: noqa: E402 (the allocator is tuned before polars loads, as in the run workers)
from shoppulse.allocator import tune_for_batch

tune_for_batch()

import argparse
import datetime as dt
import json
import os
import statistics
import time
import uuid
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import psycopg
import pyarrow.fs as pafs
from psycopg import sql

from shoppulse.contract.schema import ITEM_STRUCT, LAKE_SCHEMA
from shoppulse.lake.layout import LakeTable, read_partition
from shoppulse.lake.table import arrow_filesystem
from shoppulse.lake.writer import append_events
from shoppulse.settings import get_settings
from shoppulse.stack.processes import CpuMeter
from shoppulse.stack.services import POSTGRES, local_pid
from shoppulse.warehouse.db import migrate, with_database

# country, traffic share, currency (a subset of a global shop's markets)
MARKETS = (
    ("US", 0.36, "USD"),
    ("CA", 0.05, "USD"),
    ("GB", 0.12, "GBP"),
    ("DE", 0.11, "EUR"),
    ("FR", 0.08, "EUR"),
    ("ES", 0.05, "EUR"),
    ("IT", 0.05, "EUR"),
    ("JP", 0.10, "JPY"),
    ("AU", 0.05, "USD"),
    ("MX", 0.03, "USD"),
)
PRICE_FACTOR = {"USD": 1.0, "EUR": 0.92, "GBP": 0.79, "JPY": 1.5}  # JPY: yen per US cent
CHANNELS = ("direct", "organic_search", "paid_search", "social", "email", "referral", "affiliate")
DEVICES = ("desktop", "mobile", "tablet")
EVENT_MIX = {
    "page_view": 0.50,
    "product_view": 0.30,
    "add_to_cart": 0.08,
    "remove_from_cart": 0.015,
    "checkout_started": 0.03,
    "order_placed": 0.012,
    "payment": 0.012,
    "refund": 0.0015,
    "order_cancelled": 0.0006,
}
SALES_TYPES = ("order_placed", "order_cancelled", "refund")
N_PRODUCTS = 5_000
N_CATEGORIES = 13
ZIPF = 1.07
N_USERS = 400_000
EVENTS_PER_SESSION = 8
SESSION_MS = 20 * 60_000
DUPLICATE_RATE = 0.005
KAFKA_PARTITIONS = 6


def _pick(rng: np.random.Generator, weights: np.ndarray, n: int) -> np.ndarray:
    cdf = np.cumsum(weights / weights.sum())
    return np.minimum(np.searchsorted(cdf, rng.random(n)), len(weights) - 1)


def _labels(prefix: str, numbers: np.ndarray) -> pl.Expr:
    return pl.lit(prefix) + pl.lit(pl.Series(numbers)).cast(pl.String)


def generate_day(day: dt.date, n_events: int, seed: int = 1) -> pl.DataFrame:
    """`n_events` valid synthetic events of one UTC day plus ~0.5% re-delivered copies (LAKE_SCHEMA).

    Sessions of ~8 events share a user, country, channel and device; products have Zipf popularity;
    money is consistent with the contract (subtotal = Σ lines, total = subtotal − discount + shipping + tax).
    """
    rng = np.random.default_rng([seed, day.toordinal()])
    n_sessions = max(n_events // EVENTS_PER_SESSION, 1)
    session = rng.integers(0, n_sessions, n_events)
    market = _pick(rng, np.array([m[1] for m in MARKETS]), n_sessions)[session]
    types = np.array(list(EVENT_MIX))
    event_type = types[_pick(rng, np.array(list(EVENT_MIX.values())), n_events)]
    popularity = 1.0 / np.arange(1, N_PRODUCTS + 1) ** ZIPF
    product = _pick(rng, popularity, n_events)
    usd_price = 500 + (np.arange(N_PRODUCTS) * 7919) % 12_000
    day_ms = int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp() * 1000)
    prefix = f"{seed % 0xFFFFFFFF:08x}-{day.toordinal() % 0xFFFF:04x}-4{day.year % 1000:03d}-8000-"
    currency_of = np.array([m[2] for m in MARKETS])[market]
    factor = np.array([PRICE_FACTOR[m[2]] for m in MARKETS])[market]
    base = pl.DataFrame(
        {
            "_row": np.arange(n_events),
            "event_type": event_type,
            "_ms": day_ms
            + np.minimum(
                rng.integers(0, 86_400_000, n_sessions)[session] + rng.integers(0, SESSION_MS, n_events), 86_399_999
            ),
            "_user": rng.integers(0, N_USERS, n_sessions)[session],
            "_session": session,
            "country": np.array([m[0] for m in MARKETS])[market],
            "device": np.array(DEVICES)[rng.integers(0, len(DEVICES), n_sessions)][session],
            "channel": np.array(CHANNELS)[rng.integers(0, len(CHANNELS), n_sessions)][session],
            "currency": currency_of,
            "_product": product,
            "_price": np.round(usd_price[product] * factor).astype(np.int64),
            "_qty": rng.integers(1, 4, n_events),
            "_order_no": rng.geometric(0.45, n_events),
        }
    ).with_columns(
        user_id=pl.lit("u_") + pl.col("_user").cast(pl.String),
        session_id=pl.lit(f"s_{day.toordinal()}_") + pl.col("_session").cast(pl.String),
        product_id=pl.lit("p_") + pl.col("_product").cast(pl.String),
        category=pl.lit("c_") + (pl.col("_product") % N_CATEGORIES).cast(pl.String),
    )
    lines = _lines(base, rng, usd_price, popularity)
    t = pl.col("event_type")
    ordered = t.is_in(["order_placed", "order_cancelled"])
    row = pl.col("_row").cast(pl.String)
    frame = (
        base.join(lines, on="_row", how="left")
        .with_columns(
            event_id=pl.lit(prefix) + row.str.zfill(12),
            schema_version=pl.lit(1, pl.Int64),
            event_ts=pl.from_epoch("_ms", "ms").dt.replace_time_zone("UTC"),
            page_type=pl.when(t == "page_view").then(pl.lit("home")),
            url_path=pl.when(t == "page_view").then(pl.lit("/")),
            price=pl.when(t == "product_view").then("_price"),
            cart_id=pl.when(t.is_in(["add_to_cart", "remove_from_cart", "checkout_started", "order_placed"])).then(
                pl.col("session_id") + "_cart"
            ),
            quantity=pl.when(t.is_in(["add_to_cart", "remove_from_cart"])).then("_qty"),
            unit_price=pl.when(t.is_in(["add_to_cart", "remove_from_cart"])).then("_price"),
            checkout_id=pl.when(t == "checkout_started").then(pl.col("session_id") + "_co"),
            item_count=pl.when(t == "checkout_started").then("_qty"),
            subtotal=pl.when(ordered)
            .then("_subtotal")
            .when(t == "checkout_started")
            .then(pl.col("_price") * pl.col("_qty")),
            order_id=pl.when(t.is_in([*SALES_TYPES, "payment"])).then(pl.lit("o_") + row),
            discount=pl.when(ordered).then("_discount"),
            shipping=pl.when(ordered).then(pl.col("_shipping")).when(t == "refund").then(pl.lit(0, pl.Int64)),
            tax=pl.when(ordered | (t == "refund")).then("_tax"),
            total=pl.when(ordered).then(
                pl.col("_subtotal") - pl.col("_discount") + pl.col("_shipping") + pl.col("_tax")
            ),
            payment_method=pl.when(t.is_in(["order_placed", "payment"])).then(pl.lit("card")),
            customer_order_number=pl.when(t == "order_placed").then("_order_no"),
            payment_id=pl.when(t == "payment").then(pl.lit("pay_") + row),
            payment_status=pl.when(t == "payment").then(pl.lit("captured")),
            amount=pl.when(t == "refund")
            .then(pl.col("_refund_amount") + pl.col("_tax"))
            .when(t == "payment")
            .then("_price"),
            reason=pl.when(t == "order_cancelled").then(pl.lit("customer")).when(t == "refund").then(pl.lit("damaged")),
            refund_id=pl.when(t == "refund").then(pl.lit("r_") + row),
        )
        .with_columns(
            product_id=pl.when(t.is_in(["product_view", "add_to_cart", "remove_from_cart"])).then("product_id"),
            category=pl.when(t.is_in(["product_view", "add_to_cart", "remove_from_cart"])).then("category"),
            currency=pl.when(t != "page_view").then("currency"),
            kafka_partition=(pl.col("_session") % KAFKA_PARTITIONS).cast(pl.Int32),
            kafka_ts=pl.col("event_ts") + pl.duration(milliseconds=pl.lit(pl.Series(rng.integers(5, 2_000, n_events)))),
        )
    )
    copies = frame.sample(fraction=DUPLICATE_RATE, seed=seed).with_columns(
        kafka_ts=pl.col("kafka_ts") + pl.duration(seconds=30)
    )
    frame = (
        pl.concat([frame, copies])
        .sort("kafka_ts")
        .with_columns(
            kafka_offset=pl.int_range(pl.len(), dtype=pl.Int64).over("kafka_partition") + day.toordinal() * 10_000_000,
            event_date=pl.col("event_ts").dt.date(),
        )
    )
    missing = [pl.lit(None, dtype).alias(name) for name, dtype in LAKE_SCHEMA.items() if name not in frame.columns]
    return frame.with_columns(missing).select([pl.col(name).cast(dtype) for name, dtype in LAKE_SCHEMA.items()])


def _lines(base: pl.DataFrame, rng: np.random.Generator, usd_price: np.ndarray, popularity: np.ndarray) -> pl.DataFrame:
    """items, subtotal, discount, shipping and tax of the day's orders, cancellations and refunds."""
    sales = base.filter(pl.col("event_type").is_in(SALES_TYPES)).select("_row", "event_type", "currency")
    is_refund = sales["event_type"].to_numpy() == "refund"
    n_lines = np.where(is_refund, 1, rng.integers(1, 4, sales.height))
    rows = np.repeat(sales["_row"].to_numpy(), n_lines)
    product = _pick(rng, popularity, len(rows))
    factor = np.repeat(sales["currency"].replace_strict(PRICE_FACTOR, return_dtype=pl.Float64).to_numpy(), n_lines)
    unit_price = np.round(usd_price[product] * factor).astype(np.int64)
    quantity = rng.integers(1, 4, len(rows))
    discount = unit_price * quantity * rng.choice([0, 0, 0, 5, 10], len(rows)) // 100
    refund = np.repeat(is_refund, n_lines)
    lines = (
        pl.DataFrame(
            {"_row": rows, "_refund": refund, "_product": product, "quantity": quantity, "unit_price": unit_price}
        )
        .with_columns(
            discount=pl.lit(pl.Series(discount)),
            product_id=pl.lit("p_") + pl.col("_product").cast(pl.String),
            category=pl.lit("c_") + (pl.col("_product") % N_CATEGORIES).cast(pl.String),
        )
        .with_columns(amount=pl.col("unit_price") * pl.col("quantity") - pl.col("discount"))
    )
    item = pl.struct(
        "product_id",
        "category",
        "quantity",
        pl.when(~pl.col("_refund")).then("unit_price").alias("unit_price"),
        pl.when(~pl.col("_refund")).then("discount").alias("discount"),
        pl.when(pl.col("_refund")).then("amount").alias("amount"),
    ).cast(ITEM_STRUCT)
    return (
        lines.group_by("_row")
        .agg(
            items=item,
            _subtotal=(pl.col("unit_price") * pl.col("quantity")).sum(),
            _discount=pl.col("discount").sum(),
            _refund_amount=pl.col("amount").sum(),
        )
        .with_columns(_shipping=pl.lit(599, pl.Int64), _tax=(pl.col("_subtotal") - pl.col("_discount")) * 8 // 100)
    )


# -- The benchmark ---------------------------------------------------------------------------------

ROLLUP_ASSETS = ["fx_rates", "sales", "products", "users", "funnel", "customers", "ingest_quality"]


def build_lake(lake: Path, days: list[dt.date], events_per_day: int, seed: int) -> int:
    """Write the synthetic lake (one commit per day) unless `lake` already holds exactly this one."""
    marker = lake / "_bench.json"
    wanted = {"days": [d.isoformat() for d in days], "events_per_day": events_per_day, "seed": seed}
    if marker.exists() and json.loads(marker.read_text()) == wanted and (lake / "_delta_log").exists():
        return sum(read_partition(lake, LakeTable.EVENTS, day).rows for day in days)
    if lake.exists() and any(lake.iterdir()):
        raise SystemExit(f"{lake} holds another lake; pass an empty or new --lake-dir")
    rows = 0
    began = time.monotonic()
    for number, day in enumerate(days, 1):
        frame = generate_day(day, events_per_day, seed)
        append_events(lake, frame)
        rows += frame.height
        print(f"  lake: {number}/{len(days)} days, {rows:,} rows, {time.monotonic() - began:.0f}s", flush=True)
    marker.write_text(json.dumps(wanted))
    return rows


BARE_QUERIES = {
    "sums": """
        SELECT event_date, event_type, country, channel, device, currency, count(*) AS events, sum(subtotal)
        FROM read_parquet($files) GROUP BY ALL
    """,
    "sums+distinct": """
        SELECT event_date, event_type, country, channel, device, currency, count(*) AS events, sum(subtotal),
               count(DISTINCT user_id) AS users
        FROM read_parquet($files) GROUP BY ALL
    """,
}
"""Bare baselines: aggregate every file of the range; the second also counts distinct users per group."""


def bare_duckdb(lake: Path, days: list[dt.date]) -> tuple[dict[str, float], int]:
    """(seconds per BARE_QUERIES entry, input rows) over every file of the range."""
    files = [path for day in days for path in read_partition(lake, LakeTable.EVENTS, day).paths]
    seconds = {}
    with duckdb.connect() as con:
        rows = con.execute("SELECT count(*) FROM read_parquet($files)", {"files": files}).fetchone()[0]
        for name, query in BARE_QUERIES.items():
            began = time.monotonic()
            con.execute(query, {"files": files}).fetchall()
            seconds[name] = time.monotonic() - began
    return seconds, int(rows)


def dagster_backfill(
    lake: Path, database_url: str, dagster_database_url: str, days: list[dt.date]
) -> dict[str, object]:
    """Run the UI-equivalent asset backfill in process; returns timings and what it wrote.

    The instance stores like the deployed one: dagster.yaml's storage (PostgreSQL, pooled) in a scratch
    database, with the stack's DAGSTER_EVENT_BATCH_SIZE."""
    settings = get_settings()
    os.environ["SHOPPULSE_LAKE_DIR"] = str(lake)
    os.environ["SHOPPULSE_LAKE_URI"] = str(lake)
    os.environ["DATABASE_URL"] = database_url
    os.environ["DAGSTER_EVENT_BATCH_SIZE"] = str(settings.dagster_event_batch_size)
    os.environ.setdefault("KAFKA_BOOTSTRAP_SERVERS", settings.bootstrap_servers)
    os.environ.setdefault("SHOPPULSE_EVENTS_TOPIC", settings.events_topic)
    from dagster import instance_for_test

    from assets.backfill import IN_PROCESS_RUNS, run_asset_backfill
    from pipelines.storage import project_storage_config

    server = local_pid(settings, POSTGRES)  # None with an external server: its CPU is not measured
    overrides = {**IN_PROCESS_RUNS, "storage": project_storage_config(dagster_database_url)}
    with instance_for_test(overrides=overrides) as instance, CpuMeter({"postgres": server}) as cpu:
        began = time.monotonic()
        outcome = run_asset_backfill(instance, ROLLUP_ASSETS, [d.isoformat() for d in days])
        seconds = time.monotonic() - began
        steps = {}
        for run_id in outcome.run_ids:
            for stat in instance.get_run_step_stats(run_id):
                if stat.end_time and stat.start_time:
                    steps[stat.step_key] = round(stat.end_time - stat.start_time, 2)
    with psycopg.connect(database_url) as conn:
        written = conn.execute("SELECT coalesce(sum(row_count), 0) FROM analytics.materializations").fetchone()[0]
        partitions = conn.execute("SELECT count(*) FROM analytics.materializations").fetchone()[0]
    return {
        "seconds": seconds,
        "status": outcome.status.value,
        "runs": len(outcome.run_ids),
        "steps": steps,
        "rows_written": int(written),
        "ledger_partitions": int(partitions),
        "cpu": cpu,
    }


def scratch_backfill(lake: Path, days: list[dt.date], keep_database: bool) -> dict[str, object]:
    """One backfill into fresh, migrated scratch databases (serving and Dagster), dropped afterwards."""
    settings = get_settings()
    suffix = uuid.uuid4().hex[:8]
    names = [f"bench_backfill_{suffix}", f"bench_backfill_dagster_{suffix}"]
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        for name in names:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    database_url, dagster_database_url = (with_database(settings.database_url, name) for name in names)
    try:
        migrate(database_url)
        return dagster_backfill(lake, database_url, dagster_database_url, days)
    finally:
        if not keep_database:
            with psycopg.connect(settings.database_url, autocommit=True) as conn:
                for name in names:
                    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def report(result: dict[str, object], events: int) -> None:
    seconds = float(result["seconds"])  # type: ignore[arg-type]
    print(
        f"backfill: {result['status']}, {result['runs']} run(s), {result['ledger_partitions']} ledger partitions, "
        f"{result['rows_written']:,} serving rows"
    )
    print(f"  steps (s): {result['steps']}")
    steps_total = sum(result["steps"].values())  # type: ignore[attr-defined]
    print(
        f"  outside the steps (Dagster: loading the code, planning the backfill and the run, storing its events):"
        f" {seconds - steps_total:.1f}s of the wall"
    )
    cpu: CpuMeter = result["cpu"]  # type: ignore[assignment]
    postgres = cpu.watched_s.get("postgres")
    cores = os.cpu_count() or 1
    used = cpu.process_s + (postgres or 0.0)
    print(
        f"  CPU: this process {cpu.process_s:.1f} core-s + PostgreSQL "
        f"{'n/a (external)' if postgres is None else f'{postgres:.1f} core-s'} = {used:.1f} core-s; "
        f"the {cores} cores were {cpu.machine_busy:.0%} busy; {used / cores:.1f}s on {cores} cores at full use"
    )
    print(f"  wall {seconds:.1f}s = {events / seconds:,.0f} events/s (target: 30 days × 1M in ≤ 30 s)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--events-per-day", type=int, default=1_000_000)
    parser.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2025, 4, 1))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--lake-dir", type=Path, default=None, help="Reused when it holds the same lake.")
    parser.add_argument("--keep-database", action="store_true", help="Keep the scratch databases afterwards.")
    parser.add_argument("--s3", action="store_true", help="Also backfill from a copy of the lake on S3.")
    parser.add_argument(
        "--repeat", type=int, default=1, help="Backfills to run, each into fresh databases (the median is compared)."
    )
    args = parser.parse_args()

    settings = get_settings()
    days = [args.start + dt.timedelta(days=i) for i in range(args.days)]
    lake = args.lake_dir or settings.home / "bench" / f"backfill-{args.days}x{args.events_per_day}-s{args.seed}"
    lake.mkdir(parents=True, exist_ok=True)
    print(f"lake {lake}: building or reusing {args.days} days × {args.events_per_day:,} events", flush=True)
    build_lake(lake, days, args.events_per_day, args.seed)

    bare_before, events = bare_duckdb(lake, days)
    walls = []
    for _ in range(max(1, args.repeat)):
        result = scratch_backfill(lake, days, args.keep_database)
        report(result, events)
        walls.append(float(result["seconds"]))  # type: ignore[arg-type]
    bare_after, _ = bare_duckdb(lake, days)
    bare = {name: min(bare_before[name], bare_after[name]) for name in BARE_QUERIES}
    seconds = statistics.median(walls)
    if len(walls) > 1:
        print(
            f"{len(walls)} backfills: median {seconds:.1f}s, range {min(walls):.1f}–{max(walls):.1f}s "
            f"({sum(w <= 30 for w in walls)} of {len(walls)} within 30 s)"
        )
    for name, bare_seconds in bare.items():
        print(
            f"bare DuckDB {name} (best of 2, before and after): {bare_seconds:.2f}s = {events / bare_seconds:,.0f} "
            f"rows/s; the backfill{' (median)' if len(walls) > 1 else ''} takes {seconds / bare_seconds:.1f}× as long"
        )
    if args.s3:
        uri = os.environ.get("SHOPPULSE_BENCH_S3_URI") or f"s3://shoppulse/bench-{lake.name}-{uuid.uuid4().hex[:6]}"
        fs, root = arrow_filesystem(uri)
        began = time.monotonic()
        pafs.copy_files(str(lake), root, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)
        print(f"copied the lake to {uri} in {time.monotonic() - began:.1f}s", flush=True)
        on_s3 = scratch_backfill(uri, days, args.keep_database)  # type: ignore[arg-type]
        report(on_s3, events)
        s3_seconds = float(on_s3["seconds"])  # type: ignore[arg-type]
        print(
            f"backfill from S3: {s3_seconds:.1f}s = {events / s3_seconds:,.0f} events/s; "
            f"{s3_seconds / seconds:.2f}× the local backfill's {seconds:.1f}s"
        )
    print(f"load average now: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
