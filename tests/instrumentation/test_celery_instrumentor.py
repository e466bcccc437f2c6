"""The Celery instrumentor in one process: signal wiring, message headers, eager runs, guard.

Publishing goes to kombu's in-memory transport (a real producer, no broker); tasks run eagerly
through ``Task.apply`` (the same trace code path as a worker, prerun/postrun included). The
real worker processes are in ``test_celery_workers.py``.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from celery import Celery, signals
from opentelemetry import baggage, context, trace

from difytrace import _guard, semconv
from difytrace import gevent as gevent_order
from difytrace.instrumentation.celery import CeleryInstrumentor
from difytrace.instrumentation.celery_hooks import CeleryHooks, _queue_wait
from difytrace.testing import SpanCapture, sum_value

SIGNALS = (
    "before_task_publish",
    "task_prerun",
    "task_failure",
    "task_retry",
    "task_postrun",
    "worker_process_shutdown",
    "worker_shutdown",
)


def receiver_counts() -> dict[str, int]:
    return {name: len(getattr(signals, name).receivers) for name in SIGNALS}


@pytest.fixture
def instrumented() -> Iterator[CeleryInstrumentor]:
    instrumentor = CeleryInstrumentor()
    already = instrumentor.is_instrumented_by_opentelemetry
    if already:  # another test module left it on: start from a clean state
        instrumentor.uninstrument()
    instrumentor.instrument()
    yield instrumentor
    instrumentor.uninstrument()
    if already:
        instrumentor.instrument()


@pytest.fixture(scope="module")
def app() -> Celery:
    app = Celery(f"unit-{uuid.uuid4().hex[:6]}", broker="memory://", set_as_current=False)
    app.conf.task_default_queue = "unit-q"

    @app.task(name="unit.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="unit.fail")
    def fail() -> None:
        raise KeyError("missing")

    @app.task(name="unit.outer")
    def outer() -> str:
        # An eager task inside a task: its failure is its own, the outer run goes on.
        app.tasks["unit.fail"].apply()
        return app.tasks["unit.add"].apply((1, 2)).get() and "done"

    @app.task(name="unit.baggage")
    def seen() -> dict[str, str]:
        return {k: str(v) for k, v in baggage.get_all().items()}

    return app


def test_instrument_and_uninstrument_are_symmetric_and_idempotent() -> None:
    instrumentor = CeleryInstrumentor()
    already = instrumentor.is_instrumented_by_opentelemetry
    if already:
        instrumentor.uninstrument()
    before = receiver_counts()
    instrumentor.instrument()
    instrumentor.instrument()  # a second call is a no-op
    after = receiver_counts()
    assert {name: after[name] - before[name] for name in SIGNALS} == dict.fromkeys(SIGNALS, 1)
    # The publish span ends in the Celery.send_task wrapper: a signal with no receiver is one
    # Celery's dispatch skips.
    assert not any("difytrace" in str(key) for key, _ in signals.after_task_publish.receivers)
    instrumentor.uninstrument()
    instrumentor.uninstrument()
    assert receiver_counts() == before
    if already:
        instrumentor.instrument()


def test_dependencies_are_declared() -> None:
    assert CeleryInstrumentor().instrumentation_dependencies() == ("celery >= 5.4",)


@pytest.mark.usefixtures("instrumented")
def test_publish_span_and_headers(app: Celery, span_capture: SpanCapture) -> None:
    sent: dict[str, Any] = {}

    def keep(headers: dict[str, Any], **_: Any) -> None:
        sent.update(headers)

    signals.after_task_publish.connect(keep, weak=False, dispatch_uid="unit-keep")
    try:
        ctx = baggage.set_baggage(semconv.USER_ID, "u-9")
        ctx = baggage.set_baggage("private.note", "x", ctx)
        token = context.attach(ctx)
        try:
            with trace.get_tracer("unit").start_as_current_span("request") as parent:
                # Stale context from an earlier message must be replaced, never resent.
                stale = {
                    "traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01",
                    "tracestate": "a=b",
                }
                result = app.tasks["unit.add"].apply_async((1, 2), headers=stale)
        finally:
            context.detach(token)
    finally:
        signals.after_task_publish.disconnect(dispatch_uid="unit-keep")

    [publish] = [s for s in span_capture.spans() if s.kind == "PRODUCER"]
    assert publish.name == "send unit.add"
    assert publish.parent_span_id == format(parent.get_span_context().span_id, "016x")
    assert publish.attributes == {
        semconv.MESSAGING_SYSTEM: "celery",
        semconv.MESSAGING_OPERATION_NAME: "send",
        semconv.MESSAGING_OPERATION_TYPE: "send",
        semconv.MESSAGING_DESTINATION_NAME: "unit-q",
        semconv.MESSAGING_MESSAGE_ID: result.id,
        semconv.CELERY_TASK_NAME: "unit.add",
        semconv.CELERY_TASK_RETRIES: 0,
    }
    assert sent["traceparent"].startswith(f"00-{publish.trace_id}-{publish.span_id}-")
    assert "tracestate" not in sent
    assert sent["baggage"] == "user.id=u-9"  # the allow-list applies before the broker
    assert abs(sent[semconv.CELERY_PUBLISHED_AT_HEADER] - time.time()) < 60
    published = span_capture.metrics()[semconv.CELERY_TASK_PUBLISHED.name]
    keys = {semconv.CELERY_TASK_NAME: "unit.add", semconv.MESSAGING_DESTINATION_NAME: "unit-q"}
    assert sum_value(published, keys) == 1


@pytest.mark.usefixtures("instrumented")
def test_eager_run_is_a_child_of_the_current_span(app: Celery, span_capture: SpanCapture) -> None:
    with trace.get_tracer("unit").start_as_current_span("caller") as caller:
        assert app.tasks["unit.add"].apply((2, 3)).get() == 5
        assert trace.get_current_span() is caller  # the run span was detached
    [run] = [s for s in span_capture.spans() if s.kind == "CONSUMER"]
    assert run.name == "process unit.add"
    assert run.parent_span_id == format(caller.get_span_context().span_id, "016x")
    assert run.attributes[semconv.CELERY_TASK_STATE] == "SUCCESS"
    assert semconv.CELERY_QUEUE_WAIT not in run.attributes  # never published
    durations = span_capture.metrics()[semconv.CELERY_TASK_DURATION.name]
    assert [p.attributes[semconv.CELERY_TASK_STATE] for p in durations] == ["SUCCESS"]


@pytest.mark.usefixtures("instrumented")
def test_eager_tasks_inside_a_task_end_each_their_own_span(
    app: Celery, span_capture: SpanCapture
) -> None:
    assert app.tasks["unit.outer"].apply().get() == "done"
    runs = {s.name: s for s in span_capture.spans() if s.kind == "CONSUMER"}
    assert sorted(runs) == ["process unit.add", "process unit.fail", "process unit.outer"]
    outer = runs["process unit.outer"]
    for inner in ("process unit.add", "process unit.fail"):
        assert runs[inner].parent_span_id == outer.span_id
    assert runs["process unit.fail"].status_code == "ERROR"
    assert runs["process unit.fail"].attributes[semconv.CELERY_TASK_STATE] == "FAILURE"
    assert outer.status_code == "UNSET"
    assert outer.attributes[semconv.CELERY_TASK_STATE] == "SUCCESS"
    assert outer.end_time_ns >= runs["process unit.add"].end_time_ns
    durations = span_capture.metrics()[semconv.CELERY_TASK_DURATION.name]
    assert sorted(
        (p.attributes[semconv.CELERY_TASK_NAME], p.attributes[semconv.CELERY_TASK_STATE])
        for p in durations
    ) == [("unit.add", "SUCCESS"), ("unit.fail", "FAILURE"), ("unit.outer", "SUCCESS")]


@pytest.mark.usefixtures("instrumented")
def test_eager_failure_is_an_error_and_the_exception_is_the_users(
    app: Celery, span_capture: SpanCapture
) -> None:
    with pytest.raises(KeyError, match="missing"):
        app.tasks["unit.fail"].apply(throw=True)
    [run] = [s for s in span_capture.spans() if s.kind == "CONSUMER"]
    assert run.status_code == "ERROR"
    assert run.attributes[semconv.ERROR_TYPE] == "KeyError"
    assert run.attributes[semconv.CELERY_TASK_STATE] == "FAILURE"
    assert [name for name, _ in run.events] == ["exception"]


def test_queue_wait_counts_from_publish_or_from_a_later_eta() -> None:
    now = time.time()
    request = SimpleNamespace(eta=None, **{semconv.CELERY_PUBLISHED_AT_HEADER: now - 2.5})
    assert _queue_wait(request, now) == pytest.approx(2.5)
    eta = datetime.fromtimestamp(now - 1.0, UTC)
    request.eta = eta.isoformat()
    assert _queue_wait(request, now) == pytest.approx(1.0, abs=1e-3)
    request.eta = eta + timedelta(seconds=5)  # clock skew / early start: never negative
    assert _queue_wait(request, now) == 0.0
    assert _queue_wait(SimpleNamespace(eta=None), now) is None


def test_run_keeps_only_allow_listed_baggage(span_capture: SpanCapture) -> None:
    hooks = CeleryHooks(
        tracer=trace.get_tracer("unit"), meter=None, baggage_keys=(semconv.TENANT_ID,)
    )
    request = SimpleNamespace(
        id="t-1",
        retries=0,
        eta=None,
        delivery_info={"routing_key": "q"},
        traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01",
        baggage="tenant.id=acme,user.password=hunter2",
    )
    task = SimpleNamespace(name="unit.x", request=request)
    hooks.prerun(task=task, task_id="t-1")
    assert dict(baggage.get_all()) == {semconv.TENANT_ID: "acme"}
    hooks.postrun(task=task, task_id="t-1", state="SUCCESS")
    assert baggage.get_all() == {}
    [run] = span_capture.spans()
    assert run.trace_id == "a" * 32
    assert run.parent_span_id == "b" * 16
    assert run.attributes[semconv.TENANT_ID] == "acme"
    assert "user.password" not in run.attributes


def test_internal_errors_never_reach_celery_outside_strict_mode(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    hooks = CeleryHooks(tracer=trace.get_tracer("unit"), meter=None, baggage_keys=())
    broken = SimpleNamespace(name="unit.broken")  # no .request: a bug on our side
    with pytest.raises(AttributeError):
        hooks.prerun(task=broken)  # strict (the plugin's default): bugs surface
    monkeypatch.setattr(_guard, "STRICT", False)
    with caplog.at_level(logging.WARNING, logger="difytrace"):
        hooks.prerun(task=broken)
        hooks.postrun(task=broken, state="SUCCESS")
        hooks.before_publish(sender="x", headers={"id": object(), "task": "x"}, routing_key=1)
    assert "difytrace internal error" in caplog.text


def test_gevent_rebinding_is_a_no_op_without_gevent_patching() -> None:
    assert gevent_order.use_gevent_threading() == 0


def test_publish_inside_suppress_instrumentation_makes_no_span(span_capture: SpanCapture) -> None:
    from celery import Celery
    from opentelemetry.instrumentation.utils import suppress_instrumentation

    app = Celery("suppressed", broker="memory://")
    CeleryInstrumentor().instrument()
    try:
        with suppress_instrumentation():
            app.send_task("suppressed.task", queue=f"q-{uuid.uuid4().hex[:6]}")
        app.send_task("visible.task", queue=f"q-{uuid.uuid4().hex[:6]}")
    finally:
        CeleryInstrumentor().uninstrument()
    assert [s.name for s in span_capture.spans()] == ["send visible.task"]


@pytest.mark.usefixtures("instrumented")
def test_a_publish_that_raises_ends_its_span_with_the_error(
    app: Celery, span_capture: SpanCapture
) -> None:
    from kombu.exceptions import EncodeError

    with pytest.raises(EncodeError):
        app.tasks["unit.add"].apply_async((object(), 2))  # json cannot encode it
    app.tasks["unit.add"].apply_async((1, 2))
    failed, sent = [s for s in span_capture.spans() if s.kind == "PRODUCER"]
    assert failed.status_code == "ERROR"
    assert failed.attributes[semconv.ERROR_TYPE] == "kombu.exceptions.EncodeError"
    assert sent.status_code == "UNSET"
    published = span_capture.metrics()[semconv.CELERY_TASK_PUBLISHED.name]
    keys = {semconv.CELERY_TASK_NAME: "unit.add", semconv.MESSAGING_DESTINATION_NAME: "unit-q"}
    assert sum_value(published, keys) == 1  # only the message that left


@pytest.mark.usefixtures("instrumented")
def test_a_publish_from_a_before_publish_receiver_ends_both_spans(
    app: Celery, span_capture: SpanCapture
) -> None:
    inner: list[Any] = []

    def audit(sender: str | None = None, **_: Any) -> None:
        if sender == "unit.add":  # after difytrace's receiver: the outer span is pending
            inner.append(app.tasks["unit.fail"].apply_async())

    signals.before_task_publish.connect(audit, weak=False, dispatch_uid="unit-audit")
    try:
        outer = app.tasks["unit.add"].apply_async((1, 2))
    finally:
        signals.before_task_publish.disconnect(dispatch_uid="unit-audit")
    spans = {s.name: s for s in span_capture.spans() if s.kind == "PRODUCER"}
    assert set(spans) == {"send unit.add", "send unit.fail"}
    assert spans["send unit.add"].attributes[semconv.MESSAGING_MESSAGE_ID] == outer.id
    assert spans["send unit.fail"].attributes[semconv.MESSAGING_MESSAGE_ID] == inner[0].id
    published = span_capture.metrics()[semconv.CELERY_TASK_PUBLISHED.name]
    for task in ("unit.add", "unit.fail"):
        keys = {semconv.CELERY_TASK_NAME: task, semconv.MESSAGING_DESTINATION_NAME: "unit-q"}
        assert sum_value(published, keys) == 1


@pytest.mark.usefixtures("instrumented")
def test_an_eager_task_called_while_handling_an_exception_succeeds(
    app: Celery, span_capture: SpanCapture
) -> None:
    try:
        raise LookupError("the caller's own, handled")
    except LookupError:
        assert app.tasks["unit.add"].apply((1, 1)).get() == 2
    [run] = [s for s in span_capture.spans() if s.kind == "CONSUMER"]
    assert run.status_code == "UNSET"
    assert run.attributes[semconv.CELERY_TASK_STATE] == "SUCCESS"
    assert semconv.ERROR_TYPE not in run.attributes


@pytest.mark.usefixtures("instrumented")
def test_with_contrib_celery_instrumented_too_each_message_has_one_set_of_spans(
    app: Celery, span_capture: SpanCapture
) -> None:
    """Dify's ext_otel instruments contrib's CeleryInstrumentor itself: difytrace stands aside."""
    contrib = pytest.importorskip("opentelemetry.instrumentation.celery")
    instrumentor = contrib.CeleryInstrumentor()
    instrumentor.instrument()
    try:
        app.tasks["unit.add"].apply_async((1, 2))
        app.tasks["unit.add"].apply((2, 3))
    finally:
        instrumentor.uninstrument()
    spans = [s for s in span_capture.spans() if s.kind in {"PRODUCER", "CONSUMER"}]
    assert sorted(s.kind for s in spans) == ["CONSUMER", "PRODUCER"]
    assert {s.scope_name for s in spans} == {"opentelemetry.instrumentation.celery"}
    app.tasks["unit.add"].apply_async((1, 2))  # contrib gone: difytrace's span again
    last = [s for s in span_capture.spans() if s.kind == "PRODUCER"][-1]
    assert last.scope_name == "difytrace.instrumentation.celery"
