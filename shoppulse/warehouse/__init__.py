"""PostgreSQL serving warehouse: schema migrations and connection helpers (no dagster/fastapi)."""
