"""The pipeline's metrics endpoint: `python -m shoppulse.observability.exporter` (started by the stack).

Serves, at `http://HOST:PORT/metrics`, the sum of every pipeline process's metric files (drain sensor
in the code server, run workers, simulator: see multiprocess.py) plus the scrape-time gauges
(lag against the broker, freshness from the ledger, sales). It keeps no state of its own, so it can be
restarted at any time without losing a count.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import click
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector

from shoppulse.observability.collectors import LakeLagCollector, LedgerCollector
from shoppulse.settings import Settings, get_settings


def exporter_registry(settings: Settings, metrics_dir: Path) -> CollectorRegistry:
    """Everything the exporter serves: the files in `metrics_dir`, lag, freshness and sales."""
    metrics_dir.mkdir(parents=True, exist_ok=True)
    registry = CollectorRegistry(auto_describe=False)
    MultiProcessCollector(registry, path=str(metrics_dir))
    registry.register(LakeLagCollector(settings.bootstrap_servers, settings.events_topic, settings.lake_location))
    registry.register(LedgerCollector(settings.database_url))
    return registry


@click.command()
@click.option("--host", default=None, help="Bind address (default: SHOPPULSE_METRICS_HOST).")
@click.option("--port", type=int, default=None, help="Port (default: SHOPPULSE_METRICS_PORT).")
def main(host: str | None, port: int | None) -> None:
    """Serve the pipeline's Prometheus metrics until SIGTERM/SIGINT."""
    settings = get_settings()
    registry = exporter_registry(settings, settings.metrics_dir)
    bind, listen = host or settings.metrics_host, port or settings.metrics_port
    server, thread = start_http_server(listen, addr=bind, registry=registry)
    click.echo(f"pipeline metrics on http://{bind}:{listen}/metrics (files in {settings.metrics_dir})")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    server.shutdown()
    thread.join(timeout=5)


if __name__ == "__main__":
    main()
