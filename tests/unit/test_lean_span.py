"""LeanTracer exports what the SDK tracer exports, by the same rules, for the same calls.

Each test runs one scenario twice, once through the SDK's own ``Tracer.start_span`` and once
through :class:`LeanTracer` over the same provider, and compares everything an exporter sees.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from opentelemetry import context, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)

from difytrace.lean_span import LeanSpan, LeanTracer

Scenario = Callable[[Any], None]


class _SetsOnStart(SpanProcessor):
    """A processor that writes in on_start, as BaggageSpanProcessor does."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, SpanContext | None]] = []

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        self.seen.append((span.name, span.parent))
        span.set_attribute("on_start", span.name)


def _provider(**kwargs: Any) -> tuple[TracerProvider, InMemorySpanExporter, _SetsOnStart]:
    provider = TracerProvider(resource=Resource.create({"service.name": "lean"}), **kwargs)
    exporter = InMemorySpanExporter()
    on_start = _SetsOnStart()
    provider.add_span_processor(on_start)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter, on_start


def _exported(span: ReadableSpan, names: dict[int, str]) -> dict[str, Any]:
    """Everything of a finished span an exporter reads; ids as names, times left out."""
    return {
        "name": span.name,
        "kind": span.kind,
        "parent": names.get(span.parent.span_id, "remote") if span.parent else None,
        "sampled": span.context.trace_flags.sampled,
        "flags": int(span.context.trace_flags),
        "trace_state": span.context.trace_state,
        "attributes": dict(span.attributes or {}),
        "attribute_order": list(span.attributes or {}),
        "dropped_attributes": span.dropped_attributes,
        "events": [(e.name, dict(e.attributes or {})) for e in span.events],
        "dropped_events": span.dropped_events,
        "links": [
            (names.get(link.context.span_id, "remote"), dict(link.attributes or {}))
            for link in span.links
        ],
        "dropped_links": span.dropped_links,
        "status": (span.status.status_code, span.status.description),
        "resource": dict(span.resource.attributes),
        "scope": (span.instrumentation_scope.name, span.instrumentation_scope.version),
        "timed": span.start_time is not None
        and span.end_time is not None
        and span.start_time <= span.end_time,
    }


def _both(scenario: Callable[[Any], None], **provider_kwargs: Any) -> tuple[list[Any], list[Any]]:
    """``scenario(tracer)`` through the SDK tracer, then through LeanTracer."""
    results = []
    for lean in (False, True):
        provider, exporter, _ = _provider(**provider_kwargs)
        tracer: Any = provider.get_tracer("scope", "1.2")
        scenario(LeanTracer(tracer) if lean else tracer)
        spans = exporter.get_finished_spans()
        names = {span.context.span_id: span.name for span in spans}
        results.append([_exported(span, names) for span in spans])
    return results[0], results[1]


def _root_with_child(tracer: Any) -> None:
    root = tracer.start_span(
        "GET /chat", kind=SpanKind.SERVER, attributes={"http.route": "/chat", "n": 3}
    )
    child = tracer.start_span(
        "chat gpt", trace.set_span_in_context(root), SpanKind.CLIENT, {"ok": True, "f": 0.5}
    )
    child.set_attribute("gen_ai.usage.input_tokens", 12)
    child.set_attributes({"tags": ["a", "b"], "counts": [1, 2], "bad": None, "": "no key"})
    child.set_attributes({"reasons": ("stop",), "none": [], "mixed": ["a", 1], "n": 1.5})
    child.set_attribute(404, "not a key")  # type: ignore[arg-type]
    child.set_attribute("ok", False)  # set again: the newest key, as in the SDK
    child.add_event("first token", {"at": 1})
    child.set_status(Status(StatusCode.ERROR, "boom"))
    child.set_status(StatusCode.UNSET)  # never overrides
    child.update_name("chat gpt-4o")
    child.add_link(root.get_span_context(), {"why": "link"})
    child.end()
    root.set_status("ERROR")  # type: ignore[arg-type]  # not a status: ignored
    root.set_status(StatusCode.OK)
    root.set_status(Status(StatusCode.ERROR, "later"))  # OK is final
    root.end()
    root.set_status(StatusCode.ERROR)  # ended: ignored


def test_the_same_spans_are_exported() -> None:
    sdk, lean = _both(_root_with_child)
    assert lean == sdk
    assert [span["name"] for span in lean] == ["chat gpt-4o", "GET /chat"]
    assert lean[0]["attributes"]["tags"] == ("a", "b")  # sequences made tuples, as the SDK does


def test_processors_see_the_span_at_start_and_may_write() -> None:
    provider, exporter, on_start = _provider()
    tracer = LeanTracer(provider.get_tracer("scope"))
    root = tracer.start_span("root")
    child = tracer.start_span("child", trace.set_span_in_context(root))
    assert isinstance(child, LeanSpan)
    child.end()
    root.end()
    assert on_start.seen == [("root", None), ("child", root.get_span_context())]
    assert {span.name: span.attributes["on_start"] for span in exporter.get_finished_spans()} == {
        "child": "child",
        "root": "root",
    }


def test_span_limits_apply_as_in_the_sdk() -> None:
    limits = SpanLimits(
        max_span_attributes=2,
        max_span_attribute_length=3,
        max_events=1,
        max_event_attributes=1,
        max_links=1,
        max_attribute_length=2,
    )

    def crowded(tracer: Any) -> None:
        span = tracer.start_span("s", attributes={"a": "long value", "b": 2, "c": 3})
        span.set_attribute("d", "abcdef")
        span.set_attribute("on_start", "again")  # set again at the limit: nothing evicted
        span.set_attributes({"e": "xyz", "reasons": ("stop",)})
        span.add_event("e1", {"x": "xyz", "y": 1})
        span.add_event("e2")
        other = SpanContext(1, 2, is_remote=True)
        span.add_link(other, {"l": "long"})
        span.add_link(other)
        span.end()

    sdk, lean = _both(crowded, span_limits=limits)
    assert lean == sdk
    assert lean[0]["attributes"] == {"e": "xyz", "reasons": ("sto",)}
    assert lean[0]["dropped_events"] == 1


class _FixedIds(RandomIdGenerator):
    """Trace ids in a fixed order, so that a ratio sampler decides the same in both runs."""

    def __init__(self) -> None:
        self._trace_ids = iter([1, 2**64 - 1, 2, 2**64 - 2] * 10)

    def generate_trace_id(self) -> int:
        return next(self._trace_ids)


def test_the_sampler_decides() -> None:
    def four_roots(tracer: Any) -> None:
        for name in ("kept", "dropped", "kept too", "dropped too"):
            root = tracer.start_span(name)
            tracer.start_span(f"{name} child", trace.set_span_in_context(root)).end()
            root.end()

    for sampler in (ALWAYS_OFF, ParentBased(TraceIdRatioBased(0.5))):
        sdk, lean = _both(four_roots, sampler=sampler, id_generator=_FixedIds())
        assert lean == sdk
    assert [span["name"] for span in lean] == ["kept child", "kept", "kept too child", "kept too"]
    provider, exporter, _ = _provider(sampler=ALWAYS_OFF)
    span = LeanTracer(provider.get_tracer("scope")).start_span("dropped")
    assert isinstance(span, NonRecordingSpan)
    assert not span.get_span_context().trace_flags.sampled
    span.end()
    assert exporter.get_finished_spans() == ()


class _RecordOnlyWithState(Sampler):
    """A sampler of the host's own: records without sampling, adds an attribute and state."""

    def should_sample(
        self, parent_context: Any, trace_id: int, name: str, *args: Any, **kw: Any
    ) -> SamplingResult:
        decision = Decision.RECORD_ONLY if name.endswith("child") else Decision.RECORD_AND_SAMPLE
        return SamplingResult(
            decision, {"sampler": name}, TraceState([("vendor", name.replace(" ", "-"))])
        )

    def get_description(self) -> str:
        return "record-only children"


@pytest.mark.parametrize(
    "sampler",
    [ALWAYS_ON, TraceIdRatioBased(0.5), ParentBased(ALWAYS_OFF), _RecordOnlyWithState()],
    ids=["always_on", "ratio", "parentbased_always_off", "custom"],
)
def test_every_sampler_decides_as_in_the_sdk(sampler: Sampler) -> None:
    unsampled = SpanContext(7, 8, is_remote=True, trace_flags=TraceFlags(0))
    sampled = SpanContext(2**64 - 1, 9, is_remote=True, trace_flags=TraceFlags(1))

    def mixed(tracer: Any) -> None:
        for name in ("kept", "dropped", "kept too", "dropped too"):
            root = tracer.start_span(name, attributes={"n": name})
            tracer.start_span(f"{name} child", trace.set_span_in_context(root)).end()
            root.end()
        for remote in (unsampled, sampled):
            parent = trace.set_span_in_context(NonRecordingSpan(remote))
            tracer.start_span(f"remote {remote.span_id}", parent, attributes={"r": 1}).end()

    sdk, lean = _both(mixed, sampler=sampler, id_generator=_FixedIds())
    assert lean == sdk
    assert lean  # every sampler here keeps something


def test_an_unsampled_remote_parent_is_followed() -> None:
    remote = SpanContext(5, 6, is_remote=True, trace_flags=TraceFlags(0))
    parent = trace.set_span_in_context(NonRecordingSpan(remote))

    def child_of_remote(tracer: Any) -> None:
        tracer.start_span("child", parent).end()

    sdk, lean = _both(child_of_remote)
    assert lean == sdk == []


def test_remote_parent_trace_id_and_state_are_kept() -> None:
    provider, exporter, _ = _provider()
    remote = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(1))
    span = LeanTracer(provider.get_tracer("scope")).start_span(
        "child", trace.set_span_in_context(NonRecordingSpan(remote)), SpanKind.CONSUMER
    )
    span.end()
    (exported,) = exporter.get_finished_spans()
    assert exported.context.trace_id == 0xABC
    assert exported.parent == remote


def test_exception_leaving_with_block_is_recorded_as_the_sdk_does() -> None:
    def failing(tracer: Any) -> None:
        with pytest.raises(ValueError, match="bad input"), tracer.start_span("s"):
            raise ValueError("bad input")

    sdk, lean = _both(failing)
    for spans in (sdk, lean):
        # The stack trace names the calling frames: compare all but it.
        for span in spans:
            for _, attributes in span["events"]:
                assert "ValueError: bad input" in attributes.pop("exception.stacktrace")
    assert lean == sdk
    assert lean[0]["status"] == (StatusCode.ERROR, "ValueError: bad input")


def test_record_exception_matches_the_sdk() -> None:
    def recorded(tracer: Any) -> None:
        span = tracer.start_span("s")
        try:
            raise KeyError("k")
        except KeyError as exc:
            span.record_exception(exc, {"extra": 1})
        span.end()

    sdk, lean = _both(recorded)
    for spans in (sdk, lean):
        for _, attributes in spans[0]["events"]:
            assert "KeyError: 'k'" in attributes.pop("exception.stacktrace")
    assert lean == sdk


def test_ended_span_ignores_writes_and_a_second_end(caplog: pytest.LogCaptureFixture) -> None:
    def after_end(tracer: Any) -> None:
        span = tracer.start_span("s", attributes={"a": 1})
        span.end()
        span.set_attribute("late", 1)
        span.add_event("late")
        span.update_name("late")
        span.end()
        assert not span.is_recording()

    sdk, lean = _both(after_end)
    assert lean == sdk
    assert len(lean) == 1
    assert "Calling end() on an ended span." in caplog.text


def test_set_attributes_on_an_ended_span_warns_once_as_the_sdk(
    caplog: pytest.LogCaptureFixture,
) -> None:
    warnings = []
    for lean in (False, True):
        provider, _, _ = _provider()
        tracer: Any = provider.get_tracer("scope")
        span = (LeanTracer(tracer) if lean else tracer).start_span("s")
        span.end()
        caplog.clear()
        span.set_attributes({"a": 1, "b": 2, "c": 3})
        warnings.append(caplog.text.count("Setting attribute on ended span."))
    assert warnings == [1, 1]


def test_a_span_ended_from_many_threads_is_exported_once() -> None:
    provider, exporter, _ = _provider()
    tracer = LeanTracer(provider.get_tracer("scope"))
    for _ in range(20):
        span = tracer.start_span("raced")
        barrier = threading.Barrier(4)

        def end(span: Any = span, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            span.end()

        threads = [threading.Thread(target=end) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(exporter.get_finished_spans()) == 20


def test_other_tracers_are_used_as_they_are() -> None:
    span = LeanTracer(trace.NoOpTracer()).start_span("x")
    assert not span.is_recording()

    class Custom(trace.NoOpTracer):
        def start_span(self, *args: Any, **kwargs: Any) -> trace.Span:
            self.called = (args, kwargs)
            return super().start_span(*args, **kwargs)

    custom = Custom()
    LeanTracer(custom).start_span("y", None, SpanKind.CLIENT, {"a": 1}, start_time=5)
    assert custom.called == (("y", None, SpanKind.CLIENT, {"a": 1}), {"start_time": 5})


def test_a_proxy_tracer_is_resolved_once_a_provider_exists(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)  # no global provider yet
    proxy = trace.ProxyTracer("scope", "1")
    lean = LeanTracer(proxy)
    assert not lean.start_span("before").is_recording()
    provider, exporter, _ = _provider()
    proxy._real_tracer = provider.get_tracer("scope", "1")  # what the global provider gives
    span = lean.start_span("after", start_time=1_000)
    assert isinstance(span, LeanSpan)
    span.end(end_time=2_000)
    (exported,) = exporter.get_finished_spans()
    assert (exported.name, exported.start_time, exported.end_time) == ("after", 1_000, 2_000)


def test_the_current_context_is_the_default_parent() -> None:
    provider, exporter, _ = _provider()
    tracer = LeanTracer(provider.get_tracer("scope"))
    root = tracer.start_span("root")
    token = context.attach(trace.set_span_in_context(root))
    try:
        tracer.start_span("child").end()
    finally:
        context.detach(token)
    root.end()
    child, _ = exporter.get_finished_spans()
    assert child.parent == root.get_span_context()


def test_attributes_are_copied_unless_the_caller_hands_them_over() -> None:
    provider, exporter, _ = _provider()
    tracer = LeanTracer(provider.get_tracer("scope"))
    lent = {"k": "lent"}
    given = {"k": "given"}
    tracer.start_span("lent", attributes=lent).end()
    tracer.start_span("given", attributes=given, owned=True).end()
    lent["later"] = given["later"] = "x"  # what a caller must not do once it hands a dict over
    by_name = {span.name: dict(span.attributes or {}) for span in exporter.get_finished_spans()}
    assert by_name["lent"] == {"k": "lent", "on_start": "lent"}
    assert "on_start" not in lent
    # owned: no copy at start (the processor wrote into the caller's dict); the span's end
    # still freezes what is exported
    assert "on_start" in given
    assert by_name["given"] == {"k": "given", "on_start": "given"}


def test_events_and_links_added_to_a_live_span_are_exported() -> None:
    def scenario(tracer: Any) -> None:
        span = tracer.start_span("with both")
        span.add_event("first", {"n": 1})
        span.add_link(SpanContext(1, 2, False), {"why": "a"})
        span.add_event("second")
        span.add_link(SpanContext(3, 4, False))
        span.end()
        tracer.start_span("with none").end()

    lean, sdk = _both(scenario)
    assert lean == sdk


def test_sdk_self_metrics_leave_spans_to_the_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    provider, _, _ = _provider()
    tracer = provider.get_tracer("scope")
    if not hasattr(tracer, "_tracer_metrics"):
        pytest.skip("this SDK has no self-metrics")
    monkeypatch.setenv("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "true")
    counted = TracerProvider().get_tracer("scope")
    span = LeanTracer(counted).start_span("s")
    assert not isinstance(span, LeanSpan)
    assert span.is_recording()


class _AddsOddValues(Sampler):
    """A host's sampler that adds attributes the SDK must clean (a list, a Decimal)."""

    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        return SamplingResult(
            Decision.RECORD_AND_SAMPLE, {"stop": ["END"], "t": Decimal("0.7"), "none": None}
        )

    def get_description(self) -> str:
        return "odd values"


def test_sampler_attributes_of_any_type_are_cleaned_as_in_the_sdk() -> None:
    def one(tracer: Any) -> None:
        tracer.start_span("s", attributes={"ok": "yes"}).end()

    sdk, lean = _both(one, sampler=_AddsOddValues())
    assert lean == sdk
    assert lean[0]["attributes"]["stop"] == ("END",)


def test_late_on_ending_hook_is_called_where_the_sdk_calls_it() -> None:
    provider, _, _ = _provider()
    calls: list[tuple[str, bool]] = []

    class Ending(SpanProcessor):
        def _on_ending(self, span: Any) -> None:
            calls.append((span.name, span.is_recording()))

    provider.add_span_processor(Ending())
    if not hasattr(provider._active_span_processor, "_on_ending"):
        pytest.skip("this SDK has no _on_ending")
    provider.get_tracer("scope").start_span("sdk").end()
    LeanTracer(provider.get_tracer("scope")).start_span("lean").end()
    assert calls == [("sdk", False), ("lean", False)]


def test_a_finished_span_deep_copies_as_the_sdks_does() -> None:
    provider, exporter, _ = _provider()
    span = LeanTracer(provider.get_tracer("scope")).start_span("s", attributes={"a": 1})
    span.add_event("e", {"x": 1})
    span.end()
    (exported,) = exporter.get_finished_spans()
    try:
        copied = copy.deepcopy(exported)
    except TypeError:  # SDK 1.27: its own ReadableSpan does not deep-copy either
        sdk_span = provider.get_tracer("scope").start_span("s")
        sdk_span.end()
        with pytest.raises(TypeError):
            copy.deepcopy(exporter.get_finished_spans()[-1])
        return
    assert type(copied) is ReadableSpan
    assert _exported(copied, {}) == _exported(exported, {})
