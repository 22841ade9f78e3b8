"""Load test of the REST API: uvicorn (one worker, or --workers N) on loopback, wrk as the load generator.

    uv run python bench/api_load.py [--duration 5] [--rounds 3] [--connections 32] [--pin]

1. creates a scratch database on the stack's PostgreSQL, migrates it and fills 30 days of synthetic
   rollups (about 220k 15-minute sales rows, 90k product-hour rows, 43k active-user minutes);
2. starts `uvicorn api.main:app` (one worker, API key on, rate limit raised out of the way);
3. requests each URL of a mixed set of 14 rollup reads once (cold: computed from PostgreSQL);
4. runs wrk against the mixed set (rotating URLs), the mixed set while a Prometheus-like scraper
   fetches /metrics every --scrape-interval seconds (1 s: 15x Prometheus' default, to make the cost
   visible), and /health (the ceiling), alternating for a few rounds since other processes' load
   shifts over time;
5. prints every run and the medians: req/s, p50/p90/p99, server CPU per request, the ratios to
   /health and of the scraped to the unscraped mix, and what one scrape costs; then drops the
   database and stops the server.

The server and wrk share the machine's CPUs (the scheduler places them); --pin puts the server on
CPU 0 and wrk on CPU 1 (taskset) instead. wrk is installed with apt-get if missing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shoppulse.settings import get_settings  # noqa: E402
from shoppulse.stack.processes import cpu_seconds  # noqa: E402
from shoppulse.warehouse.db import migrate  # noqa: E402

API_KEY = "bench-key"
MIXED = [
    "/analytics/sales/daily?from=2025-03-10&to=2025-03-16&tz=America/New_York",
    "/analytics/sales/timeseries?granularity=hour&from=2025-03-09&to=2025-03-09&tz=America/New_York",
    "/analytics/sales/timeseries?granularity=day&from=2025-03-01&to=2025-03-30&currency=EUR",
    "/analytics/sales/timeseries?granularity=week&from=2025-03-01&to=2025-03-30&compare=previous_period",
    "/analytics/sales/timeseries?granularity=day&from=2025-03-01&to=2025-03-14&country=DE&channel=email",
    "/analytics/sales/breakdown?dimension=country&from=2025-03-01&to=2025-03-30",
    "/analytics/sales/breakdown?dimension=category&from=2025-03-01&to=2025-03-07&tz=Europe/Berlin",
    "/analytics/sales/top-products?from=2025-03-15&to=2025-03-15",
    "/analytics/products/top?metric=units&from=2025-03-01&to=2025-03-30&limit=20",
    "/analytics/users/active",
    "/analytics/users/daily?from=2025-03-01&to=2025-03-30",
    "/analytics/funnel?from=2025-03-01&to=2025-03-30",
    "/analytics/carts/abandonment?from=2025-03-01&to=2025-03-30",
    "/analytics/customers/returning?from=2025-03-01&to=2025-03-30",
]

SEED_SQL = """
INSERT INTO analytics.fx_rates
SELECT d::date, v.currency, v.per_usd
FROM generate_series('2025-02-01'::date, '2025-03-30'::date, interval '1 day') d,
     (VALUES ('USD', 1.0), ('EUR', 0.92), ('GBP', 0.79), ('JPY', 149.5)) v(currency, per_usd);

INSERT INTO analytics.sales_15m
SELECT (b AT TIME ZONE 'UTC')::date, b, cur, country, channel, device,
       o, 2 * o, 4500 * o, 300 * o, 100 * o, 4100 * o, 500 * o, 400 * o, 5000 * o
FROM generate_series('2025-03-01 00:00+00'::timestamptz, '2025-03-30 23:45+00', interval '15 minutes') b,
     unnest(ARRAY['USD', 'EUR', 'GBP', 'JPY']) cur,
     unnest(ARRAY['US', 'DE', 'GB', 'JP', 'FR', 'IN']) country,
     unnest(ARRAY['direct', 'organic_search', 'paid_search', 'social', 'email', 'referral', 'affiliate']) channel,
     unnest(ARRAY['desktop', 'mobile', 'tablet']) device,
     LATERAL (SELECT 1 + floor(random() * 3)::int + 0 * extract(epoch FROM b)::int AS o) x
WHERE random() < 0.15;

INSERT INTO analytics.sales_hourly
SELECT event_date, date_trunc('hour', bucket_start), currency, sum(orders), sum(units), sum(gross_sales),
       sum(discounts), sum(returns), sum(net_sales), sum(shipping), sum(taxes), sum(total_sales)
FROM analytics.sales_15m GROUP BY 1, 2, 3;

INSERT INTO analytics.sales_daily
SELECT event_date, currency, sum(orders), sum(units), sum(gross_sales), sum(discounts), sum(returns),
       sum(net_sales), sum(shipping), sum(taxes), sum(total_sales)
FROM analytics.sales_15m GROUP BY 1, 2;

INSERT INTO analytics.category_sales_15m
SELECT event_date, bucket_start, currency,
       (ARRAY['books', 'toys', 'electronics', 'garden', 'fashion', 'beauty', 'sports', 'home'])
           [1 + abs(hashtext(country || channel || device)) % 8],
       country, channel, device, orders, units, gross_sales, discounts, returns, net_sales
FROM analytics.sales_15m;

INSERT INTO analytics.category_sales_daily
SELECT event_date, category, currency, sum(orders), sum(units), sum(gross_sales), sum(discounts), sum(returns),
       sum(net_sales)
FROM analytics.category_sales_15m GROUP BY 1, 2, 3;

INSERT INTO analytics.product_sales_hourly
SELECT (h AT TIME ZONE 'UTC')::date, h, 'p_' || lpad(p::text, 4, '0'),
       (ARRAY['books', 'toys', 'electronics', 'garden', 'fashion', 'beauty', 'sports', 'home'])[1 + p % 8],
       cur, o, o, 2000 * o, 100 * o, 0, 1900 * o
FROM generate_series('2025-03-01 00:00+00'::timestamptz, '2025-03-30 23:00+00', interval '1 hour') h,
     generate_series(1, 300) p,
     unnest(ARRAY['USD', 'EUR', 'GBP', 'JPY']) cur,
     LATERAL (SELECT 1 + floor(random() * 4)::int + 0 * p AS o) x
WHERE random() < 0.1;

INSERT INTO analytics.product_sales_daily
SELECT event_date, product_id, min(category), currency, sum(orders), sum(units), sum(gross_sales), sum(discounts),
       sum(returns), sum(net_sales)
FROM analytics.product_sales_hourly GROUP BY event_date, product_id, currency;

INSERT INTO analytics.active_users_minute
SELECT (m AT TIME ZONE 'UTC')::date, m, 40 + n % 7, 150 + n % 11, 400 + n % 13, 700 + n % 17, 1100 + n % 19
FROM generate_series('2025-03-01 00:00+00'::timestamptz, '2025-03-30 23:59+00', interval '1 minute')
     WITH ORDINALITY AS t(m, n);

INSERT INTO analytics.users_daily
SELECT d::date, 5000 + i, 21000 + i, 60000 + i, 7000 + i, 40000 + i, 18000 + i
FROM generate_series('2025-03-01'::date, '2025-03-30'::date, interval '1 day') WITH ORDINALITY AS t(d, i);

INSERT INTO analytics.customers_daily
SELECT d::date, 300 + i, 180, 120 + i, 320 + i, 180, 140 + i
FROM generate_series('2025-03-01'::date, '2025-03-30'::date, interval '1 day') WITH ORDINALITY AS t(d, i);

INSERT INTO analytics.funnel_daily
SELECT d::date, country, channel, device, 100, 60, 30, 15, 5
FROM generate_series('2025-03-01'::date, '2025-03-30'::date, interval '1 day') d,
     unnest(ARRAY['US', 'DE', 'GB', 'JP', 'FR', 'IN']) country,
     unnest(ARRAY['direct', 'organic_search', 'paid_search', 'social', 'email', 'referral', 'affiliate']) channel,
     unnest(ARRAY['desktop', 'mobile', 'tablet']) device;

INSERT INTO analytics.materializations (asset, partition_date, row_count, lake_version, max_event_ts, run_id,
                                        materialized_at)
SELECT asset, d::date, 1, 1, d + interval '1 day' - interval '1 second', 'bench', d + interval '1 day 5 minutes'
FROM generate_series('2025-03-01'::date, '2025-03-30'::date, interval '1 day') d,
     unnest(ARRAY['fx_rates', 'sales', 'products', 'users', 'funnel', 'customers', 'ingest_quality']) asset;

INSERT INTO analytics.ingest_progress (topic, kafka_partition, next_offset, high_watermark, lake_version, updated_at)
SELECT 'shop.events', p, 100000, 100000 + p, 1, now() FROM generate_series(0, 5) p;

ANALYZE;
"""

LUA = """
local paths = %(paths)s
local counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", paths[(counter %% #paths) + 1], { ["X-API-Key"] = "%(key)s" })
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p90_us": %%d, "p99_us": %%d, "max_us": %%d, '
    .. '"non_2xx": %%d, "socket_errors": %%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, e.status, e.connect + e.read + e.write + e.timeout))
end
"""


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing wrk (Debian package)...", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "wrk"]
        if subprocess.run(install, env=env, capture_output=True, check=False).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, check=True)
            subprocess.run(install, env=env, capture_output=True, check=True)
        found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk is not installed: apt-get install wrk (or your platform's package)")
    return found


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


@contextlib.contextmanager
def bench_database(server_url: str) -> Iterator[str]:
    name = f"bench_api_{uuid.uuid4().hex[:8]}"
    try:
        with psycopg.connect(server_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.OperationalError as exc:
        raise SystemExit(f"PostgreSQL is not reachable ({exc}); start it with `python -m shoppulse.stack up`") from exc
    url = with_database(server_url, name)
    try:
        migrate(url)
        started = time.perf_counter()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(SEED_SQL)
            rows = {
                table: conn.execute(
                    sql.SQL("SELECT count(*) FROM analytics.{}").format(sql.Identifier(table))
                ).fetchone()[0]
                for table in ("sales_15m", "category_sales_15m", "product_sales_hourly", "active_users_minute")
            }
        print(f"seeded {name} in {time.perf_counter() - started:.1f} s: {rows}", flush=True)
        yield url
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pinned(argv: list[str], cpu: int | None) -> list[str]:
    return ["taskset", "-c", str(cpu), *argv] if cpu is not None else argv


@contextlib.contextmanager
def api_server(database_url: str, port: int, cpu: int | None, workers: int = 1) -> Iterator[Server]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "SHOPPULSE_API_KEYS": API_KEY,
        "SHOPPULSE_API_RATE_LIMIT": "1000000000/minute",
    }
    argv = [sys.executable, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--workers", str(workers), "--no-access-log", "--log-level", "warning"]
    argv += ["--http", "api.http_protocol:GuardedHttpToolsProtocol"]  # as `make run` serves it
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(pinned(argv, cpu), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while not healthy(base):
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise SystemExit("uvicorn did not start:\n" + log.read().decode(errors="replace"))
                time.sleep(0.1)
            yield Server(base, process.pid)
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@dataclass(frozen=True)
class Server:
    base: str
    pid: int

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process has used so far (Linux /proc)."""
        used = cpu_seconds(self.pid, with_children=True)  # with --workers N, the workers are children
        if used is None:
            raise RuntimeError(f"API server (pid {self.pid}) is gone")
        return used


def healthy(base: str) -> bool:
    try:
        with urllib.request.urlopen(base + "/health", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def fetch(base: str, path: str) -> tuple[int, float, str]:
    request = urllib.request.Request(base + path, headers={"X-API-Key": API_KEY})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()
        return response.status, (time.perf_counter() - started) * 1000, response.headers.get("X-Cache", "")


def run_wrk(wrk: str, server: Server, paths: list[str], args: argparse.Namespace, cpu: int | None) -> dict[str, float]:
    lua_paths = "{" + ", ".join(json.dumps(path) for path in paths) + "}"
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(LUA % {"paths": lua_paths, "key": API_KEY})
    try:
        argv = [wrk, "-t", str(args.threads), "-c", str(args.connections), "-d", f"{args.duration}s"]
        argv += ["--timeout", "5s", "-s", script.name, server.base]
        cpu_before = server.cpu_seconds()
        output = subprocess.run(pinned(argv, cpu), capture_output=True, text=True, check=True).stdout
        cpu_used = server.cpu_seconds() - cpu_before
    finally:
        Path(script.name).unlink()
    line = next(line for line in output.splitlines() if line.startswith("WRK_JSON "))
    stats = json.loads(line.removeprefix("WRK_JSON "))
    stats["rps"] = stats["requests"] / (stats["duration_us"] / 1e6)
    stats["cpu_us"] = cpu_used / stats["requests"] * 1e6
    return stats


@contextlib.contextmanager
def scraping(base: str, interval: float) -> Iterator[list[float]]:
    """Fetch /metrics every `interval` seconds in a thread (as Prometheus would); yields scrape latencies."""
    latencies: list[float] = []
    stop = threading.Event()

    def scrape() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            with urllib.request.urlopen(base + "/metrics", timeout=10) as response:
                response.read()
            latencies.append(time.perf_counter() - started)
            stop.wait(interval)

    thread = threading.Thread(target=scrape, name="scraper", daemon=True)
    thread.start()
    try:
        yield latencies
    finally:
        stop.set()
        thread.join()


def scrape_cost(server: Server, count: int = 200) -> tuple[float, float, int]:
    """(median ms, server CPU us per scrape, bytes) of `count` sequential /metrics requests on an idle server."""
    cpu_before = server.cpu_seconds()
    latencies, size = [], 0
    for _ in range(count):
        started = time.perf_counter()
        with urllib.request.urlopen(server.base + "/metrics", timeout=10) as response:
            size = len(response.read())
        latencies.append(time.perf_counter() - started)
    cpu = (server.cpu_seconds() - cpu_before) / count * 1e6
    return statistics.median(latencies) * 1000, cpu, size


def print_row(name: str, stats: dict[str, float]) -> None:
    millis = [stats[key] / 1000 for key in ("p50_us", "p90_us", "p99_us", "max_us")]
    failed = stats["non_2xx"] + stats["socket_errors"]
    cells = f"{stats['rps']:>9.0f}" + "".join(f"{value:>9.2f}" for value in millis) + f"{failed:>9.0f}"
    print(f"{name:<34}{cells}{stats['cpu_us']:>12.0f} us{stats.get('load', 0.0):>7.2f}", flush=True)


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of (mix, /health) runs (default 3)")
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections (default 32)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (default 1)")
    parser.add_argument("--pin", action="store_true", help="pin the server to CPU 0 and wrk to CPU 1 (taskset)")
    parser.add_argument(
        "--scrape-interval", type=float, default=1.0, help="seconds between /metrics scrapes in the scraped run"
    )
    args = parser.parse_args()

    wrk = ensure_wrk()
    pin = args.pin and shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
    server_cpu, wrk_cpu = (0, 1) if pin else (None, None)
    scraped_name = f"rollup mix + /metrics every {args.scrape_interval:g}s"
    targets = (
        (f"rollup mix ({len(MIXED)} URLs)", MIXED),
        (scraped_name, MIXED),
        ("/health (ceiling)", ["/health"]),
    )
    runs: dict[str, list[dict[str, float]]] = {name: [] for name, _ in targets}
    database = bench_database(get_settings().database_url)
    with database as url, api_server(url, free_port(), server_cpu, args.workers) as server:
        print("\ncold requests (computed from PostgreSQL):")
        for path in MIXED:
            status, millis, cache = fetch(server.base, path)
            if status != 200:
                raise SystemExit(f"{path} answered {status}")
            print(f"  {millis:7.1f} ms  {cache:4}  {path}")
        for path in MIXED:  # every URL now served from the response cache (each worker has its own)
            for _ in range(8 * args.workers):
                if fetch(server.base, path)[2] == "hit" and args.workers == 1:
                    break
            assert fetch(server.base, path)[2] == "hit" or args.workers > 1, path
        scrape_ms, scrape_cpu_us, scrape_bytes = scrape_cost(server)
        print(f"\none /metrics scrape (idle server): {scrape_ms:.2f} ms, {scrape_cpu_us:.0f} us CPU, {scrape_bytes} B")
        placement = f"server on CPU {server_cpu}, wrk on CPU {wrk_cpu}" if pin else "not pinned"
        print(
            f"\nwrk: {args.connections} connections, {args.threads} thread(s), {args.duration} s per run, {placement}, "
            f"{args.workers} uvicorn worker(s)"
        )
        print(f"{args.rounds} rounds alternating the targets (background load shifts; medians are reported)\n")
        print(
            f"{'run':<34}{'req/s':>9}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}{'failed':>9}"
            f"{'CPU/req':>15}{'load':>7}"
        )
        for round_number in range(1, args.rounds + 1):
            # The scraped and unscraped mix swap places every round, so neither always follows /health.
            order = targets if round_number % 2 else (targets[1], targets[0], targets[2])
            for name, paths in order:
                with contextlib.ExitStack() as stack:
                    if name == scraped_name:
                        scrapes = stack.enter_context(scraping(server.base, args.scrape_interval))
                    stats = run_wrk(wrk, server, paths, args, wrk_cpu)
                if name == scraped_name:
                    stats["scrapes"] = len(scrapes)
                    stats["scrape_ms"] = statistics.median(scrapes) * 1000 if scrapes else 0.0
                stats["load"] = os.getloadavg()[0]
                runs[name].append(stats)
                print_row(f"{round_number}: {name}", stats)

    print("\nmedians:")
    medians = {name: median_of(results) for name, results in runs.items()}
    for name, stats in medians.items():
        print_row(name, stats)
    mixed, scraped, health = (medians[name] for name, _ in targets)
    verdict = "meets" if mixed["rps"] >= 3000 and mixed["p99_us"] <= 20_000 else "MISSES"
    print(f"\nrollup mix / health throughput (medians): {mixed['rps'] / health['rps']:.2f}")
    print(
        f"rollup mix scraped / unscraped throughput (medians): {scraped['rps'] / mixed['rps']:.3f} "
        f"({scraped['scrapes']:.0f} scrapes per run, median {scraped['scrape_ms']:.1f} ms under load)"
    )
    print(f"target >= 3000 req/s at p99 <= 20 ms for rollup reads: {verdict}")
    if any(run["non_2xx"] or run["socket_errors"] for results in runs.values() for run in results):
        raise SystemExit("some requests failed")


if __name__ == "__main__":
    main()
