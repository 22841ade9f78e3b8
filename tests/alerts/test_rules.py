"""Unit tests of the detector's statistics and rules (pure functions, no services)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from shoppulse.alerts import webhook
from shoppulse.alerts.detector import (
    HourInputs,
    alert_id,
    hour_alerts,
    level_alert,
    share_alert,
    stalled_alert,
)
from shoppulse.alerts.stats import binomial_sf, count_cdf, count_sf, median_and_mad, poisson_cdf, poisson_sf
from shoppulse.settings import Settings

HOUR = dt.datetime(2026, 10, 20, 14, tzinfo=dt.UTC)


@pytest.fixture
def settings() -> Settings:
    return Settings()


def test_tails_match_reference_values() -> None:
    # Reference values: Poisson(10) and Binomial(100, 0.05) tables.
    assert poisson_cdf(3, 10) == pytest.approx(0.0103360507, rel=1e-8)
    assert poisson_sf(20, 10) == pytest.approx(0.0034543420, rel=1e-8)
    assert poisson_cdf(15, 10) + poisson_sf(16, 10) == pytest.approx(1.0, rel=1e-12)
    assert binomial_sf(10, 100, 0.05) == pytest.approx(0.0281882942, rel=1e-8)
    assert binomial_sf(0, 100, 0.05) == 1.0 and binomial_sf(101, 100, 0.05) == 0.0
    # A negative binomial barely overdispersed is the Poisson; a wider one has fatter tails.
    assert count_sf(20, 10, 1.000001) == pytest.approx(poisson_sf(20, 10), rel=1e-3)
    assert count_sf(46, 24, 1.5) > 10 * poisson_sf(46, 24)


def test_negative_binomial_tails_agree_with_sampling() -> None:
    mean, dispersion = 24.0, 1.5
    draws = np.random.default_rng(3).negative_binomial(mean / (dispersion - 1), 1 / dispersion, 1_000_000)
    assert count_sf(40, mean, dispersion) == pytest.approx((draws >= 40).mean(), rel=0.05)
    assert count_cdf(10, mean, dispersion) == pytest.approx((draws <= 10).mean(), rel=0.05)


def test_median_and_mad() -> None:
    assert median_and_mad([1, 2, 3, 4, 100]) == (3, 1)


def test_alert_id_is_stable_per_rule_hour_and_direction() -> None:
    assert alert_id("orders", HOUR, "drop") == "orders:2026-10-20T14Z:drop"
    assert alert_id("orders", HOUR.astimezone(dt.timezone(dt.timedelta(hours=2))), "drop") == alert_id(
        "orders", HOUR, "drop"
    )


def test_sparse_counts_use_the_count_test(settings: Settings) -> None:
    history = [19, 21, 20, 22, 20]  # median below alert_count_test_below
    found = level_alert("orders", HOUR, 0, history, settings)
    assert found is not None and found.direction == "drop" and found.details["method"] == "count_test"
    assert found.score is not None and found.score < -settings.alert_z_threshold
    assert found.id == "orders:2026-10-20T14Z:drop" and found.baseline == 20
    assert level_alert("orders", HOUR, 12, history, settings) is None  # noise for an overdispersed count
    # an hour without orders where 10 are usual is p ≈ 3e-4 under φ = 1.5, 5e-5 for a pure Poisson count
    assert level_alert("orders", HOUR, 0, [9, 11, 10, 12, 10], settings) is None
    assert level_alert("orders", HOUR, 0, [9, 11, 10, 12, 10], Settings(alert_count_dispersion=1.0)) is not None


def test_dense_counts_use_the_robust_z_with_a_poisson_floor(settings: Settings) -> None:
    history = [1000, 1010, 990, 1005, 995]
    found = level_alert("sessions", HOUR, 1400, history, settings)
    assert found is not None and found.details["method"] == "robust_z" and found.direction == "spike"
    # MAD is 5 here, but sessions vary at least by √(φ·1000) ≈ 39: +60 is not an anomaly
    assert level_alert("sessions", HOUR, 1060, history, settings) is None


def test_an_outage_under_a_baseline_widened_by_promotions_is_still_found(settings: Settings) -> None:
    history = [25, 41, 44, 45, 73, 80]  # two promotion weeks widen the MAD
    found = level_alert("orders", HOUR, 4, history, settings)
    assert found is not None and found.details["method"] == "count_test_vs_extreme_week"
    assert level_alert("orders", HOUR, 24, history, settings) is None


def test_minimum_changes_and_baseline_weeks(settings: Settings) -> None:
    assert level_alert("orders", HOUR, 0, [9, 11, 10], settings) is None  # three weeks < alert_min_baseline_weeks
    tight = Settings(alert_min_change_orders=20)
    assert level_alert("orders", HOUR, 0, [9, 11, 10, 12, 10], tight) is None


def test_net_sales_need_orders_for_a_spike_and_a_dense_shop(settings: Settings) -> None:
    money = [300_000, 310_000, 290_000, 305_000, 295_000]
    orders = [40, 41, 39, 40, 42]
    spiky = {"net_sales": 900_000.0, "orders": 41.0, "sessions": 1000.0}
    history = {"net_sales": money, "orders": orders, "sessions": [1000, 1000, 1000, 1000]}
    assert not [a for a in hour_alerts(HourInputs(HOUR, spiky, history), settings) if a.rule == "net_sales"]
    busy = {**spiky, "orders": 80.0}
    rules = {a.rule for a in hour_alerts(HourInputs(HOUR, busy, history), settings)}
    assert {"net_sales", "orders"} <= rules
    sparse = {**history, "orders": [4, 5, 3, 4, 4]}
    assert not [a for a in hour_alerts(HourInputs(HOUR, busy, sparse), settings) if a.rule == "net_sales"]


def test_payment_failure_share(settings: Settings) -> None:
    found = share_alert("payment_failure_share", HOUR, 30, 100, 35, 1000, settings)
    assert found is not None and found.direction == "spike" and found.observed == 0.3
    assert found.baseline == pytest.approx(35.5 / 1001)
    assert share_alert("payment_failure_share", HOUR, 6, 100, 35, 1000, settings) is None  # within noise
    assert share_alert("payment_failure_share", HOUR, 10, 12, 35, 1000, settings) is None  # too few attempts


def test_quarantine_share_on_a_clean_baseline(settings: Settings) -> None:
    found = share_alert("quarantine_share", HOUR, 60, 1060, 0, 100_000, settings)
    assert found is not None and found.rule == "quarantine_share" and found.severity == "critical"
    assert share_alert("quarantine_share", HOUR, 5, 1005, 0, 100_000, settings) is None  # too few messages


def test_stalled_pipeline_is_one_alert_per_stale_watermark(settings: Settings) -> None:
    watermark = dt.datetime(2026, 10, 20, 14, 47, tzinfo=dt.UTC)
    assert stalled_alert(watermark, watermark + dt.timedelta(minutes=10), 0, settings) is None
    first = stalled_alert(watermark, watermark + dt.timedelta(minutes=20), 1200, settings)
    later = stalled_alert(watermark, watermark + dt.timedelta(hours=3), 90_000, settings)
    assert first is not None and later is not None
    assert first.id == later.id == "pipeline_stalled:2026-10-20T14Z:drop"
    assert first.severity == "warning" and later.severity == "critical"
    assert "1,200" in first.message
    assert stalled_alert(None, watermark, None, settings) is None


def test_webhook_url_must_be_http() -> None:
    with pytest.raises(ValueError, match="http"):
        webhook.deliver_pending(None, "file:///etc/passwd", dt.datetime.now(dt.UTC))  # type: ignore[arg-type]
