"""The export pipeline counts what it hands over and what it loses."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from difytrace import semconv
from difytrace.export_health import batch_queue
from difytrace.forksafe import LazySpanExporter
from difytrace.testing import SpanCapture, sum_value


class _Fixed(SpanExporter):
    def __init__(self, result: SpanExportResult) -> None:
        self.result = result

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.result


def _spans(n: int) -> list[ReadableSpan]:
    return [ReadableSpan(name=f"s{i}") for i in range(n)]


def test_successful_exports_are_counted(span_capture: SpanCapture) -> None:
    exporter = LazySpanExporter(lambda: _Fixed(SpanExportResult.SUCCESS))
    exporter.export(_spans(3))
    exporter.export(_spans(2))
    points = span_capture.metrics()
    assert sum_value(points[semconv.EXPORTER_SPANS_EXPORTED.name]) == 5
    assert semconv.EXPORTER_SPANS_DROPPED.name not in points


def test_failed_exports_count_the_failure_and_the_lost_spans(span_capture: SpanCapture) -> None:
    exporter = LazySpanExporter(lambda: _Fixed(SpanExportResult.FAILURE))
    exporter.export(_spans(4))
    points = span_capture.metrics()
    failures = {semconv.EXPORTER_SIGNAL: "traces", semconv.ERROR_TYPE: "export_failed"}
    assert sum_value(points[semconv.EXPORTER_EXPORT_FAILURES.name], failures) == 1
    dropped = {semconv.EXPORTER_REASON: "export_failed"}
    assert sum_value(points[semconv.EXPORTER_SPANS_DROPPED.name], dropped) == 4


def test_the_sdk_batch_queue_is_found_on_every_supported_sdk() -> None:
    processor = BatchSpanProcessor(
        _Fixed(SpanExportResult.SUCCESS), max_queue_size=7, max_export_batch_size=7
    )
    try:
        queue = batch_queue(processor)
        assert queue is not None
        assert queue.maxlen == 7
    finally:
        processor.shutdown()
