"""`python -m shoppulse.lake`: drain, inspect and verify the lake from the command line."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

import click

from shoppulse.lake import commit as log
from shoppulse.lake.drain import DrainConfig, drain
from shoppulse.lake.layout import LakeTable, partition_dates, read_partition
from shoppulse.settings import get_settings


@click.group()
def cli() -> None:
    """Operate the Parquet lake."""


@cli.command("drain")
@click.option("--loop", is_flag=True, help="Keep draining until interrupted.")
@click.option("--interval", default=1.0, show_default=True, help="Seconds between drains with --loop.")
@click.option("--max-seconds", default=3.0, show_default=True, help="Time budget of one drain.")
@click.option(
    "--chunk-messages", default=DrainConfig.chunk_messages, show_default=True, help="Messages decoded per chunk."
)
@click.option("--topic", default=None, help="Topic (default: SHOPPULSE_EVENTS_TOPIC).")
@click.option("--lake-dir", type=click.Path(path_type=Path), default=None, help="Lake (default: SHOPPULSE_LAKE_DIR).")
def drain_command(
    loop: bool, interval: float, max_seconds: float, chunk_messages: int, topic: str | None, lake_dir: Path | None
) -> None:
    """Drain the events topic into the lake (once, or continuously with --loop); prints one JSON line per drain."""
    settings = get_settings()
    overrides: dict[str, object] = {"max_seconds": max_seconds, "chunk_messages": chunk_messages}
    if topic:
        overrides["topic"] = topic
    if lake_dir:
        overrides["lake_dir"] = lake_dir
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
@click.option("--lake-dir", type=click.Path(path_type=Path), default=None)
def status(lake_dir: Path | None) -> None:
    """Commit sequence, Kafka offsets held, and rows per partition."""
    settings = get_settings()
    lake = lake_dir or settings.lake_dir
    click.echo(f"lake {lake}: newest commit {log.latest_seq(lake)}, applied {log.read_applied(lake)}")
    click.echo(f"offsets ({settings.events_topic}): {log.committed_offsets(lake, settings.events_topic)}")
    for table in LakeTable:
        for day in partition_dates(lake, table):
            snap = read_partition(lake, table, day)
            click.echo(f"  {table.value:<10} {day}  rows {snap.rows:>10}  files {len(snap.files):>4}  v{snap.version}")


if __name__ == "__main__":
    cli(prog_name="python -m shoppulse.lake")
