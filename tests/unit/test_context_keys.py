"""difytrace.context_keys reads what the API's helpers read, from a context in hand."""

from __future__ import annotations

import pytest
from opentelemetry import baggage, context, trace
from opentelemetry.instrumentation.utils import (
    is_instrumentation_enabled,
    suppress_instrumentation,
)
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from difytrace.context_keys import BAGGAGE_KEY, SPAN_KEY, instrumentation_suppressed


def test_the_span_key_is_where_the_api_keeps_the_current_span() -> None:
    span = NonRecordingSpan(SpanContext(1, 2, False, TraceFlags(1)))
    ctx = trace.set_span_in_context(span)
    assert ctx.get(SPAN_KEY) is span is trace.get_current_span(ctx)


def test_the_baggage_key_is_where_the_api_keeps_baggage() -> None:
    ctx = baggage.set_baggage("tenant.id", "t-1", context.Context())
    assert dict(ctx.get(BAGGAGE_KEY)) == dict(baggage.get_all(ctx)) == {"tenant.id": "t-1"}
    assert context.Context().get(BAGGAGE_KEY) is None


@pytest.mark.parametrize(
    "how",
    ["none", "suppress_instrumentation()", "the plain key", "the plain key, false"],
)
def test_suppression_is_decided_as_is_instrumentation_enabled_decides(how: str) -> None:
    token = None
    if how == "the plain key":
        token = context.attach(context.set_value("suppress_instrumentation", True))
    elif how == "the plain key, false":
        token = context.attach(context.set_value("suppress_instrumentation", False))
    try:
        if how == "suppress_instrumentation()":
            with suppress_instrumentation():
                assert instrumentation_suppressed(context.get_current())
                assert not is_instrumentation_enabled()
            return
        expected = not is_instrumentation_enabled()
        assert instrumentation_suppressed(context.get_current()) is expected
        assert expected is (how == "the plain key")
    finally:
        if token is not None:
            context.detach(token)
