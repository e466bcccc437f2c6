"""normalize_trace gives the same JSON-ready dict for the same shape of trace, whatever ids and
clocks; trace_snapshot / assert_snapshot keep it in a file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from difytrace.testing import SpanCapture, TraceSnapshot, assert_snapshot, normalize_trace
from difytrace.testing.snapshot import snapshot_text

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


def test_output_is_json_and_survives_a_round_trip(span_capture: SpanCapture) -> None:
    link = trace.Link(SpanContext(0xABC, 0xDEF, is_remote=True), {"kind": ("a", "b")})
    with (
        tracer.start_as_current_span("root", links=[link], attributes={"f": 0.5, "b": True}),
        tracer.start_as_current_span("kid", attributes={"xs": (1, 2)}) as kid,
    ):
        kid.record_exception(ValueError("boom"))
    data = normalize_trace(span_capture.spans(), include_resource=True)
    text = json.dumps(data, sort_keys=True)
    assert json.loads(text) == data
    assert snapshot_text(data) == snapshot_text(json.loads(snapshot_text(data)))


def test_snapshot_text_names_what_is_not_json() -> None:
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        snapshot_text({"when": object()})


_USER_SNAPSHOT = """
import os
from opentelemetry import trace

tracer = trace.get_tracer("app")


def test_chat(span_capture, trace_snapshot):
    with tracer.start_as_current_span("POST /chat", attributes={"http.route": "/chat"}):
        with tracer.start_as_current_span(os.environ.get("LLM_SPAN", "chat gpt-4o")):
            pass
    trace_snapshot(span_capture)
"""


def test_trace_snapshot_file_lifecycle(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_app=_USER_SNAPSHOT)
    snapshot = pytester.path / "snapshots" / "test_app" / "test_chat.json"
    args = ("-p", "no:cacheprovider", "-p", "no:randomly")
    monkeypatch.delenv("CI", raising=False)

    first = pytester.runpytest_inprocess(*args)
    first.assert_outcomes(passed=1)
    first.stdout.fnmatch_lines(["*difytrace: 1 snapshot file(s) written*", f"*{snapshot}"])
    written = json.loads(snapshot.read_text())
    assert [s["name"] for s in written["spans"]] == ["POST /chat", "chat gpt-4o"]

    second = pytester.runpytest_inprocess(*args)
    second.assert_outcomes(passed=1)
    assert "snapshot file(s) written" not in second.stdout.str()

    monkeypatch.setenv("LLM_SPAN", "chat gpt-5")
    changed = pytester.runpytest_inprocess(*args)
    changed.assert_outcomes(failed=1)
    changed.stdout.fnmatch_lines(
        [
            f"*snapshot {snapshot} differs (- snapshot, + this run); accept with pytest "
            "--difytrace-update-snapshots:",
            "*--- snapshot",
            "*+++ this run",
            '*-      "name": "chat gpt-4o",',
            '*+      "name": "chat gpt-5",',
        ]
    )
    assert json.loads(snapshot.read_text()) == written  # a failing run leaves the file alone

    updated = pytester.runpytest_inprocess(*args, "--difytrace-update-snapshots")
    updated.assert_outcomes(passed=1)
    assert json.loads(snapshot.read_text())["spans"][1]["name"] == "chat gpt-5"
    pytester.runpytest_inprocess(*args).assert_outcomes(passed=1)


def test_snapshot_files_compare_by_content(tmp_path: Path) -> None:
    path = tmp_path / "hand-edited.json"
    path.write_text('{"spans": [ {"name": "a"} ]}')
    assert assert_snapshot({"spans": [{"name": "a"}]}, path) is False
    path.write_text("{not json")
    with pytest.raises(AssertionError, match=r"is not JSON .*: fix or delete it"):
        assert_snapshot({}, path)


def test_two_snapshots_in_one_test_get_their_own_files(tmp_path: Path) -> None:
    snap = TraceSnapshot(tmp_path, "test_x[a/b]")
    snap([])
    snap([], name="custom")
    snap([])
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "custom.json",
        "test_x_a_b.3.json",
        "test_x_a_b.json",
    ]


def test_a_missing_snapshot_fails_under_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On CI a snapshot that was never committed must fail, not be written and pass."""
    pytester.makepyfile(test_app=_USER_SNAPSHOT)
    snapshot = pytester.path / "snapshots" / "test_app" / "test_chat.json"
    args = ("-p", "no:cacheprovider", "-p", "no:randomly")
    monkeypatch.setenv("CI", "true")
    missing = pytester.runpytest_inprocess(*args)
    missing.assert_outcomes(failed=1)
    missing.stdout.fnmatch_lines([f"*snapshot {snapshot} is missing and CI is set*"])
    assert not snapshot.exists()
    pytester.runpytest_inprocess(*args, "--difytrace-update-snapshots").assert_outcomes(passed=1)
    pytester.runpytest_inprocess(*args).assert_outcomes(passed=1)  # committed: compared


def test_a_recorded_exception_snapshots_the_same_on_any_machine(span_capture: SpanCapture) -> None:
    with tracer.start_as_current_span("root") as root:
        root.record_exception(ValueError("boom"))
    (span,) = normalize_trace(span_capture.spans())["spans"]
    (event,) = span["events"]
    assert event["attributes"]["exception.stacktrace"] == "<ignored>"
    assert event["attributes"]["exception.message"] == "boom"


_SAME_NAMES = """
from opentelemetry import trace

tracer = trace.get_tracer("app")


class TestChat:
    def test_x(self, span_capture, trace_snapshot):
        with tracer.start_as_current_span("chat"):
            pass
        trace_snapshot(span_capture)


class TestWorkflow:
    def test_x(self, span_capture, trace_snapshot):
        with tracer.start_as_current_span("workflow"):
            pass
        trace_snapshot(span_capture)
"""


def test_same_test_names_in_two_classes_have_their_own_snapshots(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)
    pytester.makepyfile(test_app=_SAME_NAMES)
    args = ("-p", "no:cacheprovider", "-p", "no:randomly")
    pytester.runpytest_inprocess(*args).assert_outcomes(passed=2)
    pytester.runpytest_inprocess(*args).assert_outcomes(passed=2)
    folder = pytester.path / "snapshots" / "test_app"
    assert sorted(p.name for p in folder.iterdir()) == [
        "TestChat.test_x.json",
        "TestWorkflow.test_x.json",
    ]
