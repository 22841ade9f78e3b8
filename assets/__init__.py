"""Dagster asset definitions: thin shells over `shoppulse` business logic."""
