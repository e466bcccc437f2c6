"""MetricSpec.prometheus_name is what the exporters really write."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.metrics import MeterProvider

from difytrace import semconv
from difytrace.semconv import MetricSpec

ALL_SPECS = (*semconv.METRICS, *semconv.COLLECTOR_METRICS)


def _record(provider: MeterProvider, spec: MetricSpec) -> None:
    meter = provider.get_meter("difytrace.test.names")
    attrs = {a: "v" for a in spec.attributes}
    if spec.instrument == "counter":
        meter.create_counter(spec.name, unit=spec.unit).add(1, attrs)
    elif spec.instrument == "histogram":
        meter.create_histogram(spec.name, unit=spec.unit).record(0.5, attrs)
    elif spec.instrument == "up_down_counter":
        meter.create_up_down_counter(spec.name, unit=spec.unit).add(1, attrs)
    else:
        meter.create_gauge(spec.name, unit=spec.unit).set(1, attrs)


def _expected_samples(spec: MetricSpec) -> set[str]:
    if spec.instrument == "histogram":
        return {spec.prometheus_name + s for s in ("_bucket", "_count", "_sum")}
    return {spec.prometheus_name}


def test_python_prometheus_exporter_writes_prometheus_name() -> None:
    exporter = pytest.importorskip("opentelemetry.exporter.prometheus")
    from prometheus_client import REGISTRY, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    reader = exporter.PrometheusMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        for spec in ALL_SPECS:
            _record(provider, spec)
        text = generate_latest(REGISTRY).decode()
    finally:
        provider.shutdown()
    seen = {s.name for family in text_string_to_metric_families(text) for s in family.samples}
    for spec in ALL_SPECS:
        assert _expected_samples(spec) <= seen, (spec.name, sorted(seen))


# The collector's prometheus exporter (prometheus/otlptranslator, suffixes on): cases of its
# token, unit and type suffix rules.
@pytest.mark.parametrize(
    ("name", "instrument", "unit", "expected"),
    [
        ("http.server.request.duration", "histogram", "s", "http_server_request_duration_seconds"),
        ("rpc.duration", "histogram", "ms", "rpc_duration_milliseconds"),
        ("net.io", "counter", "By", "net_io_bytes_total"),
        ("net.rate", "gauge", "By/s", "net_rate_bytes_per_second"),
        ("gen_ai.client.token.usage", "histogram", "{token}", "gen_ai_client_token_usage"),
        ("tasks.published", "counter", "1", "tasks_published_total"),
        ("queue.depth", "up_down_counter", "{record}", "queue_depth"),
        ("cache.age.seconds", "gauge", "s", "cache_age_seconds"),
        ("cost", "counter", "USD", "cost_USD_total"),
        ("cost", "counter", "{USD}", "cost_total"),
        ("ops.rate", "gauge", "{record}/s", "ops_rate_per_second"),
        ("queue.seconds.wait", "histogram", "s", "queue_seconds_wait"),
        ("jobs.total", "counter", "1", "jobs_total"),
        ("disk..used", "gauge", "GiBy", "disk_used_gibibytes"),
        ("cpu.utilization", "gauge", "1", "cpu_utilization_ratio"),
        ("temp", "gauge", "Cel", "temp_celsius"),
    ],
)
def test_prometheus_name_rules(name: str, instrument: str, unit: str, expected: str) -> None:
    spec = MetricSpec(name, instrument, unit, "", ())  # type: ignore[arg-type]
    assert spec.prometheus_name == expected


def test_no_gauge_of_unit_one() -> None:
    # The collector appends _ratio to such gauges and the Python exporter does not.
    bad = [s.name for s in ALL_SPECS if s.instrument != "counter" and s.unit == "1"]
    assert bad == []


def test_names_and_labels_unique() -> None:
    names = [s.prometheus_name for s in ALL_SPECS]
    assert len(names) == len(set(names))
    for spec in ALL_SPECS:
        labels = [a.replace(".", "_") for a in spec.attributes]
        assert len(labels) == len(set(labels)), spec.name
