"""The hand-written OTLP encoder, decoded by the official ``opentelemetry.proto`` classes."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from difytrace.ops_trace.destinations import otlp_wire

# Lengths around every varint boundary of the string fast path: the value alone, the value
# with its AnyValue header, and the whole KeyValue (a long key with a short value) crossing 127.
_TEXTS = ["", "a", "x" * 123, "x" * 124, "x" * 125, "x" * 126, "x" * 127, "x" * 128, "y" * 20_000]
_KEYS = ["k", "k" * 60, "k" * 130, "clé.ünïcode"]


def _value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, which)


def _decoded(attrs: dict[str, Any]) -> list[tuple[str, Any]]:
    span = otlp_wire.span(
        otlp_wire.trace_id_field("0af7651916cd43dd8448eb211c80319c"),
        "00f067aa0ba902b7",
        None,
        "s",
        start_ns=1,
        end_ns=2,
        attribute_pieces=[otlp_wire.attributes(9, attrs)],
    )
    body = otlp_wire.export_request({"service.name": "svc"}, "scope", "1", [span])
    request = ExportTraceServiceRequest.FromString(body)
    (decoded,) = request.resource_spans[0].scope_spans[0].spans
    assert decoded.span_id.hex() == "00f067aa0ba902b7"
    return [(kv.key, _value(kv.value)) for kv in decoded.attributes]


@pytest.mark.parametrize("key", _KEYS)
def test_string_attributes_of_every_length_decode(key: str) -> None:
    attrs = {f"{key}.{i}": text for i, text in enumerate(_TEXTS)}
    assert _decoded(attrs) == list(attrs.items())


def test_other_values_decode_and_none_is_left_out() -> None:
    attrs: dict[str, Any] = {
        "b": True,
        "i": 12345678901,
        "neg": -3,
        "f": 0.25,
        "list": ["a", 2, False],
        "unicode": "café ☕",
        "none": None,
    }
    assert _decoded(attrs) == [(k, v) for k, v in attrs.items() if v is not None]


def test_a_request_of_megabytes_decodes_span_by_span() -> None:
    trace = otlp_wire.trace_id_field("0af7651916cd43dd8448eb211c80319c")
    spans = [
        otlp_wire.span(
            trace,
            f"{i + 1:016x}",
            f"{i:016x}" if i else None,
            f"span {i}",
            start_ns=i,
            end_ns=i + 1,
            attribute_pieces=[otlp_wire.attributes(9, {"text": "z" * (i * 97)})],
            status_code=otlp_wire.STATUS_ERROR if i % 2 else otlp_wire.STATUS_UNSET,
            status_message="failed" if i % 2 else "",
        )
        for i in range(300)
    ]
    body = otlp_wire.export_requests(
        {"service.name": "svc"}, "scope", "1.2", [spans[:7], spans[7:]]
    )
    assert len(body) > 2**22  # lengths of four varint bytes at the outer levels
    (resource_spans,) = ExportTraceServiceRequest.FromString(body).resource_spans
    assert resource_spans.resource.attributes[0].value.string_value == "svc"
    (scope_spans,) = resource_spans.scope_spans
    assert (scope_spans.scope.name, scope_spans.scope.version) == ("scope", "1.2")
    decoded = scope_spans.spans
    assert [s.name for s in decoded] == [f"span {i}" for i in range(300)]
    for i, span in enumerate(decoded):
        assert span.parent_span_id == (bytes.fromhex(f"{i:016x}") if i else b"")
        assert (span.start_time_unix_nano, span.end_time_unix_nano) == (i, i + 1)
        assert span.attributes[0].value.string_value == "z" * (i * 97)
        assert span.status.code == (2 if i % 2 else 0)
        assert span.status.message == ("failed" if i % 2 else "")
