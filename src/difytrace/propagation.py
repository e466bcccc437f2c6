"""W3C trace context into and out of a message's headers, without the propagator's call chain
when the global propagator is the default one.

A Celery publish writes ``traceparent`` (and ``tracestate``, ``baggage``) into the message
headers. Through ``propagate.inject`` that is a new context holding the span, then a composite
propagator that calls TraceContext's and Baggage's ``inject``, each reading the context back:
a seventh of difytrace's CPU time per publish. When the global propagator is the SDK's default
(TraceContext, optionally with W3C Baggage), :func:`inject_into` writes the same header values
from the span context at hand; any other propagator (B3, Jaeger, a host's own) is called as
usual. :func:`extract_from` does the reverse for the common header (version 00, no
``tracestate``) and leaves every other case to the TraceContext propagator itself.
``tests/instrumentation/test_propagation.py`` holds both paths to the propagators' output.
"""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from typing import Any, NamedTuple

from opentelemetry import propagate, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context, get_current
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import CarrierT, Getter, TextMapPropagator
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from difytrace.context_keys import BAGGAGE_KEY


class _Default(NamedTuple):
    """What :func:`inject_into` and :func:`extract_from` know of one global propagator."""

    textmap: TextMapPropagator | None
    #: Set when the propagator is TraceContext, optionally followed by W3C Baggage, and
    #: nothing else: the headers are then written and read here.
    tracecontext: TraceContextTextMapPropagator | None
    baggage: W3CBaggagePropagator | None


def _inspect(textmap: TextMapPropagator) -> _Default:
    parts = list(textmap._propagators) if type(textmap) is CompositePropagator else [textmap]
    if not parts or type(parts[0]) is not TraceContextTextMapPropagator:
        return _Default(textmap, None, None)
    if len(parts) == 1:
        return _Default(textmap, parts[0], None)
    if len(parts) == 2 and type(parts[1]) is W3CBaggagePropagator:
        return _Default(textmap, parts[0], parts[1])
    return _Default(textmap, None, None)


_known = [_Default(None, None, None)]  # of the last global propagator seen


def _global() -> _Default:
    textmap = propagate.get_global_textmap()
    known = _known[0]
    if known.textmap is not textmap:
        known = _known[0] = _inspect(textmap)
    return known


# The traceparent nearly every producer writes: version 00, nothing after the flags. Anything
# else (other versions, a trailing part, a line break) is left to the SDK's propagator.
_COMMON_TRACEPARENT = re.compile(r"[ \t]*00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})[ \t]*")
_ZERO_TRACE_ID = "0" * 32
_ZERO_SPAN_ID = "0" * 16


def inject_into(
    headers: MutableMapping[str, Any], span: Span, baggage_context: Context | None
) -> None:
    """Write ``span``'s trace context and ``baggage_context``'s baggage into ``headers``.

    The same values as ``propagate.inject(headers, context)`` with ``context`` holding
    ``span`` and that baggage.
    """
    known = _global()
    if known.tracecontext is None:
        propagate.inject(headers, context=trace.set_span_in_context(span, baggage_context))
        return
    span_context = span.get_span_context()
    if span_context.is_valid:
        headers["traceparent"] = (
            f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}"
            f"-{span_context.trace_flags:02x}"
        )
        if span_context.trace_state:
            headers["tracestate"] = span_context.trace_state.to_header()
    if known.baggage is not None:
        ctx = baggage_context if baggage_context is not None else get_current()
        if ctx.get(BAGGAGE_KEY):
            known.baggage.inject(headers, ctx)


def extract_from(carrier: CarrierT, context: Context, getter: Getter[CarrierT]) -> Context:
    """``propagate.extract(carrier, context, getter)``: ``context`` with the remote parent and
    the baggage that ``carrier`` holds.

    With the default propagators, a version-00 ``traceparent`` without ``tracestate`` is read
    here, and ``baggage`` only extracted when the carrier has one; every other header goes
    through the TraceContext propagator, so the result is the SDK's in every case.
    """
    known = _global()
    if known.tracecontext is None:
        return propagate.extract(carrier, context, getter=getter)
    ctx = _extract_traceparent(carrier, context, getter, known.tracecontext)
    if known.baggage is not None and getter.get(carrier, "baggage"):
        ctx = known.baggage.extract(carrier, ctx, getter=getter)
    return ctx


def _extract_traceparent(
    carrier: CarrierT,
    context: Context,
    getter: Getter[CarrierT],
    propagator: TraceContextTextMapPropagator,
) -> Context:
    header = getter.get(carrier, "traceparent")
    if not header:
        return context
    match = _COMMON_TRACEPARENT.fullmatch(header[0])
    if match is None or getter.get(carrier, "tracestate") is not None:
        return propagator.extract(carrier, context, getter=getter)
    trace_id, span_id, flags = match.groups()
    if trace_id == _ZERO_TRACE_ID or span_id == _ZERO_SPAN_ID:
        return context
    span_context = SpanContext(
        int(trace_id, 16), int(span_id, 16), True, TraceFlags(int(flags, 16))
    )
    return trace.set_span_in_context(NonRecordingSpan(span_context), context)
