"""The OpenTelemetry context keys difytrace's hot paths read directly.

An OpenTelemetry ``Context`` is a dict. Reading the current context once and taking the span,
the baggage and the suppression flag from it costs one lookup each, where the API's helpers
(``get_current_span``, ``baggage.get_all``, ``is_instrumentation_enabled``) each fetch the
current context again. The span and baggage keys are learnt through the public API at import
(the API keeps them private and their text differs between versions).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry import baggage, trace
from opentelemetry import context as otel_context


def _key_set_by(setter: Callable[[otel_context.Context], otel_context.Context]) -> str:
    """The context key the API writes in ``setter(empty context)``."""
    (key,) = setter(otel_context.Context()).keys()
    return str(key)


#: Where the API keeps the current span.
SPAN_KEY = _key_set_by(lambda ctx: trace.set_span_in_context(trace.INVALID_SPAN, ctx))
#: Where the API keeps baggage: a mapping of entries, absent when there is none.
BAGGAGE_KEY = _key_set_by(lambda ctx: baggage.set_baggage("k", "v", context=ctx))
# What ``opentelemetry.instrumentation.utils.is_instrumentation_enabled`` reads: the API's key
# and the plain string that older instrumentations set.
_SUPPRESS_KEY: str = otel_context._SUPPRESS_INSTRUMENTATION_KEY
_SUPPRESS_PLAIN = "suppress_instrumentation"


def span_in(ctx: Mapping[str, Any] | None) -> trace.Span | None:
    """The span ``ctx`` (the current context when None) holds, as ``trace.get_current_span``
    finds it, or None where that gives ``INVALID_SPAN`` for want of one."""
    span = (ctx if ctx is not None else otel_context.get_current()).get(SPAN_KEY)
    return span if isinstance(span, trace.Span) else None


def instrumentation_suppressed(ctx: Mapping[str, Any]) -> bool:
    """Whether ``ctx`` asks instrumentations to stand aside (``suppress_instrumentation()``),
    as ``is_instrumentation_enabled`` decides for the current context."""
    return bool(ctx.get(_SUPPRESS_KEY) or ctx.get(_SUPPRESS_PLAIN))
