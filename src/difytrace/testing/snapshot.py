"""``normalize_trace(spans)``: a stable, JSON-ready view of spans for snapshot tests."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from difytrace.testing._model import CapturedSpan, SpanSource, as_spans

IGNORED = "<ignored>"


def _order(spans: list[CapturedSpan]) -> list[CapturedSpan]:
    return sorted(spans, key=lambda s: (s.start_time_ns, -s.end_time_ns, s.name))


def _replace_ids(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str):
        return ids.get(value, value)
    if isinstance(value, tuple | list):
        return [_replace_ids(v, ids) for v in value]
    if isinstance(value, dict):
        return {k: _replace_ids(v, ids) for k, v in sorted(value.items())}
    return value


def _attributes(
    values: dict[str, Any], ids: dict[str, str], ignore: Collection[str]
) -> dict[str, Any]:
    return {k: IGNORED if k in ignore else _replace_ids(v, ids) for k, v in sorted(values.items())}


def normalize_trace(
    spans: SpanSource,
    *,
    ignore_attributes: Collection[str] = (),
    include_resource: bool = False,
) -> dict[str, Any]:
    """Spans as ``{"spans": [...]}`` with stable ids and clocks.

    Spans are sorted by start time; trace ids become ``t1``, ``t2`` … and span ids ``s1``,
    ``s2`` … in that order (also where an attribute value equals one of them). Times become
    ranks: every start and end time of a trace is replaced by its position among them, so
    the snapshot keeps the ordering (who started first, who ended last) but not the
    durations. Attributes named in ``ignore_attributes`` show as ``"<ignored>"``.
    """
    ordered = _order(as_spans(spans))
    ids: dict[str, str] = {}
    for span in ordered:
        ids.setdefault(span.trace_id, f"t{sum(v.startswith('t') for v in ids.values()) + 1}")
    for n, span in enumerate(ordered, 1):
        ids.setdefault(span.span_id, f"s{n}")
    clocks: dict[str, dict[int, int]] = {}
    for span in ordered:
        clocks.setdefault(span.trace_id, {})
    for trace_id, clock in clocks.items():
        times = sorted(
            {t for s in ordered if s.trace_id == trace_id for t in (s.start_time_ns, s.end_time_ns)}
        )
        clock.update({t: i for i, t in enumerate(times)})
    out = []
    for span in ordered:
        clock = clocks[span.trace_id]
        entry: dict[str, Any] = {
            "name": span.name,
            "trace": ids[span.trace_id],
            "id": ids[span.span_id],
            "parent": ids.get(span.parent_span_id or "", span.parent_span_id and "<remote>"),
            "kind": span.kind,
            "status": span.status_code,
            "start": clock[span.start_time_ns],
            "end": clock[span.end_time_ns],
            "scope": span.scope_name,
            "attributes": _attributes(span.attributes, ids, ignore_attributes),
        }
        if span.status_description:
            entry["status_description"] = span.status_description
        if span.events:
            entry["events"] = [
                {"name": name, "attributes": _attributes(a, ids, ignore_attributes)}
                for name, a in span.events
            ]
        if span.links:
            entry["links"] = [
                {
                    "trace": ids.get(t, t),
                    "span": ids.get(s, s),
                    "attributes": _attributes(a, ids, ignore_attributes),
                }
                for t, s, a in span.links
            ]
        if include_resource:
            entry["resource"] = _attributes(span.resource, ids, ignore_attributes)
        out.append(entry)
    return {"spans": out}
