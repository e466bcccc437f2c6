"""Decoding OTLP export requests (protobuf or OTLP/JSON) into captured spans and points."""

from __future__ import annotations

import base64
import gzip
import json
import zlib
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric

from difytrace.testing._model import Attributes, CapturedSpan, MetricKind, MetricPoint

_KINDS = {0: "INTERNAL", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}
_STATUS = {0: "UNSET", 1: "OK", 2: "ERROR"}
_TEMPORALITY: dict[int, Any] = {1: "delta", 2: "cumulative"}
# OTLP/JSON writes these bytes fields as hex, where protobuf's JSON mapping expects base64.
_HEX_FIELDS = {"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"}


class UndecodableBody(ValueError):
    """The request body is not a valid OTLP message."""


def _hex_field(key: str, value: str) -> str:
    try:
        return base64.b64encode(bytes.fromhex(value)).decode()
    except ValueError:
        raise UndecodableBody(f"{key} is not hex: {value!r}") from None


def _hex_to_base64(node: Any) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key in _HEX_FIELDS and isinstance(value, str) and value:
                out[key] = _hex_field(key, value)
            else:
                out[key] = _hex_to_base64(value)
        return out
    if isinstance(node, list):
        return [_hex_to_base64(v) for v in node]
    return node


def parse(body: bytes, message: Message, is_json: bool) -> None:
    """Fill ``message`` from ``body``; raise :class:`UndecodableBody` when it cannot be read."""
    try:
        if is_json:
            json_format.ParseDict(
                _hex_to_base64(json.loads(body)), message, ignore_unknown_fields=True
            )
        else:
            message.ParseFromString(body)
    except (DecodeError, json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        raise UndecodableBody(str(exc) or type(exc).__name__) from None


def decompress(body: bytes, encoding: str) -> bytes:
    """``body`` per its ``Content-Encoding`` (gzip, deflate, identity); UndecodableBody else."""
    encoding = encoding.strip().lower()
    try:
        if encoding == "gzip":
            return gzip.decompress(body)
        if encoding == "deflate":
            return zlib.decompress(body)
    except (OSError, EOFError, zlib.error) as exc:
        raise UndecodableBody(f"bad {encoding} body: {exc}") from None
    if encoding not in ("", "identity"):
        raise UndecodableBody(f"unsupported content-encoding {encoding!r}")
    return body


def any_value(value: AnyValue) -> Any:
    """The Python value of an OTLP ``AnyValue`` (arrays as tuples, kvlists as dicts)."""
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return tuple(any_value(v) for v in value.array_value.values)
    if which == "kvlist_value":
        return key_values(value.kvlist_value.values)
    return getattr(value, which)


def key_values(items: Any) -> Attributes:
    """``repeated KeyValue`` as a dict."""
    pairs: list[KeyValue] = list(items)
    return {kv.key: any_value(kv.value) for kv in pairs}


def _id(raw: bytes) -> str:
    return raw.hex()


def spans_from_request(request: ExportTraceServiceRequest) -> list[CapturedSpan]:
    """Every span in a trace export request."""
    out: list[CapturedSpan] = []
    for rs in request.resource_spans:
        resource = key_values(rs.resource.attributes)
        for ss in rs.scope_spans:
            out.extend(
                CapturedSpan(
                    name=s.name,
                    trace_id=_id(s.trace_id),
                    span_id=_id(s.span_id),
                    parent_span_id=_id(s.parent_span_id) or None,
                    kind=_KINDS.get(s.kind, "INTERNAL"),
                    attributes=key_values(s.attributes),
                    events=[(e.name, key_values(e.attributes)) for e in s.events],
                    status_code=_STATUS.get(s.status.code, "UNSET"),
                    status_description=s.status.message or None,
                    start_time_ns=s.start_time_unix_nano,
                    end_time_ns=s.end_time_unix_nano,
                    resource=resource,
                    scope_name=ss.scope.name,
                    links=[
                        (_id(ln.trace_id), _id(ln.span_id), key_values(ln.attributes))
                        for ln in s.links
                    ],
                )
                for s in ss.spans
            )
    return out


def points_from_request(request: ExportMetricsServiceRequest) -> list[MetricPoint]:
    """Every data point in a metrics export request."""
    out: list[MetricPoint] = []
    for rm in request.resource_metrics:
        resource = key_values(rm.resource.attributes)
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                common: dict[str, Any] = {
                    "name": metric.name,
                    "unit": metric.unit,
                    "resource": resource,
                    "scope_name": sm.scope.name,
                }
                out.extend(_metric_points(metric, common))
    return out


def _metric_points(metric: Metric, common: dict[str, Any]) -> list[MetricPoint]:
    which = metric.WhichOneof("data")
    if which in ("sum", "gauge"):
        data = metric.sum if which == "sum" else metric.gauge
        temporality = (
            _TEMPORALITY.get(metric.sum.aggregation_temporality) if which == "sum" else None
        )
        kind: MetricKind = "sum" if which == "sum" else "gauge"
        return [
            MetricPoint(
                kind=kind,
                attributes=key_values(p.attributes),
                value=p.as_int if p.WhichOneof("value") == "as_int" else p.as_double,
                temporality=temporality,
                start_time_ns=p.start_time_unix_nano,
                time_ns=p.time_unix_nano,
                **common,
            )
            for p in data.data_points
        ]
    if which == "histogram":
        return [
            MetricPoint(
                kind="histogram",
                attributes=key_values(p.attributes),
                count=p.count,
                sum=p.sum,
                bucket_counts=tuple(p.bucket_counts),
                explicit_bounds=tuple(p.explicit_bounds),
                min=p.min if p.HasField("min") else None,
                max=p.max if p.HasField("max") else None,
                temporality=_TEMPORALITY.get(metric.histogram.aggregation_temporality),
                start_time_ns=p.start_time_unix_nano,
                time_ns=p.time_unix_nano,
                **common,
            )
            for p in metric.histogram.data_points
        ]
    if which == "exponential_histogram":
        eh = metric.exponential_histogram
        return [
            MetricPoint(
                kind="exponential_histogram",
                attributes=key_values(p.attributes),
                count=p.count,
                sum=p.sum,
                min=p.min if p.HasField("min") else None,
                max=p.max if p.HasField("max") else None,
                temporality=_TEMPORALITY.get(eh.aggregation_temporality),
                start_time_ns=p.start_time_unix_nano,
                time_ns=p.time_unix_nano,
                **common,
            )
            for p in eh.data_points
        ]
    return []
