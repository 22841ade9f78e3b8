"""Daily rollups: deduplicated lake events -> per-partition rows of the PostgreSQL serving tables.

Plain Python (Polars, DuckDB, psycopg); the Dagster assets in `assets/` are thin shells over it.
"""
