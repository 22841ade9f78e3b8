"""Which partitions a lake change makes stale: only those, and never one Dagster does not have yet."""

from __future__ import annotations

import datetime as dt

from shoppulse.rollups.affected import partitions_to_refresh, partitions_to_refresh_after_drain, runs_by_partition

TODAY = dt.date(2025, 6, 30)


def test_todays_events_refresh_todays_rollups_only() -> None:
    assert partitions_to_refresh([TODAY], last_partition=TODAY) == {
        name: ["2025-06-30"] for name in ("customers", "funnel", "fx_rates", "products", "sales", "users")
    }


def test_a_late_event_reaches_users_for_thirty_days_up_to_today() -> None:
    refresh = partitions_to_refresh(["2025-06-01"], last_partition=TODAY)
    assert refresh["sales"] == ["2025-06-01"]
    assert refresh["users"] == [(dt.date(2025, 6, 1) + dt.timedelta(days=d)).isoformat() for d in range(30)]
    refresh = partitions_to_refresh(["2025-06-28"], last_partition=TODAY)
    assert refresh["users"] == ["2025-06-28", "2025-06-29", "2025-06-30"]  # not past the last partition


def test_tomorrows_events_wait_for_tomorrows_partition() -> None:
    assert partitions_to_refresh([TODAY + dt.timedelta(days=1)], last_partition=TODAY) == {}


def test_days_before_the_first_partition_are_dropped() -> None:
    refresh = partitions_to_refresh(["2024-12-31"], last_partition=TODAY, first_partition=dt.date(2025, 1, 1))
    assert list(refresh) == ["users"] and refresh["users"][0] == "2025-01-01" and len(refresh["users"]) == 29


def test_quarantine_and_late_tables_refresh_ingest_quality_of_their_received_day() -> None:
    changed = {"events": ["2025-06-30"], "late": ["2025-06-29"], "quarantine": ["2025-06-30"]}
    refresh = partitions_to_refresh_after_drain(changed, last_partition=TODAY)
    assert refresh["ingest_quality"] == ["2025-06-29", "2025-06-30"]
    assert refresh["sales"] == ["2025-06-30"]


def test_runs_by_partition_groups_assets_per_day() -> None:
    refresh = partitions_to_refresh(["2025-06-29"], last_partition=TODAY)
    assert runs_by_partition(refresh) == {
        "2025-06-29": ["customers", "funnel", "fx_rates", "products", "sales", "users"],
        "2025-06-30": ["users"],
    }
