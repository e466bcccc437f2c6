"""Tokens and cost of every LLM call, summed onto the enclosing request or task span.

:class:`RollupSpanProcessor` remembers, for each live span, the *local root* it belongs to (the
first span of the trace in this process: the Flask server span, the Celery task span). When
an LLM call ends, :func:`add` updates running totals on that root while it is still open, so
the request span shows ``difytrace.gen_ai.rollup.calls``, ``.input_tokens``, ``.output_tokens``
and ``.cost`` without any query-time join. The totals have names of their own, so summing a
per-call attribute (``difytrace.gen_ai.usage.cost``, ``gen_ai.usage.*``) over a trace counts
every call once.
"""

from __future__ import annotations

import threading
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from difytrace import semconv_genai as g

_MAX_TRACKED = 100_000  # spans never ended (leaked by the host) must not grow memory forever


class _Totals:
    __slots__ = ("calls", "cost", "input", "output")

    def __init__(self) -> None:
        self.calls = 0
        self.input = 0
        self.output = 0
        self.cost = 0.0


class RollupSpanProcessor(SpanProcessor):
    """Tracks local roots of live spans; :meth:`add` rolls LLM usage up onto them."""

    def __init__(self) -> None:
        self._roots: dict[int, Span] = {}
        self._totals: dict[int, _Totals] = {}
        self._lock = threading.Lock()

    # on_start and on_end run for every span of the process: a dict set and a pop, no more.
    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        roots = self._roots
        parent = span.parent
        root = span if parent is None or parent.is_remote else roots.get(parent.span_id, span)
        if len(roots) >= _MAX_TRACKED:
            roots.clear()
        roots[span.context.span_id] = root

    def on_end(self, span: ReadableSpan) -> None:
        span_id = span.context.span_id
        self._roots.pop(span_id, None)
        if self._totals:  # only while some local root has LLM calls
            self._totals.pop(span_id, None)

    def add(
        self, parent_span_id: int, input_tokens: int, output_tokens: int, cost: float | None
    ) -> None:
        """Add one call's usage to the local root of ``parent_span_id`` (if still open)."""
        root = self._roots.get(parent_span_id)
        if root is None or not root.is_recording():
            return
        root_id = root.context.span_id
        with self._lock:
            totals = self._totals.get(root_id)
            if totals is None:
                totals = self._totals[root_id] = _Totals()
            totals.calls += 1
            totals.input += input_tokens
            totals.output += output_tokens
            if cost is not None:
                totals.cost += cost
            attrs: dict[str, Any] = {
                g.ROLLUP_CALLS: totals.calls,
                g.ROLLUP_INPUT_TOKENS: totals.input,
                g.ROLLUP_OUTPUT_TOKENS: totals.output,
            }
            if totals.cost:
                attrs[g.ROLLUP_COST] = totals.cost
        root.set_attributes(attrs)

    def shutdown(self) -> None:
        self._roots.clear()
        self._totals.clear()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


_INSTALLED: dict[int, RollupSpanProcessor] = {}
_INSTALL_LOCK = threading.Lock()


def install(provider: Any = None) -> RollupSpanProcessor | None:
    """Add the rollup processor to ``provider`` (default: the global one) once; None when the
    provider is not the SDK's."""
    provider = provider if provider is not None else trace.get_tracer_provider()
    if not hasattr(provider, "add_span_processor"):
        return None
    with _INSTALL_LOCK:
        found = _INSTALLED.get(id(provider))
        if found is None:
            found = _INSTALLED[id(provider)] = RollupSpanProcessor()
            provider.add_span_processor(found)
        return found
