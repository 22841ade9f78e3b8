"""Simulator throughput: generated (+ produced into the real broker) events/s, against the producer ceiling.

    uv run python bench/simulator_throughput.py [--events 2000000] [--repeat 3]

Measured in this run, each on a fresh topic (deleted afterwards):

1. ``ceiling``   producing pre-built, identical ~300-byte payloads with the simulator's producer settings
                 (idempotent, acks=all, lz4): the most any generator could reach here;
2. ``replay``    producing real simulator messages generated beforehand (distinct payloads, so Python
                 objects and cache misses are paid for, but generation is not timed);
3. ``generate``  burst generation only (messages built as the producer wants them, not sent);
4. ``burst``     burst generated and produced into the broker, no faults;
5. ``faults``    the same with the typical fault mix (1% duplicates, 1% out of order, 1% late,
                 0.5% malformed, 5% schema-v2 sessions).

Each is repeated; the best and median rates are printed, and ratios to the ceiling from the medians.
The machine is shared (broker, database, other processes), so expect noise between runs.

CPU accounting, per event, over each timed section: this process (all threads: generation, the produce
calls and librdkafka's own threads), the local broker, and how busy the whole machine was. Their sum
bounds the rate the machine's cores could carry at full use, whatever the overlap.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid

from confluent_kafka.admin import AdminClient

from shoppulse.settings import get_settings
from shoppulse.stack.kafka import ensure_topic
from shoppulse.stack.processes import CpuMeter
from shoppulse.stack.services import KAFKA, local_pid
from simulator.bench_source import burst_batches
from simulator.faults import TYPICAL_FAULTS, FaultConfig
from simulator.producer import KafkaSink, MemorySink
from simulator.run import Runner, burst_plan
from simulator.stream import Stream, events_per_session

PARTITIONS = 6


def _per_message(cpu: CpuMeter, messages: int) -> dict:
    """Core-µs per message of this process and of the broker, and the machine's busy share."""
    broker = cpu.watched_s.get("broker")
    return {
        "process_us": cpu.process_s / messages * 1e6,
        "broker_us": None if broker is None else broker / messages * 1e6,
        "machine_busy": cpu.machine_busy,
    }


def _topic(bootstrap: str) -> str:
    topic = f"bench.simulator.{uuid.uuid4().hex[:10]}"
    ensure_topic(bootstrap, topic, PARTITIONS)
    return topic


def _delete(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})  # keep it alive until the futures resolve
    for future in admin.delete_topics([topic], operation_timeout=30).values():
        future.result()


def ceiling(bootstrap: str, events: int) -> dict:
    """Produce identical pre-built payloads (distinct keys) through the simulator's own sink."""
    from simulator.docs import example_events

    payload = example_events()["page_view"]
    values = [payload] * events
    keys = [f"s_{i // 5:016x}" for i in range(events)]
    timestamps = [int(time.time() * 1000)] * events
    return _produce_timed(bootstrap, "ceiling", values, keys, timestamps)


def _produce_timed(bootstrap: str, name: str, values: list, keys: list, timestamps: list) -> dict:
    """Produce prepared messages into a fresh topic through the simulator's sink; the rate until all are acked."""
    topic = _topic(bootstrap)
    try:
        sink = KafkaSink(bootstrap, topic)
        with CpuMeter({"broker": local_pid(get_settings(), KAFKA)}) as cpu:
            began = time.perf_counter()
            sent = sink.send(values, keys, timestamps)
            assert sink.flush(120) == 0, f"{name}: messages not delivered"
            seconds = time.perf_counter() - began
        stats = sink.stats()
        assert stats.failed == 0 and stats.delivered == sent
    finally:
        _delete(bootstrap, topic)
    return {
        "events_per_s": sent / seconds,
        "messages_per_s": sent / seconds,
        "seconds": seconds,
        **_per_message(cpu, sent),
    }


def replay(bootstrap: str, events: int, seed: int) -> dict:
    """Produce a burst's messages that were generated before the clock started."""
    end_ms = time.time_ns() // 1_000_000
    values, keys, timestamps = [], [], []
    for batch in burst_batches(events, seed=seed, end_ms=end_ms):
        values += batch.values
        keys += batch.keys
        timestamps += batch.timestamps
    return _produce_timed(bootstrap, "replay", values, keys, timestamps)


def burst(bootstrap: str | None, events: int, faults: FaultConfig, seed: int) -> dict:
    """A burst run through the real Runner (generation thread + producer), into Kafka or nowhere."""
    end_ms = time.time_ns() // 1_000_000
    stream = Stream(burst_plan(seed, events, end_ms, 1.0, 5_000), faults)
    topic = _topic(bootstrap) if bootstrap else None
    try:
        sink = KafkaSink(bootstrap, topic) if bootstrap and topic else MemorySink(keep=False)
        with CpuMeter({"broker": local_pid(get_settings(), KAFKA) if bootstrap else None}) as cpu:
            result = Runner(stream, sink, "burst", topic, progress=False).run_until(end_ms, max_events=events)
    finally:
        if bootstrap and topic:
            _delete(bootstrap, topic)
    assert result.ok and result.events == events, f"burst did not deliver every message: {result.summary()}"
    return {
        "events_per_s": result.events / result.elapsed_s,
        "messages_per_s": result.messages / result.elapsed_s,
        "seconds": result.elapsed_s,
        "messages": result.messages,
        **_per_message(cpu, result.messages),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    bootstrap = get_settings().bootstrap_servers
    events_per_session()  # calibrate once, outside the timings

    runs: dict[str, list[dict]] = {"ceiling": [], "replay": [], "generate": [], "burst": [], "faults": []}
    for _ in range(args.repeat):  # interleaved, so slow phases of a shared machine hit every scenario
        runs["ceiling"].append(ceiling(bootstrap, args.events))
        runs["replay"].append(replay(bootstrap, args.events, args.seed))
        runs["generate"].append(burst(None, args.events, FaultConfig(), args.seed))
        runs["burst"].append(burst(bootstrap, args.events, FaultConfig(), args.seed))
        runs["faults"].append(burst(bootstrap, args.events, TYPICAL_FAULTS, args.seed))

    report: dict[str, dict] = {}
    print(f"simulator throughput, {args.events:,} events per run, {args.repeat} runs each (events/s):")
    for name, results in runs.items():
        rates = [r["events_per_s"] for r in results]
        report[name] = {"median": statistics.median(rates), "best": max(rates), "runs": [round(r) for r in rates]}
        print(f"  {name:9s} median {report[name]['median']:>10,.0f}   best {report[name]['best']:>10,.0f}")
    cores = os.cpu_count() or 1
    print(f"CPU per message, core-µs (medians; the machine has {cores} cores):")
    for name, results in runs.items():
        process = statistics.median(r["process_us"] for r in results)
        brokers = [r["broker_us"] for r in results if r["broker_us"] is not None]
        broker = statistics.median(brokers) if brokers else 0.0
        busy = statistics.median(r["machine_busy"] for r in results)
        report[name] |= {"process_us": process, "broker_us": broker, "machine_busy": busy}
        print(
            f"  {name:9s} this process {process:5.2f} + broker {broker:5.2f} = {process + broker:5.2f}"
            f"   machine busy {busy:4.0%}   at most {cores / (process + broker) * 1e6:>10,.0f}/s on {cores} cores"
        )
    faults_messages = statistics.median(r["messages_per_s"] for r in runs["faults"])
    print(f"  faults run, all messages (incl. duplicates and malformed): median {faults_messages:,.0f} messages/s")
    ceiling_rate = report["ceiling"]["median"]
    for name in ("replay", "generate", "burst", "faults"):
        ratio = report[name]["median"] / ceiling_rate
        report[name]["ratio_to_ceiling"] = ratio
        print(f"  {name}/ceiling = {ratio:.2f}")
    print(
        json.dumps(
            {
                k: {kk: (round(vv, 3) if isinstance(vv, float) else vv) for kk, vv in v.items()}
                for k, v in report.items()
            }
        )
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
