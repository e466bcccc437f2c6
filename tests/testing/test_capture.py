"""span_capture: the global in-memory providers, metric helpers, waiting, bootstrap interplay."""

from __future__ import annotations

import threading

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider

from difytrace import bootstrap
from difytrace.settings import load_settings
from difytrace.testing import (
    MetricPoint,
    SpanCapture,
    histogram_totals,
    install_global_capture,
    matching,
    reset_configuration,
    sum_value,
)

meter = metrics.get_meter("tests.capture")
tracer = trace.get_tracer("tests.capture")
duration = meter.create_histogram("test.capture.duration", unit="s")
requests = meter.create_counter("test.capture.requests")
in_flight = meter.create_up_down_counter("test.capture.in_flight")


def test_global_providers_are_sdk_and_installed_once(span_capture: SpanCapture) -> None:
    assert isinstance(trace.get_tracer_provider(), TracerProvider)
    assert isinstance(metrics.get_meter_provider(), MeterProvider)
    assert install_global_capture() is span_capture


def test_metrics_start_from_zero_each_test_part_one(span_capture: SpanCapture) -> None:
    requests.add(5, {"route": "/a"})
    assert sum_value(span_capture.metrics()["test.capture.requests"]) == 5


def test_metrics_start_from_zero_each_test_part_two(span_capture: SpanCapture) -> None:
    assert "test.capture.requests" not in span_capture.metrics()
    requests.add(1, {"route": "/a"})
    assert sum_value(span_capture.metrics()["test.capture.requests"]) == 1


def test_metric_points_accumulate_across_reads(span_capture: SpanCapture) -> None:
    duration.record(1.0, {"model": "a", "op": "chat"})
    assert span_capture.histogram("test.capture.duration").count == 1
    duration.record(2.0, {"model": "a", "op": "chat"})
    duration.record(4.0, {"model": "b", "op": "chat"})
    in_flight.add(2)
    in_flight.add(-1)
    points = span_capture.metrics()
    totals = span_capture.histogram("test.capture.duration", {"model": "a"})
    assert (totals.count, totals.sum) == (2, 3.0)
    assert span_capture.histogram("test.capture.duration", {"op": "chat"}).sum == 7.0
    assert span_capture.histogram("test.capture.duration", {"model": "zzz"}).count == 0
    (point_a,) = matching(points["test.capture.duration"], {"model": "a"})
    assert (point_a.min, point_a.max, point_a.unit) == (1.0, 2.0, "s")
    assert point_a.temporality == "delta"
    assert sum(point_a.bucket_counts or ()) == 2
    assert sum_value(points["test.capture.in_flight"]) == 1
    assert histogram_totals(points["test.capture.in_flight"]).count == 0


def test_clear_forgets_spans_and_points(span_capture: SpanCapture) -> None:
    with tracer.start_as_current_span("before"):
        requests.add(1)
    span_capture.clear()
    assert span_capture.spans() == []
    # Observable gauges registered by other tests in this process report their current value
    # at every collection; what this test recorded must be gone.
    assert all(p.kind == "gauge" for points in span_capture.metrics().values() for p in points)


def test_wait_for_a_span_ended_in_another_thread(span_capture: SpanCapture) -> None:
    go = threading.Event()

    def work() -> None:
        go.wait(10)
        with tracer.start_as_current_span("background"):
            pass

    thread = threading.Thread(target=work)
    thread.start()
    go.set()
    (span,) = span_capture.wait_for(name="background", timeout=10)
    thread.join()
    assert span.scope_name == "tests.capture"
    assert span.resource["service.name"] == "pytest"


def test_wait_for_timeout_lists_what_arrived(span_capture: SpanCapture) -> None:
    with tracer.start_as_current_span("only", attributes={"k": "v"}):
        pass
    with pytest.raises(AssertionError) as info:
        span_capture.wait_for(count=2, timeout=0.05, predicate=lambda s: s.name == "only")
    text = str(info.value)
    assert "waiting for 2 span(s) matching the predicate; 1 matched" in text
    assert "Arrived (1 span(s)):\n  only [INTERNAL]" in text


def test_bootstrap_keeps_the_plugin_providers(span_capture: SpanCapture) -> None:
    provider = trace.get_tracer_provider()
    try:
        assert bootstrap.setup_providers(load_settings(environ={}), by="test") is True
        assert bootstrap.configured_by() == "test"
        assert trace.get_tracer_provider() is provider
        with tracer.start_as_current_span("after setup"):
            pass
        assert [s.name for s in span_capture.spans()] == ["after setup"]
    finally:
        reset_configuration()
    assert bootstrap.configured_by() is None
    assert bootstrap.setup_providers(load_settings(environ={}), by="again") is True
    reset_configuration()


def test_metric_point_defaults() -> None:
    point = MetricPoint(name="x", kind="gauge", attributes={}, value=3)
    assert (point.count, point.temporality, point.resource) == (None, None, {})


def test_wait_for_timeout_message_stays_short(span_capture: SpanCapture) -> None:
    for i in range(300):
        with tracer.start_as_current_span(f"many-{i}"):
            pass
    with pytest.raises(AssertionError) as info:
        span_capture.wait_for(name="never", timeout=0.01)
    text = str(info.value)
    assert "Arrived (300 span(s)):" in text
    assert text.endswith("  … 200 more line(s) not shown")
    assert len(text.splitlines()) == 103


def test_reset_configuration_can_uninstrument(span_capture: SpanCapture) -> None:
    import difytrace
    from difytrace.instrumentation import INSTRUMENTORS
    from difytrace.instrumentation.flask import FlaskInstrumentor

    flask = FlaskInstrumentor()
    was_instrumented = flask.is_instrumented_by_opentelemetry
    others = [name for name in INSTRUMENTORS if name != "difytrace_flask"]
    try:
        assert difytrace.configure(enabled=True, exporter="none", disabled_instrumentations=others)
        assert bootstrap.configured_by() == "configure()"
        assert flask.is_instrumented_by_opentelemetry
        assert "difytrace_flask" in reset_configuration(uninstrument=True)
        assert not flask.is_instrumented_by_opentelemetry
        assert bootstrap.configured_by() is None
        assert isinstance(trace.get_tracer_provider(), TracerProvider)
    finally:
        reset_configuration()
        if was_instrumented and not flask.is_instrumented_by_opentelemetry:
            flask.instrument()
