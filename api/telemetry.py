"""Prometheus metrics of one API process (its own registry, exposed at /metrics)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Telemetry:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "shoppulse_api_requests",
            "HTTP requests answered, by route template and status.",
            ("route", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "shoppulse_api_request_duration_seconds",
            "Time from request to the last response byte handed to the server, by route.",
            ("route",),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.cache = Counter(
            "shoppulse_api_cache_lookups",
            "Response cache lookups by result (hit, miss).",
            ("result",),
            registry=self.registry,
        )
        self.invalidations = Counter(
            "shoppulse_api_cache_invalidations",
            "Materialization notifications received (each drops the cached answers it affects).",
            registry=self.registry,
        )
        self._children: dict[tuple[str, int], Callable[[], None]] = {}
        self._latency_children: dict[str, Histogram] = {}
        self.cache_hit = self.cache.labels("hit").inc
        self.cache_miss = self.cache.labels("miss").inc

    def gauge(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """A gauge read at scrape time."""
        Gauge(name, documentation, registry=self.registry).set_function(read)

    def observe(self, route: str, status: int, seconds: float) -> None:
        increment = self._children.get((route, status))
        if increment is None:
            increment = self._children[(route, status)] = self.requests.labels(route, str(status)).inc
        increment()
        latency = self._latency_children.get(route)
        if latency is None:
            latency = self._latency_children[route] = self.latency.labels(route)
        latency.observe(seconds)
