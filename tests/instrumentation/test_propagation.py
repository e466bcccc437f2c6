"""difytrace.propagation writes exactly what ``propagate.inject`` writes, and reads exactly what
``propagate.extract`` reads, for every global propagator: its own header values for the default
W3C ones, the propagator's call otherwise."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry import baggage, propagate, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context, set_value
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import (
    Getter,
    Setter,
    TextMapPropagator,
    default_getter,
    default_setter,
)
from opentelemetry.trace import INVALID_SPAN, NonRecordingSpan, SpanContext, TraceFlags, TraceState
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from difytrace.propagation import extract_from, inject_into


class Custom(TextMapPropagator):
    """A host's own propagator (B3-like): only its own call can know its headers."""

    def inject(
        self, carrier: Any, context: Context | None = None, setter: Setter[Any] = default_setter
    ) -> None:
        span_context = trace.get_current_span(context).get_span_context()
        setter.set(carrier, "x-custom-trace", f"{span_context.trace_id:x}")
        setter.set(carrier, "x-custom-baggage", ",".join(sorted(baggage.get_all(context))))

    def extract(
        self, carrier: Any, context: Context | None = None, getter: Getter[Any] = default_getter
    ) -> Context:
        return set_value("x-custom", getter.get(carrier, "x-custom-trace"), context)

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


def _hex(bits: int) -> st.SearchStrategy[str]:
    width = bits // 4
    return st.one_of(
        st.integers(0, 2**bits - 1).map(lambda n: f"{n:0{width}x}"),
        st.just("0" * width),
        st.integers(1, 2**bits - 1).map(lambda n: f"{n:0{width}X}"),  # upper case: invalid
    )


traceparents = st.one_of(
    st.builds(
        lambda lead, version, trace_id, span_id, flags, rest, trail: (
            f"{lead}{version}-{trace_id}-{span_id}-{flags}{rest}{trail}"
        ),
        st.sampled_from(["", " ", "\t "]),
        st.sampled_from(["00", "00", "00", "01", "ff", "cc"]),
        _hex(128),
        _hex(64),
        st.sampled_from(["00", "01", "03", "ff", "0g"]),
        st.sampled_from(["", "", "", "-", "-what-comes-next"]),
        st.sampled_from(["", "", " ", "\t", "\n", " x"]),
    ),
    st.text(max_size=60),
)
carriers = st.fixed_dictionaries(
    {},
    optional={
        "traceparent": traceparents,
        "tracestate": st.one_of(
            st.from_regex(r"[a-z][a-z0-9]{0,5}=[a-z0-9]{1,5}(,[a-z][a-z0-9]{0,5}=[a-z0-9]{1,5})*"),
            st.lists(st.from_regex(r"[a-z]{1,4}=[0-9]{1,3}", fullmatch=True), max_size=2),
            st.text(max_size=12),
        ),
        "baggage": st.one_of(
            st.from_regex(r"[a-z.]{1,6}=[a-z0-9%]{0,6}(;p=1)?(,[a-z.]{1,6}=[a-z0-9]{0,6})*"),
            st.text(max_size=12),
        ),
        "x-custom-trace": st.text(max_size=4),
    },
)


def _seen(ctx: Context) -> tuple[Any, ...]:
    """What a context holds after an extract: the remote parent, the baggage, the custom value."""
    span_context = trace.get_current_span(ctx).get_span_context()
    return (
        span_context.trace_id,
        span_context.span_id,
        span_context.is_remote,
        span_context.trace_flags,
        tuple(span_context.trace_state.items()),
        dict(baggage.get_all(ctx)),
        ctx.get("x-custom"),
        ctx.get("already-here"),
    )


@pytest.mark.usefixtures("global_propagator")
@pytest.mark.parametrize("name", PROPAGATORS)
@given(carrier=carriers)
def test_extract_reads_what_the_propagators_read(name: str, carrier: dict[str, Any]) -> None:
    propagate.set_global_textmap(PROPAGATORS[name]())
    before = set_value("already-here", 1, baggage.set_baggage("kept", "yes", Context()))
    ours = extract_from(carrier, before, default_getter)
    theirs = propagate.extract(carrier, before, getter=default_getter)
    assert _seen(ours) == _seen(theirs)


@pytest.mark.usefixtures("global_propagator")
def test_extract_reads_the_common_traceparent_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast path is taken (and so tested above) for the header every producer writes."""
    tracecontext = TraceContextTextMapPropagator()
    monkeypatch.setattr(tracecontext, "extract", None)  # any call of it fails
    propagate.set_global_textmap(CompositePropagator([tracecontext, W3CBaggagePropagator()]))
    header = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    ctx = extract_from({"traceparent": header}, Context(), default_getter)
    span_context = trace.get_current_span(ctx).get_span_context()
    assert (span_context.trace_id, span_context.span_id, span_context.is_remote) == (
        0x0AF7651916CD43DD8448EB211C80319C,
        0xB7AD6B7169203331,
        True,
    )
