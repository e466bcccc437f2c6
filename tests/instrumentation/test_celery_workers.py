"""The Celery instrumentation against real workers on the local Redis, one per pool.

Tasks are published from this process (instrumented, spans in ``span_capture``); each worker
runs under ``opentelemetry-instrument`` and exports OTLP/HTTP to a receiver of this module.
Metrics of the workers are exported only by the shutdown flush (the export interval is longer
than any test), so receiving them after SIGTERM proves the flush of every pool.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from opentelemetry import baggage, context

from difytrace import semconv
from difytrace.instrumentation.celery import CeleryInstrumentor
from difytrace.testing import CapturedSpan, OTLPReceiver, SpanCapture, histogram_totals, sum_value
from tests.integration import celery_app
from tests.integration._procs import BIN, HERE, Proc, wait_until

pytestmark = pytest.mark.integration

NEVER = "600000"  # ms: an export delay or interval no test waits for
POOLS = ("prefork", "solo", "threads", "gevent")


@dataclass
class Worker:
    receiver: OTLPReceiver
    proc: Proc
    queue: str
    pool: str


def start_worker(
    receiver: OTLPReceiver, tmp: Path, pool: str, queue: str, *extra: str, **env: str
) -> Proc:
    """A celery worker under opentelemetry-instrument, consuming ``queue`` only."""
    concurrency = "4" if pool in ("gevent", "threads") else "1"
    command = ["celery", "-A", "celery_app:app", "worker", "-P", pool, "-c", concurrency]
    command += ["-Q", queue, "-n", f"{queue}@%h", "-l", "INFO", *extra]
    command += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    full_env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
        "DIFYTRACE_STRICT": "1",
        "OTEL_SERVICE_NAME": f"ct-worker-{pool}",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_METRIC_EXPORT_INTERVAL": NEVER,
        "CT_QUEUE": queue,
        # The worker imports no Flask; keep its log about Celery alone.
        "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "difytrace_flask",
        **env,
    }
    full_env.pop("PYTEST_CURRENT_TEST", None)
    log = tmp / f"worker-{pool}-{queue}.log"
    with log.open("wb") as handle:  # the child keeps its own copy of the descriptor
        popen = subprocess.Popen(
            [str(BIN / "opentelemetry-instrument"), str(BIN / command[0]), *command[1:]],
            env=full_env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=HERE,
            start_new_session=True,
        )
    proc = Proc(popen, log)
    proc.wait_for_output("ready.", timeout=60)
    return proc


def stop_cleanly(proc: Proc) -> None:
    """SIGTERM: the worker must exit within 10 s, and no traceback at start, run or exit."""
    took = proc.terminate(timeout=10)
    assert took < 10
    assert "Traceback" not in proc.output(), proc.output()


@pytest.fixture(scope="module")
def instrumented() -> Iterator[None]:
    """This process publishes through the instrumentor (spans go to ``span_capture``)."""
    instrumentor = CeleryInstrumentor()
    already = instrumentor.is_instrumented_by_opentelemetry
    instrumentor.instrument()
    yield
    if not already:
        instrumentor.uninstrument()


@pytest.mark.usefixtures("instrumented")
@pytest.mark.parametrize("pool", POOLS)
def test_worker_pool(pool: str, tmp_path: Path, span_capture: SpanCapture) -> None:
    """One worker per pool runs a succeeding, a failing and a retried task, then gets SIGTERM:
    it must exit within 10 s, log no traceback, and flush what it still held."""
    queue = f"ct-{pool}-{uuid.uuid4().hex[:8]}"
    with OTLPReceiver() as receiver:
        proc = start_worker(receiver, tmp_path, pool, queue)
        worker = Worker(receiver, proc, queue, pool)
        try:
            check_parentage_queue_wait_and_baggage(worker, span_capture)
            check_failure(worker)
            check_retry(worker)
        finally:
            stop_cleanly(proc)
        # Only the flush at shutdown exports the worker's metrics (interval: NEVER).
        receiver.wait_for_metric(semconv.CELERY_TASK_DURATION.name, timeout=10)
        points = receiver.metrics()
        waits = points[semconv.CELERY_QUEUE_WAIT_DURATION.name]
        assert histogram_totals(waits, {semconv.MESSAGING_DESTINATION_NAME: queue}).count == 4
        durations = points[semconv.CELERY_TASK_DURATION.name]
        states = {p.attributes[semconv.CELERY_TASK_STATE] for p in durations}
        assert states == {"SUCCESS", "FAILURE", "RETRY"}


def run_spans(receiver: OTLPReceiver, task_id: str, count: int = 1) -> list[CapturedSpan]:
    """The CONSUMER spans of one task id (a retried task has one per attempt)."""

    def is_run(span: CapturedSpan) -> bool:
        return (
            span.kind == "CONSUMER" and span.attributes.get(semconv.MESSAGING_MESSAGE_ID) == task_id
        )

    spans = receiver.wait_for(count, predicate=is_run, timeout=20)
    return sorted(spans, key=lambda s: s.start_time_ns)


def publish_span(capture: SpanCapture, task_id: str) -> CapturedSpan:
    """The PRODUCER span of ``task_id`` recorded in this process."""
    [span] = capture.wait_for(
        predicate=lambda s: s.attributes.get(semconv.MESSAGING_MESSAGE_ID) == task_id
    )
    return span


def check_parentage_queue_wait_and_baggage(worker: Worker, span_capture: SpanCapture) -> None:
    """Publish here → run there: one trace, queue wait, only allow-listed baggage."""
    ctx = baggage.set_baggage(semconv.TENANT_ID, "t-1")
    ctx = baggage.set_baggage(semconv.APP_ID, "a-1", ctx)
    ctx = baggage.set_baggage("secret.token", "never-leaves", ctx)
    token = context.attach(ctx)
    try:
        result = celery_app.seen_baggage.apply_async(queue=worker.queue)
    finally:
        context.detach(token)
    # Only allow-listed entries reach the task's own context.
    assert result.get(timeout=20) == {semconv.TENANT_ID: "t-1", semconv.APP_ID: "a-1"}

    publish = publish_span(span_capture, result.id)
    [run] = run_spans(worker.receiver, result.id)
    assert publish.name == "send ct.baggage"
    assert publish.kind == "PRODUCER"
    assert publish.attributes[semconv.MESSAGING_DESTINATION_NAME] == worker.queue
    assert publish.attributes[semconv.MESSAGING_OPERATION_TYPE] == "send"
    assert run.name == "process ct.baggage"
    assert run.trace_id == publish.trace_id
    assert run.parent_span_id == publish.span_id
    assert run.resource["service.name"] == f"ct-worker-{worker.pool}"
    assert run.attributes[semconv.MESSAGING_SYSTEM] == "celery"
    assert run.attributes[semconv.MESSAGING_DESTINATION_NAME] == worker.queue
    assert run.attributes[semconv.MESSAGING_OPERATION_NAME] == "process"
    assert run.attributes[semconv.CELERY_TASK_NAME] == "ct.baggage"
    assert run.attributes[semconv.CELERY_TASK_STATE] == "SUCCESS"
    assert run.attributes[semconv.CELERY_TASK_RETRIES] == 0
    assert 0 <= float(run.attributes[semconv.CELERY_QUEUE_WAIT]) < 20
    assert run.attributes[semconv.TENANT_ID] == "t-1"
    assert run.attributes[semconv.APP_ID] == "a-1"
    assert "secret.token" not in run.attributes
    assert run.status_code == "UNSET"
    published = span_capture.metrics()[semconv.CELERY_TASK_PUBLISHED.name]
    keys = {
        semconv.CELERY_TASK_NAME: "ct.baggage",
        semconv.MESSAGING_DESTINATION_NAME: worker.queue,
    }
    assert sum_value(published, keys) == 1


def check_failure(worker: Worker) -> None:
    """A failing task: ERROR status and an exception event with its stack."""
    result = celery_app.fail.apply_async(args=("boom",), queue=worker.queue)
    with pytest.raises(ValueError, match="boom"):
        result.get(timeout=20)
    [run] = run_spans(worker.receiver, result.id)
    assert run.status_code == "ERROR"
    assert run.status_description == "ValueError: boom"
    assert run.attributes[semconv.CELERY_TASK_STATE] == "FAILURE"
    assert run.attributes[semconv.ERROR_TYPE] == "ValueError"
    [(name, attributes)] = run.events
    assert name == "exception"
    assert attributes["exception.type"] == "ValueError"
    assert attributes["exception.message"] == "boom"
    assert "raise ValueError(message)" in str(attributes["exception.stacktrace"])


def check_retry(worker: Worker) -> None:
    """A retried task: a retry event, no error, both attempts in one trace."""
    result = celery_app.flaky.apply_async(args=(7,), queue=worker.queue)
    assert result.get(timeout=20) == 7
    first, second = run_spans(worker.receiver, result.id, count=2)
    assert first.attributes[semconv.CELERY_TASK_STATE] == "RETRY"
    assert first.status_code == "UNSET"  # a retry is not a failure
    [(event, attributes)] = first.events
    assert event == semconv.CELERY_RETRY_EVENT
    assert attributes[semconv.EXCEPTION_TYPE] == "celery_app.FlakyError"
    assert second.attributes[semconv.CELERY_TASK_STATE] == "SUCCESS"
    assert second.attributes[semconv.CELERY_TASK_RETRIES] == 1
    # The retry is published from inside the first attempt: one trace, attempt → send → run.
    [republish] = [s for s in worker.receiver.spans() if s.span_id == second.parent_span_id]
    assert republish.kind == "PRODUCER"
    assert republish.parent_span_id == first.span_id
    assert republish.attributes[semconv.CELERY_TASK_RETRIES] == 1
    assert {first.trace_id, second.trace_id} == {republish.trace_id}


@pytest.mark.usefixtures("instrumented")
def test_recycled_prefork_children_flush_every_span(
    tmp_path: Path, span_capture: SpanCapture
) -> None:
    """--max-tasks-per-child=1 with an export delay nobody waits for: each child ends with
    ``os._exit`` after one task, so only the worker_process_shutdown flush delivers spans."""
    queue = f"ct-recycle-{uuid.uuid4().hex[:8]}"
    with OTLPReceiver() as receiver:
        proc = start_worker(
            receiver,
            tmp_path,
            "prefork",
            queue,
            "--max-tasks-per-child=1",
            OTEL_BSP_SCHEDULE_DELAY=NEVER,
        )
        try:
            results = [celery_app.add.apply_async((i, i), queue=queue) for i in range(3)]
            assert [r.get(timeout=30) for r in results] == [0, 2, 4]
            for r in results:
                [run] = run_spans(receiver, r.id)
                assert run.parent_span_id == publish_span(span_capture, r.id).span_id
        finally:
            stop_cleanly(proc)


@pytest.mark.usefixtures("instrumented")
@pytest.mark.parametrize("pool", ["prefork", "gevent"])
def test_sigterm_during_a_task_finishes_it_and_flushes_its_span(
    pool: str, tmp_path: Path, span_capture: SpanCapture
) -> None:
    """A warm shutdown lets the running task finish; its span, held back by an export delay
    nobody waits for, arrives through the shutdown flush, and the worker exits within 10 s."""
    queue = f"ct-term-{pool}-{uuid.uuid4().hex[:8]}"
    marker = tmp_path / "started"
    with OTLPReceiver() as receiver:
        proc = start_worker(receiver, tmp_path, pool, queue, OTEL_BSP_SCHEDULE_DELAY=NEVER)
        try:
            result = celery_app.slow.apply_async((str(marker), 1.5), queue=queue)
            wait_until(marker.exists, timeout=30, what="the task to start")
        finally:
            stop_cleanly(proc)
        assert result.get(timeout=10) == "done"
        [run] = run_spans(receiver, result.id)
        assert run.attributes[semconv.CELERY_TASK_STATE] == "SUCCESS"
        assert run.parent_span_id == publish_span(span_capture, result.id).span_id
