"""Dagster wiring: the one `Definitions` entry, sensors, jobs and schedules."""
