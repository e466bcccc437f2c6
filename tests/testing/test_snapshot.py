"""normalize_trace gives the same dict for the same shape of trace, whatever ids and clocks."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from difytrace.testing import SpanCapture, normalize_trace

tracer = trace.get_tracer("tests.snapshot")


def _workflow(span_capture: SpanCapture) -> dict[str, object]:
    span_capture.clear()
    with tracer.start_as_current_span("workflow", attributes={"z": 1, "a": [1, 2]}) as root:
        trace_id = format(root.get_span_context().trace_id, "032x")
        with tracer.start_as_current_span(
            "node", attributes={"langfuse.trace.id": trace_id, "elapsed": 0.123}
        ) as node:
            node.add_event("chunk", {"i": 0})
    return normalize_trace(span_capture.spans(), ignore_attributes={"elapsed"})


def test_stable_across_runs(span_capture: SpanCapture) -> None:
    first = _workflow(span_capture)
    assert first == _workflow(span_capture)
    assert first == {
        "spans": [
            {
                "name": "workflow",
                "trace": "t1",
                "id": "s1",
                "parent": None,
                "kind": "INTERNAL",
                "status": "UNSET",
                "start": 0,
                "end": 3,
                "scope": "tests.snapshot",
                "attributes": {"a": [1, 2], "z": 1},
            },
            {
                "name": "node",
                "trace": "t1",
                "id": "s2",
                "parent": "s1",
                "kind": "INTERNAL",
                "status": "UNSET",
                "start": 1,
                "end": 2,
                "scope": "tests.snapshot",
                "attributes": {"elapsed": "<ignored>", "langfuse.trace.id": "t1"},
                "events": [{"name": "chunk", "attributes": {"i": 0}}],
            },
        ]
    }


def test_remote_parent_two_traces_and_resource(span_capture: SpanCapture) -> None:
    remote = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(1))
    with tracer.start_as_current_span("first"):
        pass
    context = trace.set_span_in_context(NonRecordingSpan(remote))
    with tracer.start_as_current_span("consumer", context=context):
        pass
    result = normalize_trace(span_capture.spans(), include_resource=True)["spans"]
    assert [(s["name"], s["trace"], s["id"], s["parent"]) for s in result] == [
        ("first", "t1", "s1", None),
        ("consumer", "t2", "s2", "<remote>"),
    ]
    assert result[1]["resource"]["service.name"] == "pytest"
    assert (result[1]["start"], result[1]["end"]) == (0, 1)
