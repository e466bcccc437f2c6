"""The captured forms of spans and metric points, shared by the in-memory capture and the
OTLP receiver so that a test reads the same objects whichever way the telemetry arrived."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    ExponentialHistogram,
    Gauge,
    Histogram,
    MetricsData,
    Sum,
)
from opentelemetry.sdk.trace import ReadableSpan

Attributes = dict[str, Any]
MetricKind = Literal["sum", "gauge", "histogram", "exponential_histogram"]


@dataclass(frozen=True)
class CapturedSpan:
    """One finished span, with ids as lowercase hex and attribute arrays as tuples.

    What ``span_capture.spans()`` and ``OTLPReceiver.spans()`` return. Example:

    >>> from opentelemetry import trace
    >>> from difytrace.testing import install_global_capture
    >>> capture = install_global_capture(); capture.clear()
    >>> with trace.get_tracer("doc").start_as_current_span("job", attributes={"k": [1, 2]}):
    ...     pass
    >>> (span,) = capture.spans()
    >>> span.name, span.kind, span.attributes, span.parent_span_id, len(span.trace_id)
    ('job', 'INTERNAL', {'k': (1, 2)}, None, 32)
    """

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str | None
    kind: str
    attributes: Attributes
    events: list[tuple[str, Attributes]]
    status_code: str
    status_description: str | None
    start_time_ns: int
    end_time_ns: int
    resource: Attributes
    scope_name: str
    #: (trace_id, span_id, attributes) of each link.
    links: list[tuple[str, str, Attributes]] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        """End minus start, in seconds.

        >>> from difytrace.testing import use_clock, FakeClock, install_global_capture
        >>> from opentelemetry import trace
        >>> capture = install_global_capture(); capture.clear()
        >>> with use_clock(FakeClock(step=0.25)):
        ...     trace.get_tracer("doc").start_span("quick").end()
        >>> capture.spans()[0].duration_s
        0.25
        """
        return (self.end_time_ns - self.start_time_ns) / 1e9

    def __hash__(self) -> int:
        return hash((self.trace_id, self.span_id))


class HasSpans(Protocol):
    """Anything holding captured spans: ``span_capture``, an ``OTLPReceiver``."""

    def spans(self) -> list[CapturedSpan]: ...


SpanSource = Iterable[CapturedSpan] | HasSpans


def as_spans(source: SpanSource) -> list[CapturedSpan]:
    """A list of spans from a list, or from an object with ``.spans()``."""
    spans = getattr(source, "spans", None)
    if callable(spans):
        return list(spans())
    return list(source)  # type: ignore[arg-type]


@dataclass(frozen=True)
class MetricPoint:
    """One data point of one metric stream.

    ``value`` is set for sums and gauges; ``count``, ``sum``, ``min``, ``max`` and (explicit
    histograms only) ``bucket_counts`` / ``explicit_bounds`` for histograms. Example:

    >>> from opentelemetry import metrics
    >>> from difytrace.testing import install_global_capture
    >>> capture = install_global_capture(); capture.clear()
    >>> metrics.get_meter("doc").create_counter("doc.jobs").add(2, {"queue": "q"})
    >>> (point,) = capture.metrics()["doc.jobs"]
    >>> point.kind, point.value, point.attributes, point.temporality
    ('sum', 2, {'queue': 'q'}, 'delta')
    """

    name: str
    kind: MetricKind
    attributes: Attributes
    value: float | int | None = None
    count: int | None = None
    sum: float | None = None
    bucket_counts: tuple[int, ...] | None = None
    explicit_bounds: tuple[float, ...] | None = None
    min: float | None = None
    max: float | None = None
    temporality: Literal["delta", "cumulative"] | None = None
    start_time_ns: int = 0
    time_ns: int = 0
    unit: str = ""
    resource: Attributes = field(default_factory=dict)
    scope_name: str = ""


@dataclass(frozen=True)
class HistogramTotals:
    """Count and sum of a histogram over the points that matched.

    >>> from opentelemetry import metrics
    >>> from difytrace.testing import install_global_capture
    >>> capture = install_global_capture(); capture.clear()
    >>> latency = metrics.get_meter("doc").create_histogram("doc.latency", unit="s")
    >>> latency.record(0.5, {"route": "/chat"}); latency.record(1.5, {"route": "/chat"})
    >>> capture.histogram("doc.latency", {"route": "/chat"})
    HistogramTotals(count=2, sum=2.0)
    """

    count: int
    sum: float


def hex_id(value: int, width: int) -> str:
    """An id as zero-padded lowercase hex (32 digits for traces, 16 for spans)."""
    return format(value, f"0{width}x")


def attrs(values: Mapping[str, Any] | None) -> Attributes:
    """A plain dict of attributes, sequences as tuples."""
    if not values:
        return {}
    return {
        k: tuple(v) if isinstance(v, Sequence) and not isinstance(v, str | bytes) else v
        for k, v in values.items()
    }


def from_readable_span(span: ReadableSpan) -> CapturedSpan:
    """Convert an SDK span (opentelemetry-sdk 1.27 … 1.45) to a :class:`CapturedSpan`."""
    ctx = span.context
    assert ctx is not None
    parent = span.parent
    return CapturedSpan(
        name=span.name,
        trace_id=hex_id(ctx.trace_id, 32),
        span_id=hex_id(ctx.span_id, 16),
        parent_span_id=hex_id(parent.span_id, 16) if parent is not None else None,
        kind=span.kind.name,
        attributes=attrs(span.attributes),
        events=[(e.name, attrs(e.attributes)) for e in span.events],
        status_code=span.status.status_code.name,
        status_description=span.status.description,
        start_time_ns=span.start_time or 0,
        end_time_ns=span.end_time or 0,
        resource=attrs(span.resource.attributes),
        scope_name=span.instrumentation_scope.name if span.instrumentation_scope else "",
        links=[
            (
                hex_id(link.context.trace_id, 32),
                hex_id(link.context.span_id, 16),
                attrs(link.attributes),
            )
            for link in span.links
        ],
    )


def _temporality(value: AggregationTemporality) -> Literal["delta", "cumulative"] | None:
    if value == AggregationTemporality.DELTA:
        return "delta"
    if value == AggregationTemporality.CUMULATIVE:
        return "cumulative"
    return None


def points_from_metrics_data(data: MetricsData | None) -> list[MetricPoint]:
    """Flatten the SDK's ``MetricsData`` into :class:`MetricPoint` objects."""
    points: list[MetricPoint] = []
    for rm in data.resource_metrics if data is not None else ():
        resource = attrs(rm.resource.attributes)
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                common: dict[str, Any] = {
                    "name": metric.name,
                    "unit": metric.unit or "",
                    "resource": resource,
                    "scope_name": sm.scope.name,
                }
                points.extend(_sdk_points(metric.data, common))
    return points


def _sdk_points(data: object, common: dict[str, Any]) -> list[MetricPoint]:
    out: list[MetricPoint] = []
    if isinstance(data, Sum | Gauge):
        kind: MetricKind = "sum" if isinstance(data, Sum) else "gauge"
        temporality = _temporality(data.aggregation_temporality) if isinstance(data, Sum) else None
        for p in data.data_points:
            out.append(
                MetricPoint(
                    kind=kind,
                    attributes=attrs(p.attributes),
                    value=p.value,
                    temporality=temporality,
                    start_time_ns=p.start_time_unix_nano,
                    time_ns=p.time_unix_nano,
                    **common,
                )
            )
    elif isinstance(data, Histogram | ExponentialHistogram):
        explicit = isinstance(data, Histogram)
        for hp in data.data_points:
            out.append(
                MetricPoint(
                    kind="histogram" if explicit else "exponential_histogram",
                    attributes=attrs(hp.attributes),
                    count=hp.count,
                    sum=hp.sum,
                    bucket_counts=tuple(hp.bucket_counts) if explicit else None,  # type: ignore[union-attr]
                    explicit_bounds=tuple(hp.explicit_bounds) if explicit else None,  # type: ignore[union-attr]
                    min=hp.min,
                    max=hp.max,
                    temporality=_temporality(data.aggregation_temporality),
                    start_time_ns=hp.start_time_unix_nano,
                    time_ns=hp.time_unix_nano,
                    **common,
                )
            )
    return out
