"""OTLPReceiver against the real OTLP/HTTP exporters, raw HTTP requests, and OTLP/JSON."""

from __future__ import annotations

import gzip
import http.client
import json
from collections.abc import Iterator

import pytest
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from difytrace.testing import OTLPReceiver, S, assert_tree


def _post(
    receiver: OTLPReceiver, path: str, body: bytes, headers: dict[str, str]
) -> tuple[int, bytes]:
    host, port = receiver.endpoint.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.fixture
def provider(otlp_receiver: OTLPReceiver) -> Iterator[TracerProvider]:
    tp = TracerProvider(resource=Resource.create({"service.name": "svc-under-test"}))
    exporter = OTLPSpanExporter(
        endpoint=otlp_receiver.endpoint + "/v1/traces",
        headers={"authorization": "Bearer k"},
        compression=Compression.Gzip,
    )
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    yield tp
    tp.shutdown()


def test_spans_from_the_real_exporter(
    otlp_receiver: OTLPReceiver, provider: TracerProvider
) -> None:
    tracer = provider.get_tracer("scope.x")
    with tracer.start_as_current_span(
        "POST /chat", kind=SpanKind.SERVER, attributes={"http.route": "/chat"}
    ) as root:
        with tracer.start_as_current_span(
            "llm",
            kind=SpanKind.CLIENT,
            attributes={"list.str": ["a", "b"], "list.int": [1, 2], "f": 1.5, "b": True},
        ) as llm:
            llm.add_event("retry", {"attempt": 2})
            llm.set_status(Status(StatusCode.ERROR, "boom"))
        with tracer.start_as_current_span(
            "publish", kind=SpanKind.PRODUCER, links=[Link(llm.get_span_context(), {"l": "x"})]
        ):
            pass
    spans = otlp_receiver.wait_for(count=3)
    by_name = {s.name: s for s in spans}
    llm_span, root_span = by_name["llm"], by_name["POST /chat"]
    assert root_span.trace_id == format(root.get_span_context().trace_id, "032x")
    assert root_span.parent_span_id is None
    assert root_span.kind == "SERVER"
    assert llm_span.parent_span_id == root_span.span_id
    assert len(llm_span.span_id) == 16
    assert llm_span.attributes == {"list.str": ("a", "b"), "list.int": (1, 2), "f": 1.5, "b": True}
    assert llm_span.events == [("retry", {"attempt": 2})]
    assert (llm_span.status_code, llm_span.status_description) == ("ERROR", "boom")
    assert by_name["publish"].links == [(llm_span.trace_id, llm_span.span_id, {"l": "x"})]
    assert root_span.resource["service.name"] == "svc-under-test"
    assert root_span.scope_name == "scope.x"
    assert root_span.duration_s >= 0
    assert_tree(
        spans, S("POST /chat", kind="server", children=[S("llm", status="error"), S("publish")])
    )
    request = otlp_receiver.requests()[0]
    assert request.headers["content-encoding"] == "gzip"
    assert request.headers["authorization"] == "Bearer k"


def test_metrics_from_the_real_exporter_keep_the_latest_cumulative_point(
    otlp_receiver: OTLPReceiver,
) -> None:
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=otlp_receiver.endpoint + "/v1/metrics"),
        export_interval_millis=3_600_000,
    )
    meter_provider = MeterProvider(metric_readers=[reader])
    meter = meter_provider.get_meter("m")
    histogram = meter.create_histogram("gen_ai.client.operation.duration", unit="s")
    counter = meter.create_counter("requests")
    histogram.record(0.5, {"gen_ai.request.model": "a"})
    counter.add(2, {"route": "/chat"})
    meter_provider.force_flush()
    histogram.record(1.5, {"gen_ai.request.model": "a"})
    histogram.record(4.0, {"gen_ai.request.model": "b"})
    meter_provider.shutdown()
    otlp_receiver.wait_for_metric("requests")
    points = otlp_receiver.metrics()
    assert (
        otlp_receiver.histogram(
            "gen_ai.client.operation.duration", {"gen_ai.request.model": "a"}
        ).count
        == 2
    )
    totals = otlp_receiver.histogram("gen_ai.client.operation.duration")
    assert (totals.count, totals.sum) == (3, 6.0)
    (requests,) = points["requests"]
    assert (requests.value, requests.temporality, requests.kind) == (2, "cumulative", "sum")
    a = next(
        p
        for p in points["gen_ai.client.operation.duration"]
        if p.attributes == {"gen_ai.request.model": "a"}
    )
    assert (a.min, a.max, a.unit) == (0.5, 1.5, "s")
    assert sum(a.bucket_counts or ()) == 2
    assert a.explicit_bounds
    assert len(otlp_receiver.raw_points()) > len(points)


def _json_trace() -> bytes:
    span = {
        "traceId": "5b8efff798038103d269b633813fc60c",
        "spanId": "eee19b7ec3c1b174",
        "parentSpanId": "eee19b7ec3c1b173",
        "name": "json span",
        "kind": 3,
        "startTimeUnixNano": "1544712660000000000",
        "endTimeUnixNano": "1544712661000000000",
        "attributes": [
            {"key": "s", "value": {"stringValue": "v"}},
            {"key": "i", "value": {"intValue": "7"}},
            {
                "key": "arr",
                "value": {"arrayValue": {"values": [{"stringValue": "x"}, {"boolValue": True}]}},
            },
            {
                "key": "kv",
                "value": {"kvlistValue": {"values": [{"key": "k", "value": {"doubleValue": 2.5}}]}},
            },
        ],
        "status": {"code": 2, "message": "bad"},
    }
    return json.dumps(
        {
            "resourceSpans": [
                {
                    "resource": {
                        "attributes": [{"key": "service.name", "value": {"stringValue": "j"}}]
                    },
                    "scopeSpans": [{"scope": {"name": "json.scope"}, "spans": [span]}],
                }
            ]
        }
    ).encode()


def test_otlp_json_with_hex_ids(otlp_receiver: OTLPReceiver) -> None:
    status, body = _post(
        otlp_receiver, "/v1/traces", _json_trace(), {"Content-Type": "application/json"}
    )
    assert (status, json.loads(body)) == (200, {})
    (span,) = otlp_receiver.spans()
    assert span.trace_id == "5b8efff798038103d269b633813fc60c"
    assert span.parent_span_id == "eee19b7ec3c1b173"
    assert span.kind == "CLIENT"
    assert span.attributes == {"s": "v", "i": 7, "arr": ("x", True), "kv": {"k": 2.5}}
    assert (span.status_code, span.duration_s, span.scope_name) == ("ERROR", 1.0, "json.scope")


def test_gzip_json_and_empty_protobuf_answer(otlp_receiver: OTLPReceiver) -> None:
    status, _ = _post(
        otlp_receiver,
        "/v1/traces",
        gzip.compress(_json_trace()),
        {"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert status == 200
    status, body = _post(
        otlp_receiver, "/v1/traces", b"", {"Content-Type": "application/x-protobuf"}
    )
    assert status == 200
    assert body == ExportTraceServiceResponse().SerializeToString()
    assert [s.name for s in otlp_receiver.spans()] == ["json span"]


@pytest.mark.parametrize(
    ("path", "body", "headers", "expected"),
    [
        ("/v1/traces", b"not a protobuf", {"Content-Type": "application/x-protobuf"}, 400),
        ("/v1/metrics", b"\xff\xff\xff", {"Content-Type": "application/x-protobuf"}, 400),
        ("/v1/traces", b"{not json", {"Content-Type": "application/json"}, 400),
        (
            "/v1/traces",
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}',
            {"Content-Type": "application/json"},
            400,
        ),
        (
            "/v1/traces",
            b"\x1f\x8b broken",
            {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"},
            400,
        ),
        (
            "/v1/traces",
            b"",
            {"Content-Type": "application/x-protobuf", "Content-Encoding": "br"},
            400,
        ),
        ("/v1/traces", b"x", {"Content-Type": "text/plain"}, 415),
        ("/v1/nothing", b"", {"Content-Type": "application/x-protobuf"}, 404),
    ],
)
def test_bad_requests(
    otlp_receiver: OTLPReceiver, path: str, body: bytes, headers: dict[str, str], expected: int
) -> None:
    status, _ = _post(otlp_receiver, path, body, headers)
    assert status == expected
    assert otlp_receiver.spans() == []
    assert otlp_receiver.metrics() == {}
    assert [r.status for r in otlp_receiver.requests()] == [expected]


def test_fail_next_then_recover(otlp_receiver: OTLPReceiver) -> None:
    otlp_receiver.fail_next(503, times=2)
    statuses = [
        _post(otlp_receiver, "/v1/traces", _json_trace(), {"Content-Type": "application/json"})[0]
        for _ in range(3)
    ]
    assert statuses == [503, 503, 200]
    assert len(otlp_receiver.spans()) == 1


def test_wait_for_timeout_shows_what_arrived(otlp_receiver: OTLPReceiver) -> None:
    _post(otlp_receiver, "/v1/traces", _json_trace(), {"Content-Type": "application/json"})
    with pytest.raises(AssertionError) as info:
        otlp_receiver.wait_for(name="never", timeout=0.2)
    message = str(info.value)
    assert "waiting for 1 span(s) named 'never'; 0 matched" in message
    assert "json span [CLIENT]" in message
    assert "ERROR(bad)" in message
    with pytest.raises(AssertionError, match="metric 'nope'; received: nothing"):
        otlp_receiver.wait_for_metric("nope", timeout=0.1)


def test_wait_for_metric_with_a_predicate(otlp_receiver: OTLPReceiver) -> None:
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=otlp_receiver.endpoint + "/v1/metrics"),
        export_interval_millis=3_600_000,
    )
    meter_provider = MeterProvider(metric_readers=[reader])
    counter = meter_provider.get_meter("m").create_counter("jobs")
    counter.add(1)
    meter_provider.force_flush()
    with pytest.raises(AssertionError, match=r"matching the predicate; received: \['jobs'\]"):
        otlp_receiver.wait_for_metric("jobs", timeout=0.1, predicate=lambda p: p[0].value == 3)
    counter.add(2)
    meter_provider.shutdown()
    (point,) = otlp_receiver.wait_for_metric("jobs", predicate=lambda p: p[0].value == 3)
    assert point.value == 3


def test_plain_class_lifecycle() -> None:
    receiver = OTLPReceiver()
    with pytest.raises(RuntimeError, match="not started"):
        _ = receiver.endpoint
    with receiver:
        first = receiver.endpoint
        assert first.startswith("http://127.0.0.1:")
        status, _ = _post(receiver, "/v1/logs", b"", {"Content-Type": "application/x-protobuf"})
        assert status == 200
        receiver.clear()
        assert receiver.requests() == []
    receiver.stop()  # twice is fine
    assert receiver.spans() == []


def test_exponential_histograms_gauges_and_json_metrics(otlp_receiver: OTLPReceiver) -> None:
    def observe(options: CallbackOptions) -> list[Observation]:
        return [Observation(7, {"queue": "ops_trace"})]

    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=otlp_receiver.endpoint + "/v1/metrics"),
        export_interval_millis=3_600_000,
    )
    views = [View(instrument_name="latency", aggregation=ExponentialBucketHistogramAggregation())]
    meter_provider = MeterProvider(metric_readers=[reader], views=views)
    meter = meter_provider.get_meter("m")
    meter.create_observable_gauge("depth", callbacks=[observe])
    latency = meter.create_histogram("latency")
    for value in (1.0, 2.0, 5.0):
        latency.record(value)
    meter_provider.shutdown()
    otlp_receiver.wait_for_metric("latency")
    (depth,) = otlp_receiver.metrics()["depth"]
    assert (depth.kind, depth.value, depth.attributes) == ("gauge", 7, {"queue": "ops_trace"})
    (exp,) = otlp_receiver.metrics()["latency"]
    assert (exp.kind, exp.count, exp.sum, exp.min, exp.max) == (
        "exponential_histogram",
        3,
        8.0,
        1.0,
        5.0,
    )
    assert otlp_receiver.histogram("latency").count == 3

    body = {
        "resourceMetrics": [
            {
                "scopeMetrics": [
                    {
                        "scope": {"name": "j"},
                        "metrics": [
                            {
                                "name": "tokens",
                                "unit": "{token}",
                                "histogram": {
                                    "aggregationTemporality": 1,
                                    "dataPoints": [
                                        {
                                            "attributes": [
                                                {"key": "t", "value": {"stringValue": "input"}}
                                            ],
                                            "count": "2",
                                            "sum": 30,
                                            "bucketCounts": ["1", "1"],
                                            "explicitBounds": [10],
                                            "startTimeUnixNano": "1",
                                            "timeUnixNano": "2",
                                        }
                                    ],
                                },
                            }
                        ],
                    }
                ]
            }
        ]
    }
    for _ in range(2):
        status, _ = _post(
            otlp_receiver,
            "/v1/metrics",
            json.dumps(body).encode(),
            {"Content-Type": "application/json"},
        )
        assert status == 200
    (tokens,) = otlp_receiver.metrics()["tokens"]
    assert (tokens.temporality, tokens.count, tokens.sum) == ("delta", 4, 60.0)
    assert (tokens.bucket_counts, tokens.explicit_bounds) == ((2, 2), (10.0,))
