"""Span-tree assertions: ``assert_tree(spans, S("POST /chat", children=[S("llm")]))``.

An expected node :class:`S` matches a span when the name matches (a string, or a compiled
regular expression matched in full), every item of ``attrs`` matches (a value, a compiled
regular expression, ``unittest.mock.ANY``, or a one-argument predicate), and its ``children``
match the span's children. Children are order-insensitive unless ``ordered=True``; extra
children are allowed unless ``exact=True``; ``S.any_number(S(...), min=, max=)`` matches a
run of children. The expected root may match any span of that name, at any depth.
"""

from __future__ import annotations

from difytrace.testing._match import Matcher, explain_node, name_ok
from difytrace.testing._model import CapturedSpan, SpanSource, as_spans
from difytrace.testing._render import render_expected, render_spans
from difytrace.testing._spec import Repeat, S

__all__ = ["Repeat", "S", "assert_tree", "explain_node", "find_tree"]

_MAX_LINES = 200  # of the actual trees drawn in a failure message


def _closest(candidates: list[CapturedSpan], spec: S) -> CapturedSpan:
    # Prefer a span that matches itself (then its children are to blame), then the earliest.
    return min(candidates, key=lambda c: (explain_node(c, spec) is not None, c.start_time_ns))


def _explain(matcher: Matcher, span: CapturedSpan, spec: S) -> tuple[CapturedSpan, str]:
    """The span to blame and why, for the closest candidate."""
    reason = explain_node(span, spec)
    if reason is not None:
        return span, reason
    kids = matcher.index.get(span.span_id, [])
    for entry in spec.children:
        child_spec = entry.spec if isinstance(entry, Repeat) else entry
        fitting = [k for k in kids if matcher.node(k, child_spec)]
        low = entry.min if isinstance(entry, Repeat) else 1
        if len(fitting) >= low:
            continue
        named = [k for k in kids if name_ok(child_spec.name, k.name)]
        if named and not fitting:
            return _explain(matcher, _closest(named, child_spec), child_spec)
        return span, (
            f"{span.name!r}: expected {low}+ child(ren) like {child_spec.name!r}, "
            f"found {len(fitting)} among {[k.name for k in kids]}"
        )
    return span, (
        f"{span.name!r}: every expected child has a candidate, but not together "
        "(order, counts, or extra children with exact=True)"
    )


def _keys(spec: S | Repeat, into: set[str]) -> set[str]:
    node = spec.spec if isinstance(spec, Repeat) else spec
    into.update(node.attrs)
    for child in node.children:
        _keys(child, into)
    return into


def find_tree(
    spans: SpanSource, expected: S, *, ordered: bool = False, exact: bool = False
) -> CapturedSpan | None:
    """The first span (by start time) at which ``expected`` matches, else None."""
    spans = as_spans(spans)
    matcher = Matcher(spans, ordered, exact)
    for span in sorted(spans, key=lambda s: s.start_time_ns):
        if matcher.node(span, expected):
            return span
    return None


def assert_tree(
    spans: SpanSource, expected: S, *, ordered: bool = False, exact: bool = False
) -> CapturedSpan:
    """Assert that some span roots a tree matching ``expected``; return that span.

    ``spans`` is a list of :class:`CapturedSpan` or anything with ``.spans()`` (the
    ``span_capture`` fixture, an :class:`OTLPReceiver`).

    On failure the AssertionError draws the expected tree and every actual trace, and says
    why the closest candidate did not match.
    """
    __tracebackhide__ = True
    spans = as_spans(spans)
    found = find_tree(spans, expected, ordered=ordered, exact=exact)
    if found is not None:
        return found
    matcher = Matcher(spans, ordered, exact)
    candidates = [s for s in spans if name_ok(expected.name, s.name)]
    marks: dict[str, str] = {}
    first: CapturedSpan | None = None
    if candidates:
        blamed, why = _explain(matcher, _closest(candidates, expected), expected)
        marks[blamed.span_id] = "✗ here"
        first = blamed
    else:
        why = f"no span is named {expected.name!r}"
    keys = _keys(expected, set())
    actual = (
        render_spans(spans, keys, marks=marks, max_lines=_MAX_LINES, first=first)
        if spans
        else "  (no spans)"
    )
    raise AssertionError(
        f"span tree not found: {why}\n\nExpected:\n{render_expected(expected)}\n\n"
        f"Actual ({len(spans)} span(s)):\n{actual}"
    )
