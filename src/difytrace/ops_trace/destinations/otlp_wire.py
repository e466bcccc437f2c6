"""A small OTLP/protobuf trace encoder: ``ExportTraceServiceRequest`` bytes from plain values.

Building the generated ``opentelemetry.proto`` messages (upb) costs ~18 µs per span of 11
attributes (one Python object per attribute and value); writing the wire format directly
costs ~7 µs, and a record's shared attributes are encoded once for all its spans: what lets
one worker deliver thousands of traces per CPU-second. The tests decode requests with the
official ``opentelemetry.proto`` classes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from typing import Any

# Span fields 7 and 8 (start and end, fixed64) in one call.
_times = struct.Struct("<BQBQ").pack
_double = struct.Struct("<d").pack

SPAN_KIND_INTERNAL = 1
STATUS_UNSET, STATUS_OK, STATUS_ERROR = 0, 1, 2


_SMALL = [bytes((i,)) for i in range(128)]


def _varint(value: int) -> bytes:
    if value < 0x80:
        return _SMALL[value]
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _ld(field: int, payload: bytes) -> bytes:
    """A length-delimited field."""
    return _TAGS[field] + _varint(len(payload)) + payload


_TAGS = {f: _varint(f << 3 | 2) for f in range(1, 16)}


def _str(field: int, text: str) -> bytes:
    return _ld(field, text.encode("utf-8", "replace"))


def any_value(value: Any) -> bytes:
    """An encoded ``AnyValue`` (str, bool, int, float, or a sequence of those)."""
    if isinstance(value, str):
        raw = value.encode("utf-8", "replace")
        return b"\x0a" + _varint(len(raw)) + raw
    if isinstance(value, bool):
        return b"\x10" + (b"\x01" if value else b"\x00")
    if isinstance(value, int):
        return b"\x18" + _varint(value & 0xFFFFFFFFFFFFFFFF)
    if isinstance(value, float):
        return b"\x21" + _double(value)
    if isinstance(value, list | tuple):
        return _ld(5, b"".join(_ld(1, any_value(v)) for v in value))
    return _str(1, str(value))


_KEYS: dict[str, bytes] = {}


def _key(name: str) -> bytes:
    """The encoded ``key`` field of a KeyValue and the tag of its ``value`` (cached: names
    repeat)."""
    encoded = _KEYS.get(name)
    if encoded is None:
        encoded = _str(1, name) + b"\x12"
        if len(_KEYS) < 10_000:
            _KEYS[name] = encoded
    return encoded


def attributes(field: int, attrs: dict[str, Any]) -> bytes:
    """Repeated ``KeyValue`` at ``field``; None values are left out."""
    out: list[bytes] = []
    attributes_into(out, field, attrs)
    return b"".join(out)


def attributes_into(out: list[bytes], field: int, attrs: dict[str, Any]) -> None:
    """:func:`attributes` as pieces appended to ``out`` (joined once with their span).

    The hot path of the worker (a dozen attributes per span): string values, the common case,
    are written as flat pieces, without an intermediate ``AnyValue`` object.
    """
    tag = _TAGS[field]
    small = _SMALL
    for k, v in attrs.items():
        if v is None:
            continue
        head = _KEYS.get(k) or _key(k)
        if v.__class__ is str:
            raw = v.encode("utf-8", "replace")
            n = len(raw)
            if n < 126:  # the value's lengths fit one varint byte each
                size = len(head) + n + 3
                out += (
                    tag,
                    small[size] if size < 128 else _varint(size),
                    head,
                    small[n + 2],
                    b"\x0a",
                    small[n],
                    raw,
                )
                continue
            text_size = _varint(n)
            value_len = 1 + len(text_size) + n
            value_size = _varint(value_len)
            out += (
                tag,
                _varint(len(head) + len(value_size) + value_len),
                head,
                value_size,
                b"\x0a",
                text_size,
                raw,
            )
            continue
        value = any_value(v)
        kv = head + _varint(len(value)) + value
        out += (tag, _varint(len(kv)), kv)


def trace_id_field(trace_id: str) -> bytes:
    """The encoded ``trace_id`` field of a Span (the same for every span of a record)."""
    return _ld(1, bytes.fromhex(trace_id))


_SPAN_KIND_INTERNAL = b"\x30" + _varint(SPAN_KIND_INTERNAL)


def span(
    trace_field: bytes,
    span_id: str,
    parent_span_id: str | None,
    name: str,
    *,
    start_ns: int,
    end_ns: int,
    attribute_pieces: list[bytes],
    status_code: int = STATUS_UNSET,
    status_message: str = "",
) -> bytes:
    """An encoded ``Span`` (kind INTERNAL); ``trace_field`` from :func:`trace_id_field`,
    ``attribute_pieces`` from :func:`attributes_into` (or :func:`attributes`) at field 9."""
    own = bytes.fromhex(span_id)
    out = [trace_field, b"\x12", _SMALL[len(own)], own]
    if parent_span_id:
        parent = bytes.fromhex(parent_span_id)
        out += (b"\x22", _SMALL[len(parent)], parent)
    out += (
        _str(5, name),
        _SPAN_KIND_INTERNAL,
        _times(0x39, start_ns, 0x41, end_ns),
    )
    out += attribute_pieces
    if status_code:
        status = (
            (_str(2, status_message) if status_message else b"") + b"\x18" + _varint(status_code)
        )
        out.append(_ld(15, status))
    return b"".join(out)


def export_request(
    resource: dict[str, Any], scope_name: str, scope_version: str, spans: Iterable[bytes]
) -> bytes:
    """An encoded ``ExportTraceServiceRequest`` with one resource and one scope.

    Written as one list of pieces joined once: the body of a request is megabytes, and
    nesting ``_ld`` calls would copy it once per level.
    """
    scope = _ld(1, _str(1, scope_name) + _str(2, scope_version))
    pieces = [b"", b"", b"", scope]  # the first three: headers, once the lengths are known
    size = len(scope)
    for span in spans:
        head = b"\x12" + _varint(len(span))
        pieces += (head, span)
        size += len(head) + len(span)
    resource_field = _ld(1, attributes(1, resource))
    scope_spans_head = b"\x12" + _varint(size)
    resource_spans_size = len(resource_field) + len(scope_spans_head) + size
    pieces[0] = b"\x0a" + _varint(resource_spans_size)
    pieces[1] = resource_field
    pieces[2] = scope_spans_head
    return b"".join(pieces)


def export_requests(
    resource: dict[str, Any], scope_name: str, scope_version: str, groups: Sequence[Sequence[bytes]]
) -> bytes:
    """Same as :func:`export_request` over several span groups (one request body)."""
    return export_request(
        resource, scope_name, scope_version, [s for group in groups for s in group]
    )
