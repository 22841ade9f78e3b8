"""Gauges computed when Prometheus scrapes the exporter: lag against the broker, freshness, sales.

Each collector answers from the source of truth at scrape time (the broker and the lake's commit log;
PostgreSQL's ledger and serving tables), so a stalled drain or a stopped sensor still shows. A source
that cannot answer sets the collector's `*_scrape_error` gauge to 1 instead of failing the scrape.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

import psycopg
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from shoppulse.contract.events import CURRENCY_EXPONENTS
from shoppulse.lake import committed_offsets
from shoppulse.lake.lag import BrokerUnavailableError, broker_lag
from shoppulse.lake.table import LakeRef
from shoppulse.observability import metrics as m
from shoppulse.serving.ledger import ASSETS

log = logging.getLogger(__name__)


def family(spec: m.FamilySpec) -> GaugeMetricFamily:
    return GaugeMetricFamily(spec.name, spec.documentation, labels=list(spec.labels))


class LakeLagCollector(Collector):
    """Per partition of the events topic: the broker's high watermark, the lake's offset, the lag."""

    def __init__(self, bootstrap_servers: str, topic: str, lake: LakeRef, timeout: float = 5.0) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.lake = lake
        self.timeout = timeout

    def collect(self) -> Iterator[GaugeMetricFamily]:
        high, offset, lag, error = (
            family(m.KAFKA_HIGH_WATERMARK),
            family(m.LAKE_OFFSET),
            family(m.LAKE_LAG),
            family(m.LAG_SCRAPE_ERROR),
        )
        try:
            report = broker_lag(
                self.bootstrap_servers, self.topic, committed_offsets(self.lake, self.topic), self.timeout
            )
        except (BrokerUnavailableError, OSError) as exc:
            log.warning("lag: broker %s did not answer: %s", self.bootstrap_servers, exc)
            error.add_metric([], 1.0)
            yield error
            return
        for p in report.partitions:
            labels = [self.topic, str(p.partition)]
            high.add_metric(labels, p.high_watermark)
            offset.add_metric(labels, p.lake_offset)
            lag.add_metric(labels, p.lag)
        error.add_metric([], 0.0)
        yield from (high, offset, lag, error)


LEDGER_QUERY = (
    "SELECT asset, max(max_event_ts) AS watermark, max(materialized_at) AS materialized, count(*) AS partitions"
    " FROM analytics.materializations GROUP BY asset"
)
SALES_QUERY = (
    "SELECT currency, sum(orders), sum(net_sales), sum(total_sales)"
    " FROM analytics.sales_daily_reporting GROUP BY currency"
)


class LedgerCollector(Collector):
    """Per asset: watermark and materialization ages, partitions (ledger); sales over all days (serving)."""

    def __init__(self, database_url: str, now: Callable[[], float] = time.time, timeout: float = 5.0) -> None:
        self.database_url = database_url
        self.now = now
        self.timeout = timeout

    def collect(self) -> Iterator[GaugeMetricFamily]:
        error = family(m.LEDGER_SCRAPE_ERROR)
        try:
            with psycopg.connect(
                self.database_url, connect_timeout=int(self.timeout), autocommit=True, application_name="metrics"
            ) as conn:
                conn.execute(f"SET statement_timeout = {int(self.timeout * 1000)}")
                ledger = conn.execute(LEDGER_QUERY).fetchall()
                sales = conn.execute(SALES_QUERY).fetchall()
        except psycopg.Error as exc:
            log.warning("ledger: PostgreSQL did not answer: %s", exc)
            error.add_metric([], 1.0)
            yield error
            return
        now = self.now()
        watermark_age, materialization_age, partitions = (
            family(m.ASSET_WATERMARK_AGE),
            family(m.ASSET_MATERIALIZATION_AGE),
            family(m.ASSET_PARTITIONS),
        )
        known = set(ASSETS)
        for asset, watermark, materialized, count in ledger:
            if asset not in known:
                continue
            if watermark is not None:
                watermark_age.add_metric([asset], now - watermark.timestamp())
            if materialized is not None:
                materialization_age.add_metric([asset], now - materialized.timestamp())
            partitions.add_metric([asset], count)
        orders, net, total = family(m.SALES_ORDERS), family(m.SALES_NET), family(m.SALES_TOTAL)
        orders.add_metric([], sum(int(row[1]) for row in sales))
        for currency, _, net_minor, total_minor in sales:
            scale = 10 ** CURRENCY_EXPONENTS.get(currency.strip(), 2)
            net.add_metric([currency.strip()], int(net_minor) / scale)
            total.add_metric([currency.strip()], int(total_minor) / scale)
        error.add_metric([], 0.0)
        yield from (watermark_age, materialization_age, partitions, orders, net, total, error)
