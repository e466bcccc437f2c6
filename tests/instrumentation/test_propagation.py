"""difytrace.propagation writes exactly what ``propagate.inject`` writes, for every global
propagator: its own header values for the default W3C ones, the propagator's call otherwise."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry import baggage, propagate, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import Setter, TextMapPropagator, default_setter
from opentelemetry.trace import INVALID_SPAN, NonRecordingSpan, SpanContext, TraceFlags, TraceState
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from difytrace.propagation import inject_into


class Custom(TextMapPropagator):
    """A host's own propagator (B3-like): only its own call can know its headers."""

    def inject(
        self, carrier: Any, context: Context | None = None, setter: Setter[Any] = default_setter
    ) -> None:
        span_context = trace.get_current_span(context).get_span_context()
        setter.set(carrier, "x-custom-trace", f"{span_context.trace_id:x}")
        setter.set(carrier, "x-custom-baggage", ",".join(sorted(baggage.get_all(context))))

    def extract(self, *args: Any, **kwargs: Any) -> Context:
        raise NotImplementedError

    @property
    def fields(self) -> set[str]:
        return {"x-custom-trace", "x-custom-baggage"}


PROPAGATORS = {
    "default": lambda: CompositePropagator(
        [TraceContextTextMapPropagator(), W3CBaggagePropagator()]
    ),
    "tracecontext alone": TraceContextTextMapPropagator,
    "tracecontext in a composite": lambda: CompositePropagator([TraceContextTextMapPropagator()]),
    "baggage first": lambda: CompositePropagator(
        [W3CBaggagePropagator(), TraceContextTextMapPropagator()]
    ),
    "custom": Custom,
    "tracecontext then custom": lambda: CompositePropagator(
        [TraceContextTextMapPropagator(), W3CBaggagePropagator(), Custom()]
    ),
}


@pytest.fixture
def global_propagator() -> Iterator[None]:
    before = propagate.get_global_textmap()
    yield
    propagate.set_global_textmap(before)


def _both(span: trace.Span, ctx: Context) -> tuple[dict[str, Any], dict[str, Any]]:
    ours: dict[str, Any] = {}
    inject_into(ours, span, ctx)
    theirs: dict[str, Any] = {}
    propagate.inject(theirs, context=trace.set_span_in_context(span, ctx))
    return ours, theirs


spans = st.builds(
    lambda trace_id, span_id, flags, state: NonRecordingSpan(
        SpanContext(trace_id, span_id, False, TraceFlags(flags), TraceState(state))
    ),
    st.integers(1, 2**128 - 1),
    st.integers(1, 2**64 - 1),
    st.sampled_from([0, 1, 2, 3]),
    st.lists(
        st.tuples(
            st.from_regex(r"[a-z][a-z0-9_\-*/]{0,8}", fullmatch=True),
            st.from_regex(r"[a-z0-9]{1,6}", fullmatch=True),
        ),
        max_size=3,
        unique_by=lambda kv: kv[0],
    ),
)
entries = st.dictionaries(
    st.text("abcdefghijklmnopqrstuvwxyz.", min_size=1, max_size=8),
    st.text(max_size=8),
    max_size=3,
)


@pytest.mark.usefixtures("global_propagator")
@pytest.mark.parametrize("name", PROPAGATORS)
@given(span=spans, entries=entries)
def test_the_headers_are_the_propagators_own(
    name: str, span: trace.Span, entries: dict[str, str]
) -> None:
    propagate.set_global_textmap(PROPAGATORS[name]())
    ctx = Context()
    for key, value in entries.items():
        ctx = baggage.set_baggage(key, value, ctx)
    ours, theirs = _both(span, ctx)
    assert ours == theirs


@pytest.mark.usefixtures("global_propagator")
@pytest.mark.parametrize("name", PROPAGATORS)
def test_an_invalid_span_writes_no_trace_context(name: str) -> None:
    propagate.set_global_textmap(PROPAGATORS[name]())
    ctx = baggage.set_baggage("tenant.id", "t-1", Context())
    ours, theirs = _both(INVALID_SPAN, ctx)
    assert ours == theirs
    assert "traceparent" not in ours


@pytest.mark.usefixtures("global_propagator")
def test_a_propagator_set_later_is_followed() -> None:
    span = NonRecordingSpan(SpanContext(1, 2, False, TraceFlags(1)))
    propagate.set_global_textmap(PROPAGATORS["default"]())
    first: dict[str, Any] = {}
    inject_into(first, span, Context())
    propagate.set_global_textmap(Custom())
    second: dict[str, Any] = {}
    inject_into(second, span, Context())
    assert set(first) == {"traceparent"}
    assert set(second) == {"x-custom-trace", "x-custom-baggage"}
