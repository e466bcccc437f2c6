"""Span-tree assertions: ``assert_tree(spans, S("POST /chat", children=[S("llm")]))``.

An expected node :class:`S` matches a span when the name matches (a string, or a compiled
regular expression matched in full), every item of ``attrs`` matches (a value, a compiled
regular expression, ``unittest.mock.ANY``, or a one-argument predicate), and its ``children``
match the span's children. Children are order-insensitive unless ``ordered=True``; extra
children are allowed unless ``exact=True``; ``S.any_number(S(...), min=, max=)`` matches a
run of children. The expected root may match any span of that name, at any depth.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from difytrace.testing._model import CapturedSpan, SpanSource, as_spans
from difytrace.testing._render import children_index, render_expected, render_spans


@dataclass(frozen=True, eq=False)
class S:
    """An expected span: name, attribute subset, and expected children."""

    name: str | re.Pattern[str]
    attrs: Mapping[str, Any] = field(default_factory=dict)
    children: Sequence[S | Repeat] = ()
    kind: str | None = None
    status: str | None = None
    #: Match children in start-time order (``None``: the ``assert_tree`` default).
    ordered: bool | None = None
    #: Fail on children that no expected child accounts for (``None``: the default).
    exact: bool | None = None

    @staticmethod
    def any_number(spec: S, *, min: int = 0, max: int | None = None) -> Repeat:
        """Any number of children (``min`` … ``max``) matching ``spec``."""
        return Repeat(spec, min, max)


@dataclass(frozen=True, eq=False)
class Repeat:
    """``S.any_number(...)``: a run of children matching one expected node."""

    spec: S
    min: int = 0
    max: int | None = None


class _Matcher:
    def __init__(self, spans: Sequence[CapturedSpan], ordered: bool, exact: bool) -> None:
        self.index = children_index(spans)
        self.ordered = ordered
        self.exact = exact
        self._memo: dict[tuple[str, str, int], bool] = {}

    def node(self, span: CapturedSpan, spec: S) -> bool:
        key = (span.trace_id, span.span_id, id(spec))
        if key not in self._memo:
            self._memo[key] = explain_node(span, spec) is None and self.children(span, spec)
        return self._memo[key]

    def children(self, span: CapturedSpan, spec: S) -> bool:
        kids = self.index.get(span.span_id, [])
        ordered = self.ordered if spec.ordered is None else spec.ordered
        exact = self.exact if spec.exact is None else spec.exact
        entries = list(spec.children)
        if not entries:
            return not (exact and kids)
        if ordered:
            return self._ordered(kids, entries, exact)
        return self._unordered(kids, entries, exact)

    def _fits(self, span: CapturedSpan, entry: S | Repeat) -> bool:
        return self.node(span, entry.spec if isinstance(entry, Repeat) else entry)

    def _ordered(self, kids: list[CapturedSpan], entries: list[S | Repeat], exact: bool) -> bool:
        @cache
        def walk(i: int, j: int, run: int) -> bool:
            if j == len(entries):
                return not exact or i == len(kids)
            entry = entries[j]
            here = i < len(kids)
            if isinstance(entry, Repeat):
                if run >= entry.min and walk(i, j + 1, 0):
                    return True
                if here and (entry.max is None or run < entry.max) and self._fits(kids[i], entry):
                    return walk(i + 1, j, run + 1)
            elif here and self._fits(kids[i], entry) and walk(i + 1, j + 1, 0):
                return True
            return here and not exact and walk(i + 1, j, run)

        return walk(0, 0, 0)

    def _unordered(
        self,
        kids: list[CapturedSpan],
        entries: list[S | Repeat],
        exact: bool,
    ) -> bool:
        fits = [[self._fits(kid, e) for e in entries] for kid in kids]
        single = [not isinstance(e, Repeat) for e in entries]
        used = [0] * len(entries)

        def assign(i: int) -> bool:
            if i == len(kids):
                return all(_count_ok(e, used[j]) for j, e in enumerate(entries))
            missing = sum(1 for j, s in enumerate(single) if s and not used[j])
            if missing > len(kids) - i:
                return False
            for j, e in enumerate(entries):
                room = used[j] == 0 if single[j] else (e.max is None or used[j] < e.max)  # type: ignore[union-attr]
                if fits[i][j] and room:
                    used[j] += 1
                    if assign(i + 1):
                        return True
                    used[j] -= 1
            return not exact and assign(i + 1)

        return assign(0)


def _count_ok(entry: S | Repeat, used: int) -> bool:
    if isinstance(entry, Repeat):
        return used >= entry.min and (entry.max is None or used <= entry.max)
    return used == 1


def _value_ok(expected: Any, actual: Any) -> bool:
    if isinstance(expected, re.Pattern):
        return isinstance(actual, str) and expected.fullmatch(actual) is not None
    if isinstance(expected, list | tuple):
        return isinstance(actual, list | tuple) and tuple(expected) == tuple(actual)
    if callable(expected) and not isinstance(expected, type):
        return bool(expected(actual))
    return bool(expected == actual)


def _name_ok(expected: str | re.Pattern[str], actual: str) -> bool:
    if isinstance(expected, re.Pattern):
        return expected.fullmatch(actual) is not None
    return expected == actual


def explain_node(span: CapturedSpan, spec: S) -> str | None:
    """Why ``span`` itself (not its children) does not match ``spec``; None when it does."""
    if not _name_ok(spec.name, span.name):
        return f"name {span.name!r} is not {spec.name!r}"
    if spec.kind is not None and span.kind != spec.kind.upper():
        return f"{span.name!r}: kind {span.kind} is not {spec.kind.upper()}"
    if spec.status is not None and span.status_code != spec.status.upper():
        return f"{span.name!r}: status {span.status_code} is not {spec.status.upper()}"
    for key, expected in spec.attrs.items():
        if key not in span.attributes:
            return f"{span.name!r}: attribute {key!r} is missing"
        if not _value_ok(expected, span.attributes[key]):
            return (
                f"{span.name!r}: attribute {key!r} is {span.attributes[key]!r}, "
                f"expected {expected!r}"
            )
    return None


def _closest(candidates: list[CapturedSpan], spec: S) -> CapturedSpan:
    # Prefer a span that matches itself (then its children are to blame), then the earliest.
    return min(candidates, key=lambda c: (explain_node(c, spec) is not None, c.start_time_ns))


def _explain(matcher: _Matcher, span: CapturedSpan, spec: S) -> tuple[CapturedSpan, str]:
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
        named = [k for k in kids if _name_ok(child_spec.name, k.name)]
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
    matcher = _Matcher(spans, ordered, exact)
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
    matcher = _Matcher(spans, ordered, exact)
    candidates = [s for s in spans if _name_ok(expected.name, s.name)]
    marks: dict[str, str] = {}
    if candidates:
        blamed, why = _explain(matcher, _closest(candidates, expected), expected)
        marks[blamed.span_id] = "✗ here"
    else:
        why = f"no span is named {expected.name!r}"
    keys = _keys(expected, set())
    actual = render_spans(spans, keys, marks=marks) if spans else "  (no spans)"
    raise AssertionError(
        f"span tree not found: {why}\n\nExpected:\n{render_expected(expected)}\n\n"
        f"Actual ({len(spans)} span(s)):\n{actual}"
    )
