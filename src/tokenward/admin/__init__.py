"""The operator's surfaces: the admin listener with Prometheus metrics and the dashboard
(docs/observability.md)."""
