-- Runs once when the postgres volume is created: Dagster's instance storage gets its own database.
CREATE DATABASE shoppulse_dagster OWNER shoppulse;
