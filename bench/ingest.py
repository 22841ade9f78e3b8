"""Ingest benchmark: Kafka -> lake drain against its baselines, measured in the same run.

    uv run python bench/ingest.py [--events 2000000] [--faults] [--baseline-ref REF] [--s3]

1. Preloads N simulator events (realistic mix, optional faults) into a fresh topic on the real broker.
2. Runs, each in its own process (so peak RSS is its own):
   - ``bare``:  a bare confluent-kafka consume loop touching every value (the local ceiling);
   - ``drain``: the real drain (decode, validate, quarantine, Parquet, Delta commit) until caught up;
   - ``old``:   the drain of git ref ``--baseline-ref`` (default: the last commit of the home-made
     commit log, before the Delta table), run from a `git archive` of that ref's ``shoppulse/``;
   - ``s3``:    (with ``--s3``) the real drain into ``s3://`` on the S3 server the environment points at
     (AWS_ENDPOINT_URL; `python -m shoppulse.stack up` with SHOPPULSE_LAKE_URI=s3://... starts s3proxy);
   - ``seed``:  a "seed-style" consumer that upserts one aggregate row per event in PostgreSQL and
     commits each (run on a prefix of the topic: it is slow; its rate is what is compared).
3. Prints events/s, peak RSS and the ratios drain/bare, drain/old (must stay >= 0.9) and drain/seed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson
import psycopg
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from shoppulse.allocator import DRAIN_MALLOC_CONF, with_malloc_conf
from shoppulse.lake.drain import CONSUMER_CONFIG, DrainConfig, drain
from shoppulse.settings import get_settings
from shoppulse.stack.kafka import ensure_topic
from shoppulse.warehouse.db import with_database

PARTITIONS = 6


def preload(bootstrap: str, topic: str, events: int, faults: bool, seed: int) -> int:
    """Produce `events` simulator messages into `topic`; returns the count acknowledged."""
    from simulator.bench_source import burst_messages  # the simulator's vectorized burst generator

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 50,
            "batch.size": 2_000_000,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 2_000_000,
            "queue.buffering.max.kbytes": 2_000_000,
        }
    )
    produced = 0
    for keys, values in burst_messages(events, seed=seed, faults=faults):
        produce = producer.produce
        for key, value in zip(keys, values, strict=True):
            while True:
                try:
                    produce(topic, value, key)
                    break
                except BufferError:
                    producer.poll(0.05)
        produced += len(values)
    assert producer.flush(120) == 0
    return produced


def run_bare(bootstrap: str, topic: str, events: int) -> dict:
    # The drain's own librdkafka settings: the same fetch path, minus decoding and writing.
    consumer = Consumer(
        {**CONSUMER_CONFIG, "bootstrap.servers": bootstrap, "group.id": f"bench-bare-{uuid.uuid4().hex[:6]}"}
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    seen = 0
    total_bytes = 0
    began = time.perf_counter()
    while seen < events:
        messages = consumer.consume(10_000, timeout=1.0)
        total_bytes += sum(len(m.value() or b"") for m in messages)
        seen += len(messages)
    seconds = time.perf_counter() - began
    consumer.close()
    return {"events": seen, "seconds": seconds, "bytes": total_bytes}


BASELINE_REF = "43c2921"
"""The last commit whose lake was the home-made commit log (manifests, `_log/`)."""


def run_drain(bootstrap: str, topic: str, events: int, s3_uri: str = "") -> dict:
    lake = Path(tempfile.mkdtemp(prefix="bench-lake-"))
    target = f"{s3_uri.rstrip('/')}/bench-{uuid.uuid4().hex[:8]}" if s3_uri else lake
    config = DrainConfig(bootstrap, topic, target, max_seconds=30.0)
    began = time.perf_counter()
    landed = drains = 0
    while True:
        result = drain(config)
        drains += 1
        landed += result.messages
        if result.status == "idle" or (landed >= events and result.lag == 0):
            break
    seconds = time.perf_counter() - began
    lake_bytes = sum(f.stat().st_size for f in lake.rglob("*.parquet"))
    shutil.rmtree(lake, ignore_errors=True)
    return {"events": landed, "seconds": seconds, "drains": drains, "lake_bytes": lake_bytes}


def run_seed(bootstrap: str, topic: str, events: int, database_url: str) -> dict:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS seed_counts (day date, event_type text, n bigint, "
            "PRIMARY KEY (day, event_type))"
        )
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"bench-seed-{uuid.uuid4().hex[:6]}", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    seen = 0
    began = time.perf_counter()
    with psycopg.connect(database_url) as conn:
        while seen < events:
            for message in consumer.consume(1000, timeout=1.0):
                seen += 1
                try:
                    doc = orjson.loads(message.value())
                    day = time.strftime("%Y-%m-%d", time.gmtime(int(doc["event_ts"]) / 1000))
                    kind = str(doc["event_type"])
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                    continue
                conn.execute(
                    "INSERT INTO seed_counts VALUES (%s, %s, 1) ON CONFLICT (day, event_type) "
                    "DO UPDATE SET n = seed_counts.n + 1",
                    (day, kind),
                )
                conn.commit()
    seconds = time.perf_counter() - began
    consumer.close()
    return {"events": seen, "seconds": seconds}


def peak_rss_mb() -> float:
    """This process's resident-set high-water mark (VmHWM: since exec, unlike ru_maxrss after fork)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(args: argparse.Namespace) -> None:
    """Run one variant and print its result as JSON, with its own peak RSS."""
    if args.variant == "bare":
        result = run_bare(args.bootstrap, args.topic, args.events)
    elif args.variant in ("drain", "old"):
        result = run_drain(args.bootstrap, args.topic, args.events)
    elif args.variant == "s3":
        result = run_drain(args.bootstrap, args.topic, args.events, args.s3_uri)
    else:
        result = run_seed(args.bootstrap, args.topic, args.events, args.database_url)
    result["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(result))


def baseline_tree(ref: str) -> Path:
    """`shoppulse/` of git `ref`, extracted into a temp directory (put first on PYTHONPATH to run it)."""
    root = Path(tempfile.mkdtemp(prefix="bench-baseline-"))
    repo = Path(__file__).resolve().parents[1]
    archive = subprocess.run(["git", "-C", str(repo), "archive", ref, "shoppulse"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive.stdout, check=True)
    return root


def measure(
    variant: str,
    bootstrap: str,
    topic: str,
    events: int,
    database_url: str = "",
    baseline: Path | None = None,
    s3_uri: str = "",
) -> dict:
    argv = [
        sys.executable,
        __file__,
        "--child",
        variant,
        "--bootstrap",
        bootstrap,
        "--topic",
        topic,
        "--events",
        str(events),
        "--database-url",
        database_url,
        "--s3-uri",
        s3_uri,
    ]
    # The drain runs with the allocator options the code server (where the sensor drains) has.
    env = with_malloc_conf(os.environ, DRAIN_MALLOC_CONF) if variant in ("drain", "old", "s3") else None
    if variant == "old" and baseline is not None:
        env = {**(env or os.environ), "PYTHONPATH": str(baseline)}
    proc = subprocess.run(argv, stdout=subprocess.PIPE, text=True, check=False, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{variant} failed with exit code {proc.returncode}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["rate"] = result["events"] / result["seconds"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--seed-events", type=int, default=20_000, help="events the slow seed-style consumer handles")
    parser.add_argument("--faults", action="store_true", help="inject the simulator's default fault rates")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--rounds", type=int, default=3, help="alternating old/new drain runs (best of each)")
    parser.add_argument("--baseline-ref", default=BASELINE_REF, help="git ref of the drain to compare with")
    parser.add_argument("--s3", action="store_true", help="also drain into s3:// (SHOPPULSE_BENCH_S3_URI)")
    parser.add_argument("--s3-uri", default="")
    parser.add_argument("--child", choices=["bare", "drain", "old", "s3", "seed"], dest="variant")
    parser.add_argument("--bootstrap")
    parser.add_argument("--topic")
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    if args.variant:
        child(args)
        return

    settings = get_settings()
    bootstrap = settings.bootstrap_servers
    topic = f"bench.ingest.{uuid.uuid4().hex[:8]}"
    database = f"bench_{uuid.uuid4().hex[:8]}"
    ensure_topic(bootstrap, topic, PARTITIONS, config={"retention.ms": "-1"})
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    try:
        began = time.perf_counter()
        produced = preload(bootstrap, topic, args.events, args.faults, args.seed)
        print(
            f"preloaded {produced:,} events ({'with' if args.faults else 'no'} faults) "
            f"in {time.perf_counter() - began:.1f}s into {topic}"
        )
        bare = measure("bare", bootstrap, topic, produced)
        baseline = baseline_tree(args.baseline_ref)
        # Old and new drain alternate, `--rounds` times each: the machine's load drifts, so each keeps
        # its best round (the least disturbed), and both saw the same stretch of time.
        olds, news = [], []
        for _ in range(max(1, args.rounds)):
            olds.append(measure("old", bootstrap, topic, produced, baseline=baseline))
            news.append(measure("drain", bootstrap, topic, produced))
        for name, rounds in (("old", olds), ("new", news)):
            print(f"{name} drain rounds (events/s): " + ", ".join(f"{r['rate']:,.0f}" for r in rounds))
        old = max(olds, key=lambda r: r["rate"])
        drained = max(news, key=lambda r: r["rate"])
        s3_uri = os.environ.get("SHOPPULSE_BENCH_S3_URI", "s3://shoppulse/bench")
        on_s3 = measure("s3", bootstrap, topic, produced, s3_uri=s3_uri) if args.s3 else None
        seed = measure(
            "seed", bootstrap, topic, min(args.seed_events, produced), with_database(settings.database_url, database)
        )
    finally:
        AdminClient({"bootstrap.servers": bootstrap}).delete_topics([topic])
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')

    print()
    print(f"{'variant':<8} {'events':>10} {'seconds':>8} {'events/s':>12} {'peak RSS MB':>12}")
    variants = [("bare", bare), ("old", old), ("drain", drained), ("s3", on_s3), ("seed", seed)]
    for name, r in variants:
        if r is not None:
            print(f"{name:<8} {r['events']:>10,} {r['seconds']:>8.2f} {r['rate']:>12,.0f} {r['peak_rss_mb']:>12.0f}")
    print()
    print(f"drain / old lake     : {drained['rate'] / old['rate']:.2f}x   (Delta table vs {args.baseline_ref}; >= 0.9)")
    if on_s3 is not None:
        print(f"s3 / local drain     : {on_s3['rate'] / drained['rate']:.2f}x   (s3proxy on this host)")
    print(f"drain / bare consume : {drained['rate'] / bare['rate']:.2f}x   (target >= 0.7)")
    print(f"drain / seed upserts : {drained['rate'] / seed['rate']:.0f}x")
    print(f"drain events/s       : {drained['rate']:,.0f}   (target >= 200,000)")
    print(f"drain peak RSS       : {drained['peak_rss_mb']:.0f} MB   (target <= 500)")
    print(f"lake size            : {drained['lake_bytes'] / 1e6:.0f} MB for {drained['events']:,} events")


if __name__ == "__main__":
    main()
