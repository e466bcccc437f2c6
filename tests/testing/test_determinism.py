"""Deterministic ids and a fake clock for spans of this process: the context managers, the
``deterministic_ids`` / ``fixed_clock`` fixtures, and what they restore."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime

import flask
import opentelemetry.sdk.trace as sdk_trace
import pytest
from opentelemetry import trace

from difytrace.instrumentation import flask as flask_instrumentation
from difytrace.instrumentation.flask import FlaskInstrumentor
from difytrace.testing import (
    FakeClock,
    SequentialIdGenerator,
    SpanCapture,
    normalize_trace,
    use_clock,
    use_sequential_ids,
)

# Obtained at import, before any switch: instrumentors cache their tracers like this.
cached_tracer = trace.get_tracer("tests.determinism")
START_NS = 1_735_689_600_000_000_000  # 2025-01-01T00:00:00Z


def _two_traces() -> None:
    with cached_tracer.start_as_current_span("a"), cached_tracer.start_as_current_span("b"):
        pass
    with cached_tracer.start_as_current_span("c"):
        pass


def test_sequential_ids_reach_tracers_cached_before(span_capture: SpanCapture) -> None:
    with use_sequential_ids():
        _two_traces()
    got = [(s.name, s.trace_id, s.span_id, s.parent_span_id) for s in span_capture.spans()]
    assert got == [
        ("b", "0" * 31 + "1", "0" * 15 + "2", "0" * 15 + "1"),
        ("a", "0" * 31 + "1", "0" * 15 + "1", None),
        ("c", "0" * 31 + "2", "0" * 15 + "3", None),
    ]


def test_ids_restart_per_block_and_are_random_again_after(span_capture: SpanCapture) -> None:
    with use_sequential_ids():
        _two_traces()
    with use_sequential_ids() as ids:
        assert isinstance(ids, SequentialIdGenerator)
        _two_traces()
    with cached_tracer.start_as_current_span("after"):
        pass
    spans = span_capture.spans()
    assert [s.trace_id for s in spans[:6]] == [s.trace_id for s in spans[:3]] * 2
    assert int(spans[-1].trace_id, 16) > 2**64  # random 128-bit again


def test_fake_clock_stamps_start_end_and_events(span_capture: SpanCapture) -> None:
    with (
        use_clock(FakeClock(step=0.001)) as clock,
        cached_tracer.start_as_current_span("outer") as outer,
    ):
        outer.add_event("tick")
        clock.advance(2)
        with cached_tracer.start_as_current_span("inner"):
            pass
    inner, outer_span = span_capture.spans()
    assert outer_span.start_time_ns == START_NS
    assert outer.events[0].timestamp == START_NS + 1_000_000  # type: ignore[attr-defined]
    assert (inner.start_time_ns, inner.end_time_ns) == (
        START_NS + 2_002_000_000,
        START_NS + 2_003_000_000,
    )
    assert outer_span.end_time_ns == START_NS + 2_004_000_000
    assert outer_span.duration_s == 2.004


def test_clock_is_restored(span_capture: SpanCapture) -> None:
    with use_clock():
        assert sdk_trace.time_ns is not time.time_ns
        assert flask_instrumentation.time_ns is not time.time_ns
    assert sdk_trace.time_ns is time.time_ns
    assert flask_instrumentation.time_ns is time.time_ns
    before = time.time_ns()
    with cached_tracer.start_as_current_span("real"):
        pass
    assert span_capture.spans()[0].start_time_ns >= before


def test_bad_clock_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="needs a timezone"):
        FakeClock(datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="step must be >= 0"):
        FakeClock(step=-1)
    with pytest.raises(ValueError, match="only moves forward"):
        FakeClock().advance(-1)


@pytest.fixture
def app() -> Iterator[flask.Flask]:
    instrumentor = FlaskInstrumentor()
    instrumentor.instrument()
    app = flask.Flask("test_determinism")

    @app.post("/chat")
    def chat() -> str:
        with cached_tracer.start_as_current_span("llm call"):
            pass
        return "ok"

    yield app
    instrumentor.uninstrument()


def test_flask_request_under_both_fixtures(
    app: flask.Flask,
    span_capture: SpanCapture,
    deterministic_ids: SequentialIdGenerator,
    fixed_clock: FakeClock,
) -> None:
    """difytrace stamps its Flask server span itself: the fake clock reaches it too."""
    app.test_client().post("/chat")
    llm, server = span_capture.spans()
    assert (server.name, server.trace_id, server.span_id) == (
        "POST /chat",
        "0" * 31 + "1",
        "0" * 15 + "1",
    )
    assert llm.parent_span_id == server.span_id
    assert server.start_time_ns == START_NS
    assert server.start_time_ns < llm.start_time_ns < llm.end_time_ns < server.end_time_ns
    assert server.end_time_ns - START_NS < 1_000_000_000  # a few 1 ms readings, not real time
    duration = span_capture.histogram("http.server.request.duration", {"http.route": "/chat"})
    assert duration.sum == server.duration_s


_USER_TESTS = """
from opentelemetry import trace

tracer = trace.get_tracer("user")


def test_fixtures(span_capture, deterministic_ids, fixed_clock):
    with tracer.start_as_current_span("job"):
        fixed_clock.advance(30)
    (span,) = span_capture.spans()
    assert span.trace_id == "0" * 31 + "1"
    assert span.start_time_ns == 1_735_689_600_000_000_000
    assert span.duration_s == 30.001


def test_next_test_is_back_to_normal(span_capture):
    with tracer.start_as_current_span("job"):
        pass
    (span,) = span_capture.spans()
    assert int(span.trace_id, 16) > 2**64
    assert span.start_time_ns > 1_750_000_000 * 10**9
"""


def test_fixtures_in_a_user_test_file(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=_USER_TESTS)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:randomly")
    result.assert_outcomes(passed=2)


def test_snapshot_of_a_deterministic_trace_keeps_ids_and_durations(
    span_capture: SpanCapture, deterministic_ids: SequentialIdGenerator, fixed_clock: FakeClock
) -> None:
    _two_traces()
    spans = span_capture.spans()
    assert [s.duration_s for s in spans] == [0.001, 0.003, 0.001]
    assert normalize_trace(spans)["spans"][0]["trace"] == "t1"
