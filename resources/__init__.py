"""Dagster resources: configuration-carrying handles to Kafka, the lake and PostgreSQL."""
