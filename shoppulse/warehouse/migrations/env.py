"""Alembic environment: migrations run as raw SQL under a PostgreSQL advisory lock."""

from alembic import context
from sqlalchemy import create_engine, text

from shoppulse.warehouse.db import SCHEMA, VERSION_TABLE

MIGRATION_LOCK_KEY = 0x5305_9015  # any constant; serializes concurrent `migrate()` calls


def run_migrations_online() -> None:
    engine = create_engine(context.config.get_main_option("sqlalchemy.url"))
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        try:
            connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
            connection.commit()
            context.configure(
                connection=connection,
                version_table=VERSION_TABLE,
                version_table_schema=SCHEMA,
                transaction_per_migration=True,
            )
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
            connection.commit()
    engine.dispose()


run_migrations_online()
