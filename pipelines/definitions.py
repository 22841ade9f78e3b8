"""The one Dagster `Definitions` entry for ShopPulse (found via `[tool.dagster]` in pyproject.toml)."""

from dagster import Definitions

defs = Definitions()
