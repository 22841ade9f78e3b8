"""The detector on simulated multi-week traffic: quiet on normal seasonal traffic, and it finds the
outage and the spike the simulator injects (their times come from the incidents' ground-truth record).

Series come straight from the simulator's model (tests/alerts/simulated.py): seven weeks of a shop of
~1,000 sessions and ~30 orders an hour, no Kafka. Run with `-s` to see the counts.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest

from shoppulse.alerts.detector import Alert
from shoppulse.settings import Settings
from simulator.model import HOUR_MS, Behaviour
from tests.alerts.conftest import OUTAGE, SESSIONS_PER_HOUR, SPIKE, START, WEEK_MS
from tests.alerts.simulated import SimulatedShop, detect

SCORED_FROM_WEEK = 4
"""Hours are scored from the fifth week on: the first with four baseline weeks (alert_min_baseline_weeks)."""


@pytest.fixture(scope="module")
def settings() -> Settings:
    return Settings()


def scored_hours(shop: SimulatedShop, from_week: int = SCORED_FROM_WEEK) -> range:
    return range(shop.start_ms + from_week * WEEK_MS, shop.until_ms, HOUR_MS)


def hour_ms(alert: Alert) -> int:
    return int(alert.hour_start.timestamp() * 1000)


def promotion_hours(shop: SimulatedShop) -> set[int]:
    """Hours of the calendar's own promotions (promo days, flash sales), and the hour after each:
    traffic that really is above the usual, which the detector rightly calls a spike."""
    promo = shop.promo_hours()
    return promo | {hour + HOUR_MS for hour in promo}


def summary(alerts: list[Alert], hours: range, label: str) -> Counter[tuple[str, str]]:
    counts = Counter((a.rule, a.direction) for a in alerts)
    print(f"\n{label}: {len(alerts)} alerts over {len(hours)} hours ({len(hours) // 168} weeks): {dict(counts)}")
    return counts


def test_quiet_on_seasonal_traffic_without_promotions(settings: Settings) -> None:
    """Daily and weekly cycles only: not one alert in three scored weeks."""
    shop = SimulatedShop(5, START, SESSIONS_PER_HOUR, Behaviour(promo_day_share=0.0, flash_sale_share=0.0))
    shop.run_days(49)
    hours = scored_hours(shop)
    alerts = detect(shop.series, shop.start_ms, hours, settings)
    summary(alerts, hours, "no promotions")
    assert [a.message for a in alerts] == []


def test_with_promotions_only_promotions_alert(normal: SimulatedShop, settings: Settings) -> None:
    """Default calendar (promo days at 1.6x traffic, 2-hour flash sales at 2.5x): alerts only on promotion
    hours (and the hour after), all of them spikes, and most promotion hours are seen."""
    hours = scored_hours(normal)
    alerts = detect(normal.series, normal.start_ms, hours, settings)
    promo = promotion_hours(normal)
    outside = [a for a in alerts if hour_ms(a) not in promo]
    summary(alerts, hours, "default calendar, all")
    summary(outside, hours, "default calendar, outside promotions")
    assert [a.message for a in outside] == []
    assert all(a.direction == "spike" for a in alerts)
    flagged_promo_hours = {hour_ms(a) for a in alerts if a.rule == "sessions"}
    assert flagged_promo_hours <= promo
    assert len(flagged_promo_hours) >= 24  # the promotions of three weeks are seen


def test_finds_the_injected_outage_and_spike(with_incidents: SimulatedShop, settings: Settings) -> None:
    hours = scored_hours(with_incidents, from_week=6)
    alerts = detect(with_incidents.series, with_incidents.start_ms, hours, settings)
    summary(alerts, hours, "week with incidents")
    found = {(a.rule, a.direction, a.hour_start) for a in alerts}
    recorded = [incident.describe() for incident in (OUTAGE, SPIKE)]  # what the ground truth records
    outage_hours = [dt.datetime.fromisoformat(str(recorded[0]["start"])) + dt.timedelta(hours=h) for h in (0, 1)]
    spike_hour = dt.datetime.fromisoformat(str(recorded[1]["start"]))
    for hour in outage_hours:
        assert {("sessions", "drop", hour), ("orders", "drop", hour)} <= found
    assert {("sessions", "spike", spike_hour), ("orders", "spike", spike_hour), ("net_sales", "spike", spike_hour)} <= (
        found
    )
    assert all(a.severity == "critical" for a in alerts if a.hour_start in outage_hours and a.rule == "sessions")
    incident_hours = {int(h.timestamp() * 1000) for h in (*outage_hours, spike_hour)}
    unexplained = [
        a
        for a in alerts
        if hour_ms(a) not in incident_hours | {h + HOUR_MS for h in incident_hours} | promotion_hours(with_incidents)
    ]
    assert len(unexplained) <= 1, [a.message for a in unexplained]


def test_the_same_week_without_incidents_has_none_of_those_alerts(
    normal: SimulatedShop, with_incidents: SimulatedShop, settings: Settings
) -> None:
    """The incident alerts are caused by the incidents: the twin week without them has none."""
    hours = range(OUTAGE.start_ms, SPIKE.end_ms, HOUR_MS)
    quiet = detect(normal.series, normal.start_ms, hours, settings)
    assert not [a for a in quiet if hour_ms(a) in {OUTAGE.start_ms, OUTAGE.start_ms + HOUR_MS, SPIKE.start_ms}]
    noisy = detect(with_incidents.series, with_incidents.start_ms, hours, settings)
    assert {hour_ms(a) for a in noisy} >= {OUTAGE.start_ms, OUTAGE.start_ms + HOUR_MS, SPIKE.start_ms}
