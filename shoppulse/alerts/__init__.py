"""Anomaly alerts on complete hours (docs/alerts.md): rules in `detector`, statistics in `stats`, the
run against the serving tables in `evaluate`, persistence in `store`, delivery in `webhook`."""
