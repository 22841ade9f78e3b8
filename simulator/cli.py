"""``python -m simulator`` / ``shoppulse-sim``: generate shop traffic into Kafka.

Examples::

    python -m simulator live --rate 200                     # until Ctrl-C / SIGTERM
    python -m simulator burst --events 5000000 --seed 7     # as fast as possible
    python -m simulator history --days 30 --events-per-day 500000 --end 2026-01-01
    python -m simulator burst --events 100000 --duplicate-rate 0.01 --late-rate 0.01 \\
        --malformed-rate 0.005 --ground-truth truth.json
    python -m simulator schema --output docs/events.schema.json
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import secrets
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from shoppulse.contract.events import CONTRACT_VERSION
from shoppulse.settings import get_settings
from simulator.encode import MIN_WIRE_TS_MS
from simulator.faults import MALFORMED_KINDS, FaultConfig, Incident
from simulator.ground_truth import GroundTruth
from simulator.model import DAY_MS, HOUR_MS
from simulator.producer import KafkaSink, MemorySink, Sink
from simulator.run import Runner, RunResult, burst_plan, describe_plan, history_plan, live_plan, write_ground_truth
from simulator.stream import Stream, TrafficPlan

log = logging.getLogger("simulator")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": HOUR_MS, "d": DAY_MS}


def parse_duration_ms(text: str) -> int:
    """'90m', '2h', '1.5d', '30s', '250ms' (a bare number is hours) -> milliseconds."""
    match = _DURATION.match(text)
    if not match:
        raise click.BadParameter(f"not a duration: {text!r} (e.g. 90m, 2h, 1.5d)")
    return int(float(match.group(1)) * _UNIT_MS[match.group(2) or "h"])


def parse_end_ms(text: str | None) -> int:
    """An ISO date or datetime (UTC unless it says otherwise), or now."""
    if not text:
        return time.time_ns() // 1_000_000
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise click.BadParameter(f"not an ISO date/datetime: {text!r}") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    end_ms = int(moment.timestamp() * 1000)
    if end_ms > time.time_ns() // 1_000_000 + 60_000:
        raise click.BadParameter("--end must not be in the future (Kafka rejects far-future timestamps)")
    return end_ms


def _fault_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    settings = get_settings()
    options = [
        click.option(
            "--duplicate-rate",
            type=click.FloatRange(0, 1),
            default=0.0,
            show_default=True,
            help="Share of events sent twice (same event_id and bytes, 1-30 s later).",
        ),
        click.option(
            "--out-of-order-rate",
            type=click.FloatRange(0, 1),
            default=0.0,
            show_default=True,
            help="Share of events sent after the next event of their session.",
        ),
        click.option(
            "--late-rate",
            type=click.FloatRange(0, 1),
            default=0.0,
            show_default=True,
            help="Share of events whose event_ts is earlier than their Kafka timestamp.",
        ),
        click.option(
            "--late-delay",
            default="2h",
            show_default=True,
            help="How late a late event within the horizon is (e.g. 90m, 6h).",
        ),
        click.option(
            "--late-beyond-share",
            type=click.FloatRange(0, 1),
            default=0.25,
            show_default=True,
            help="Share of late events beyond the horizon (they are horizon + 24 h late).",
        ),
        click.option(
            "--lateness-horizon-hours",
            type=click.FloatRange(min=2),
            default=settings.lateness_horizon_hours,
            show_default=True,
            help="The consumer's lateness horizon.",
        ),
        click.option(
            "--malformed-rate",
            type=click.FloatRange(0, 1),
            default=0.0,
            show_default=True,
            help="Extra malformed messages per event.",
        ),
        click.option(
            "--malformed-kinds",
            default=",".join(MALFORMED_KINDS),
            show_default=True,
            help="Comma-separated classes of malformed messages.",
        ),
        click.option(
            "--v2-rate",
            type=click.FloatRange(0, 1),
            default=0.0,
            show_default=True,
            help="Share of sessions sending schema_version 2 events (with experiment_variant).",
        ),
        click.option(
            "--outage",
            "outages",
            multiple=True,
            metavar="START/DURATION[/FACTOR]",
            help="Inject an outage: no sessions start (or FACTOR of them, below 1) from START (ISO, UTC unless "
            "it says otherwise) for DURATION, e.g. 2026-11-20T14:00/2h. Repeatable; recorded in the ground truth.",
        ),
        click.option(
            "--spike",
            "spikes",
            multiple=True,
            metavar="START/DURATION[/FACTOR]",
            help="Inject a traffic spike: FACTOR (default 3) times the sessions from START for DURATION, "
            "e.g. 2026-11-21T18:00/1h/4. Repeatable; recorded in the ground truth.",
        ),
        click.option(
            "--max-event-bytes",
            type=click.IntRange(min=1024),
            default=settings.max_event_bytes,
            show_default=True,
            help="The consumer's message size limit (oversized faults exceed it).",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _common_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    settings = get_settings()
    options = [
        click.option("--bootstrap-servers", default=settings.bootstrap_servers, show_default=True),
        click.option("--topic", default=settings.events_topic, show_default=True),
        click.option(
            "--partitions",
            type=click.IntRange(min=1),
            default=settings.events_topic_partitions,
            show_default=True,
            help="Partitions when the topic has to be created.",
        ),
        click.option(
            "--seed", type=int, default=None, help="Same seed (and time window) = same messages. Default: random."
        ),
        click.option(
            "--products", type=click.IntRange(min=5000), default=5000, show_default=True, help="Catalog size."
        ),
        click.option(
            "--ground-truth",
            "ground_truth_path",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help="Write the expected aggregates of what was sent to this JSON file.",
        ),
        click.option("--dry-run", is_flag=True, help="Generate but do not send (measures generation speed)."),
        click.option(
            "--progress/--no-progress", default=None, help="Progress bar (default: when stderr is a terminal)."
        ),
        click.option(
            "--flush-timeout",
            type=float,
            default=60.0,
            show_default=True,
            help="Seconds to wait for outstanding deliveries at the end.",
        ),
        click.option(
            "--every-delivery-report",
            is_flag=True,
            help="Call back for every delivered message, not only failures (slower).",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return _fault_options(fn)


def _faults(opts: dict[str, Any]) -> FaultConfig:
    kinds = tuple(k.strip() for k in opts["malformed_kinds"].split(",") if k.strip())
    try:
        return FaultConfig(
            duplicate_rate=opts["duplicate_rate"],
            out_of_order_rate=opts["out_of_order_rate"],
            late_rate=opts["late_rate"],
            late_delay_ms=parse_duration_ms(opts["late_delay"]),
            late_beyond_share=opts["late_beyond_share"],
            lateness_horizon_ms=int(opts["lateness_horizon_hours"] * HOUR_MS),
            malformed_rate=opts["malformed_rate"],
            malformed_kinds=kinds,
            v2_rate=opts["v2_rate"],
            max_event_bytes=opts["max_event_bytes"],
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc


DEFAULT_INCIDENT_FACTOR = {"outage": 0.0, "spike": 3.0}


def parse_incident(kind: str, text: str) -> Incident:
    """`START/DURATION[/FACTOR]` (START an ISO datetime, UTC unless it says otherwise) as an Incident."""
    parts = text.split("/")
    if len(parts) not in (2, 3):
        raise click.BadParameter(f"--{kind} wants START/DURATION[/FACTOR], got {text!r}")
    try:
        start = dt.datetime.fromisoformat(parts[0])
    except ValueError as exc:
        raise click.BadParameter(f"--{kind}: not an ISO datetime: {parts[0]!r}") from exc
    if start.tzinfo is None:
        start = start.replace(tzinfo=dt.UTC)
    start_ms = int(start.timestamp() * 1000)
    try:
        factor = float(parts[2]) if len(parts) == 3 else DEFAULT_INCIDENT_FACTOR[kind]
        return Incident(kind, start_ms, start_ms + parse_duration_ms(parts[1]), factor)
    except ValueError as exc:
        raise click.BadParameter(f"--{kind} {text!r}: {exc}") from exc


def _incidents(opts: dict[str, Any]) -> tuple[Incident, ...]:
    given: Sequence[tuple[str, str]] = [
        *(("outage", text) for text in opts.get("outages", ())),
        *(("spike", text) for text in opts.get("spikes", ())),
    ]
    return tuple(sorted((parse_incident(kind, text) for kind, text in given), key=lambda i: i.start_ms))


def _sink(opts: dict[str, Any], fast: bool) -> Sink:
    if opts["dry_run"]:
        return MemorySink(keep=False)
    from shoppulse.stack.kafka import EVENTS_TOPIC_CONFIG, ensure_topic

    try:
        if ensure_topic(opts["bootstrap_servers"], opts["topic"], opts["partitions"], config=EVENTS_TOPIC_CONFIG):
            log.info("created topic %s with %d partitions", opts["topic"], opts["partitions"])
    except Exception as exc:
        raise click.ClickException(f"Kafka at {opts['bootstrap_servers']} is not usable: {exc}") from exc
    return KafkaSink(opts["bootstrap_servers"], opts["topic"], fast=fast, every_report=opts["every_delivery_report"])


def _run(
    mode: str, opts: dict[str, Any], plan_for: Callable[[int], TrafficPlan], go: Callable[[Runner], RunResult]
) -> None:
    seed = opts["seed"] if opts["seed"] is not None else secrets.randbelow(2**31)
    faults = _faults(opts)
    plan = replace(plan_for(seed), incidents=_incidents(opts))
    if plan.start_ms - faults.beyond_delay_ms < MIN_WIRE_TS_MS:
        raise click.UsageError("the traffic would start before 2001-09-09 (event_ts is written with 13 digits)")
    sink = _sink(opts, fast=mode != "live")
    truth = None
    if opts["ground_truth_path"]:
        truth = GroundTruth(
            run={"mode": mode, "topic": None if opts["dry_run"] else opts["topic"], **describe_plan(plan, faults)}
        )
    stream = Stream(plan, faults)
    runner = Runner(
        stream,
        sink,
        mode,
        None if opts["dry_run"] else opts["topic"],
        truth,
        opts["progress"],
        flush_timeout_s=opts["flush_timeout"],
    )
    log.info(
        "%s: seed %d, contract %s, topic %s",
        mode,
        seed,
        CONTRACT_VERSION,
        "(dry run)" if opts["dry_run"] else opts["topic"],
    )
    result = go(runner)
    if truth is not None:
        write_ground_truth(truth, opts["ground_truth_path"], result)
    summary = result.summary()
    click.echo(json.dumps(summary, sort_keys=True))
    if not result.ok:
        raise SystemExit(1)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def main(verbose: bool) -> None:
    """ShopPulse traffic simulator: realistic e-commerce events into Kafka.

    Every message is one event of the contract in docs/events.md, keyed by session id. Same --seed and
    the same time window give the same bytes. Ctrl-C / SIGTERM stop cleanly (flush, then exit 0).
    """
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@main.command()
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    default=get_settings().simulator_rate,
    show_default=True,
    help="Events per second.",
)
@click.option(
    "--seasonal/--flat",
    default=False,
    show_default=True,
    help="Daily/weekly cycles and promotions (then --rate is the weekly average).",
)
@click.option("--duration", type=click.FloatRange(min=0), default=None, help="Stop after this many seconds.")
@_common_options
def live(rate: float, seasonal: bool, duration: float | None, **opts: Any) -> None:
    """Send traffic at --rate events/s, stamped with the current time, until stopped."""
    now_ms = time.time_ns() // 1_000_000
    _run(
        "live",
        opts,
        lambda seed: live_plan(seed, now_ms, rate, seasonal, opts["products"]),
        lambda runner: runner.run_live(duration),
    )


@main.command()
@click.option(
    "--events",
    type=click.IntRange(min=1),
    default=1_000_000,
    show_default=True,
    help="Events to send (duplicates and malformed messages come on top).",
)
@click.option(
    "--days",
    type=click.FloatRange(min=0.01),
    default=1.0,
    show_default=True,
    help="Spread the events' timestamps over this many days before --end.",
)
@click.option("--end", default=None, help="ISO date/datetime the traffic ends at (default: now).")
@_common_options
def burst(events: int, days: float, end: str | None, **opts: Any) -> None:
    """Send --events events as fast as possible."""
    end_ms = parse_end_ms(end)
    _run(
        "burst",
        opts,
        lambda seed: burst_plan(seed, events, end_ms, days, opts["products"]),
        lambda runner: runner.run_until(end_ms, max_events=events),
    )


@main.command()
@click.option("--days", type=click.FloatRange(min=0.01), default=7.0, show_default=True, help="Days of history.")
@click.option(
    "--events-per-day", type=click.FloatRange(min=1), default=200_000, show_default=True, help="Average events per day."
)
@click.option("--end", default=None, help="ISO date/datetime the history ends at (default: now).")
@_common_options
def history(days: float, events_per_day: float, end: str | None, **opts: Any) -> None:
    """Send --days of traffic with historical timestamps (Kafka timestamp = event time), for backfills."""
    end_ms = parse_end_ms(end)
    if not opts["dry_run"]:
        _warn_about_retention(opts["bootstrap_servers"], opts["topic"], end_ms - int(days * DAY_MS))
    _run(
        "history",
        opts,
        lambda seed: history_plan(seed, end_ms, days, events_per_day, opts["products"]),
        lambda runner: runner.run_until(end_ms),
    )


def _warn_about_retention(bootstrap_servers: str, topic: str, start_ms: int) -> None:
    """History older than the topic's retention can be deleted by the broker before it is consumed."""
    from confluent_kafka.admin import AdminClient, ConfigResource

    try:
        admin = AdminClient({"bootstrap.servers": bootstrap_servers})
        resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
        configs = admin.describe_configs([resource])[resource].result(timeout=10)
        retention_ms = int(configs["retention.ms"].value)
    except Exception:  # the topic may not exist yet; the broker default then applies
        return
    age_ms = time.time_ns() // 1_000_000 - start_ms
    if retention_ms >= 0 and age_ms > retention_ms:
        log.warning(
            "history starts %.1f days ago but %s keeps messages %.1f days (retention.ms): the broker may delete "
            "the oldest segments before they are consumed",
            age_ms / DAY_MS,
            topic,
            retention_ms / DAY_MS,
        )


@main.command()
@click.option(
    "--output", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write here (default: stdout)."
)
@click.option("--check", is_flag=True, help="Fail if --output differs from the current contract.")
def schema(output: Path | None, check: bool) -> None:
    """Export the event contract as JSON Schema (draft 2020-12)."""
    from simulator.docs import schema_text

    text = schema_text()
    if output is None:
        click.echo(text, nl=False)
        return
    if check:
        if not output.exists() or output.read_text() != text:
            raise click.ClickException(f"{output} is out of date: run `python -m simulator schema --output {output}`")
        click.echo(f"{output} is up to date")
        return
    output.write_text(text)
    click.echo(f"wrote {output}")


@main.command()
@click.option("--seed", type=int, default=1, show_default=True)
@click.option(
    "--update",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Rewrite the ```json examples of this Markdown file (docs/events.md) instead of printing.",
)
def examples(seed: int, update: Path | None) -> None:
    """Print one generated example of every event type (JSON, one per line)."""
    from simulator.docs import example_events, update_examples

    if update is not None:
        changed = update_examples(update, seed)
        click.echo(f"{update}: {'examples updated' if changed else 'already current'}")
        return
    for event in example_events(seed).values():
        click.echo(event)
