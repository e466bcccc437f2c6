"""Histogram buckets hold on every supported SDK, including 1.27 which ignores advice."""

from __future__ import annotations

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader

from difytrace import bootstrap, semconv


def test_every_difytrace_histogram_gets_its_buckets_from_the_views() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], views=bootstrap._histogram_views())
    meter = provider.get_meter("test")
    for name in semconv.histogram_buckets():
        meter.create_histogram(name).record(0.3)
    data = reader.get_metrics_data()
    assert data is not None
    seen: dict[str, tuple[float, ...]] = {}
    for resource_metrics in data.resource_metrics:
        for scope in resource_metrics.scope_metrics:
            for metric in scope.metrics:
                [point] = metric.data.data_points
                assert isinstance(point, HistogramDataPoint)
                seen[metric.name] = tuple(point.explicit_bounds)
    assert seen == {k: tuple(float(b) for b in v) for k, v in semconv.histogram_buckets().items()}
    provider.shutdown()
