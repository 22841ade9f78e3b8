"""Prometheus metrics of every ShopPulse process (see docs/observability.md).

- :mod:`.metrics`: the one definition of every metric (name, help, labels, buckets);
- :mod:`.multiprocess`: pipeline processes (code server, run workers, simulator) write their metrics to
  files in one directory, so a run worker's counts outlive it;
- :mod:`.collectors`: values read at scrape time (per-partition lag, asset freshness, sales);
- :mod:`.exporter`: the HTTP endpoint Prometheus scrapes for all of the above.
"""
