"""Span-tree assertions: ``assert_tree(spans, S("POST /chat", children=[S("llm")]))``.

An expected node :class:`S` matches a span when the name matches (a string, or a compiled
regular expression matched in full), every item of ``attrs`` matches (a value, a compiled
regular expression, ``unittest.mock.ANY``, or a one-argument predicate), and its ``children``
match the span's children. Children are order-insensitive unless ``ordered=True``; extra
children are allowed unless ``exact=True``; ``S.any_number(S(...), min=, max=)`` matches a
run of children. The expected root may match any span of that name, at any depth.
"""

from __future__ import annotations

import time

from difytrace.testing._match import Matcher, explain_node, name_ok
from difytrace.testing._model import CapturedSpan, HasSpans, SpanSource, as_spans
from difytrace.testing._render import beside, message_width, render_expected, render_spans
from difytrace.testing._spec import Repeat, S

__all__ = ["Repeat", "S", "assert_tree", "explain_node", "find_tree", "wait_for_tree"]

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
    """The first span (by start time) at which ``expected`` matches, else None.

    >>> from opentelemetry import trace
    >>> from difytrace.testing import install_global_capture
    >>> capture = install_global_capture(); capture.clear()
    >>> with trace.get_tracer("doc").start_as_current_span("POST /chat"):
    ...     pass
    >>> find_tree(capture, S("POST /chat")).name, find_tree(capture, S("GET /"))
    ('POST /chat', None)
    """
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
    ``span_capture`` fixture, an :class:`OTLPReceiver`). On failure the AssertionError
    draws the expected tree beside every actual trace (one after the other when the
    terminal is too narrow for both) and says why the closest candidate did not match.
    Example:

    >>> from opentelemetry import trace
    >>> from difytrace.testing import install_global_capture
    >>> capture = install_global_capture(); capture.clear()
    >>> tracer = trace.get_tracer("doc")
    >>> with tracer.start_as_current_span("POST /chat", attributes={"http.route": "/chat"}):
    ...     with tracer.start_as_current_span("chat gpt-4o"):
    ...         pass
    >>> assert_tree(capture, S("POST /chat", children=[S("chat gpt-4o")])).name
    'POST /chat'
    """
    __tracebackhide__ = True
    spans = as_spans(spans)
    found = find_tree(spans, expected, ordered=ordered, exact=exact)
    if found is not None:
        return found
    raise AssertionError(failure_message(spans, expected, ordered=ordered, exact=exact))


def wait_for_tree(
    source: HasSpans,
    expected: S,
    *,
    timeout: float = 10,
    ordered: bool = False,
    exact: bool = False,
    interval: float = 0.05,
) -> CapturedSpan:
    """:func:`assert_tree`, polling ``source.spans()`` until the tree is complete.

    For spans that arrive from other processes (an ``OTLPReceiver``) or threads. Fails after
    ``timeout`` seconds with the message of :func:`assert_tree` on what had arrived.
    Example::

        client.post("/chat")                       # the API enqueues a Celery task
        wait_for_tree(otlp_receiver, S("POST /chat", children=[
            S("send chat_task", children=[S("process chat_task")])]), timeout=30)
    """
    __tracebackhide__ = True
    if not callable(getattr(source, "spans", None)):
        raise TypeError(
            f"wait_for_tree needs a source with .spans() (span_capture, an OTLPReceiver) "
            f"to poll, not a {type(source).__name__}; use assert_tree for a fixed list"
        )
    deadline = time.monotonic() + timeout
    while True:
        spans = as_spans(source)
        found = find_tree(spans, expected, ordered=ordered, exact=exact)
        if found is not None:
            return found
        left = deadline - time.monotonic()
        if left <= 0:
            break
        time.sleep(min(interval, left))
    raise AssertionError(
        f"after waiting {timeout}s: "
        + failure_message(spans, expected, ordered=ordered, exact=exact)
    )


def failure_message(
    spans: list[CapturedSpan], expected: S, *, ordered: bool = False, exact: bool = False
) -> str:
    """Why ``expected`` is not found in ``spans``, with the expected and actual trees drawn."""
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
    left = ["Expected:", *render_expected(expected).splitlines()]
    right = [f"Actual ({len(spans)} span(s)):", *actual.splitlines()]
    both = beside(left, right, message_width())
    drawing = "\n".join(both) if both else "\n".join(left) + "\n\n" + "\n".join(right)
    return f"span tree not found: {why}\n\n{drawing}"
