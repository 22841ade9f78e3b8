"""`python -m shoppulse.lake`: drain, inspect and verify the lake from the command line."""

from __future__ import annotations

import json
import signal
import sys
import time

import click

from shoppulse.lake.drain import DrainConfig, drain, shard_partitions
from shoppulse.lake.layout import LakeTable, partition_dates, read_partition
from shoppulse.lake.table import committed_offsets, lake_ref, table_version
from shoppulse.settings import get_settings


@click.group()
def cli() -> None:
    """Operate the lake (a Delta table)."""


@cli.command("drain")
@click.option("--loop", is_flag=True, help="Keep draining until interrupted.")
@click.option("--interval", default=1.0, show_default=True, help="Seconds between drains with --loop.")
@click.option("--max-seconds", default=3.0, show_default=True, help="Time budget of one drain.")
@click.option(
    "--chunk-messages", default=DrainConfig.chunk_messages, show_default=True, help="Messages decoded per chunk."
)
@click.option("--topic", default=None, help="Topic (default: SHOPPULSE_EVENTS_TOPIC).")
@click.option("--lake-dir", default=None, help="Lake path or s3:// URI (default: SHOPPULSE_LAKE_URI).")
@click.option("--shard", default=None, help="Drain one shard only: INDEX/COUNT (e.g. 0/2), by partition % COUNT.")
@click.option("--partitions", type=int, default=None, help="The topic's partition count (needed with --shard).")
def drain_command(
    loop: bool,
    interval: float,
    max_seconds: float,
    chunk_messages: int,
    topic: str | None,
    lake_dir: str | None,
    shard: str | None,
    partitions: int | None,
) -> None:
    """Drain the events topic into the lake (once, or continuously with --loop); prints one JSON line per drain."""
    settings = get_settings()
    overrides: dict[str, object] = {"max_seconds": max_seconds, "chunk_messages": chunk_messages}
    if topic:
        overrides["topic"] = topic
    if lake_dir:
        overrides["lake_dir"] = lake_ref(lake_dir)
    if shard:
        index, count = (int(part) for part in shard.split("/"))
        overrides["partitions"] = shard_partitions(range(partitions or settings.events_topic_partitions), index, count)
    config = DrainConfig.from_settings(settings, **overrides)
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while True:
        result = drain(config)
        click.echo(
            json.dumps(
                {
                    "status": result.status,
                    "seq": result.seq,
                    "messages": result.messages,
                    "events": result.events,
                    "late": result.late,
                    "quarantined": result.quarantined,
                    "lag": result.lag,
                    "seconds": round(result.seconds, 3),
                }
            ),
            nl=True,
        )
        sys.stdout.flush()
        if not loop or stopping:
            return
        time.sleep(interval if result.status != "drained" else 0)


@cli.command()
@click.option("--lake-dir", default=None, help="Lake path or s3:// URI (default: SHOPPULSE_LAKE_URI).")
def status(lake_dir: str | None) -> None:
    """Table version, Kafka offsets held, and rows per partition."""
    settings = get_settings()
    lake = lake_ref(lake_dir) if lake_dir else settings.lake_location
    click.echo(f"lake {lake}: Delta table version {table_version(lake)}")
    click.echo(f"offsets ({settings.events_topic}): {committed_offsets(lake, settings.events_topic)}")
    for table in LakeTable:
        for day in partition_dates(lake, table):
            snap = read_partition(lake, table, day)
            click.echo(f"  {table.value:<10} {day}  rows {snap.rows:>10}  files {len(snap.files):>4}  v{snap.version}")


if __name__ == "__main__":
    cli(prog_name="python -m shoppulse.lake")
