"""Spans as OTLP/JSON (the protobuf JSON mapping: hex ids, enum numbers, 64-bit ints as text)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from difytrace.cli_tree import SpanLike

_KINDS = {"INTERNAL": 1, "SERVER": 2, "CLIENT": 3, "PRODUCER": 4, "CONSUMER": 5}
_STATUS = {"UNSET": 0, "OK": 1, "ERROR": 2}


def any_value(value: Any) -> dict[str, Any]:
    """One attribute value as an OTLP ``AnyValue``."""
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, (list, tuple)):
        return {"arrayValue": {"values": [any_value(v) for v in value]}}
    if isinstance(value, dict):
        return {"kvlistValue": {"values": key_values(value)}}
    return {"stringValue": str(value)}


def key_values(attributes: dict[str, Any]) -> list[dict[str, Any]]:
    """Attributes as a list of OTLP ``KeyValue``."""
    return [{"key": k, "value": any_value(v)} for k, v in attributes.items()]


def _span(span: SpanLike) -> dict[str, Any]:
    out: dict[str, Any] = {
        "traceId": span.trace_id,
        "spanId": span.span_id,
        "name": span.name,
        "kind": _KINDS.get(span.kind, 1),
        "startTimeUnixNano": str(span.start_time_ns),
        "endTimeUnixNano": str(span.end_time_ns),
        "attributes": key_values(span.attributes),
        "events": [
            {"name": name, "attributes": key_values(attrs)}
            for name, attrs in getattr(span, "events", [])
        ],
        "status": {"code": _STATUS.get(span.status_code, 0)},
    }
    if span.parent_span_id:
        out["parentSpanId"] = span.parent_span_id
    if span.status_description:
        out["status"]["message"] = span.status_description
    return out


def to_otlp_json(spans: Iterable[SpanLike]) -> dict[str, Any]:
    """An ``ExportTraceServiceRequest`` in OTLP/JSON: spans grouped by resource, then scope."""
    groups: dict[str, tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]] = {}
    for span in spans:
        key = json.dumps(span.resource, sort_keys=True, default=str)
        _resource, scopes = groups.setdefault(key, (span.resource, {}))
        scopes.setdefault(getattr(span, "scope_name", "") or "", []).append(_span(span))
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": key_values(resource)},
                "scopeSpans": [
                    {"scope": {"name": scope}, "spans": items} for scope, items in scopes.items()
                ],
            }
            for resource, scopes in groups.values()
        ]
    }


def write(spans: Iterable[SpanLike], path: Path) -> Path:
    """Write spans to ``path`` as one OTLP/JSON document; return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_otlp_json(spans), indent=1) + "\n", encoding="utf-8")
    return path
