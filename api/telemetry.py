"""Prometheus metrics of one API process (its own registry, exposed at /metrics).

Defined with every other ShopPulse metric in shoppulse/observability/metrics.py (docs/observability.md).
"""

from shoppulse.observability.metrics import ApiMetrics as Telemetry

__all__ = ["Telemetry"]
