"""Daily rollups: deduplicated lake events -> per-partition rows of the PostgreSQL serving tables.

Plain Python (Polars, DuckDB, psycopg); the Dagster assets in `assets/` are thin shells over it.

- `catalog`: rollup assets and the serving tables each owns (columns, keys);
- `source`, `dedup`: consistent per-day lake snapshots, the one deduplication rule;
- `sales`, `products`, `users`, `funnel`, `customers`, `quality`, `fx`: the transforms (metric
  definitions themselves live in `shoppulse.metrics`);
- `writer`: one transaction per (asset, partition): DELETE + COPY + ledger row + NOTIFY;
- `runner`: reads days in order, computes the selected rollups, writes them (the assets' bodies);
- `affected`: which partitions a lake change makes stale (the automation's input);
- `checks`: raw-layer and rollup checks.
"""
