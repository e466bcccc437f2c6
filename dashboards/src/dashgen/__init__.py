"""Grafana dashboards and Prometheus alert rules for difytrace, kept as code.

Every metric name comes from :data:`difytrace.semconv.METRICS` (or ``COLLECTOR_METRICS`` for
the series the collector's ``span_metrics`` connector computes), by the spec constants, so a
renamed or missing metric fails the build instead of shipping an empty panel.

Regenerate the committed JSON/YAML with ``PYTHONPATH=dashboards/src python -m dashgen``;
``--check`` exits non-zero when the committed files differ from the source.
"""
