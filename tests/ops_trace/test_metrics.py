"""ops_trace metrics, as the in-memory reader of the test plugin sees them."""

from __future__ import annotations

from difytrace.ops_trace import metrics
from difytrace.testing import sum_value
from tests.ops_trace.factories import message
from tests.ops_trace.test_retries import _deliverer, _langfuse, _put

DEST = "difytrace.ops_trace.destination"


def test_delivery_metrics_per_destination_kind(ops_env, fake_langfuse, span_capture) -> None:
    d = _deliverer(ops_env, _langfuse(fake_langfuse), DIFYTRACE_OPS_TRACE_MAX_ATTEMPTS="2")
    uids = _put(d, [message("a"), message("b")])
    fake_langfuse.fail(503)
    d.deliver(uids, None, 1)  # both fail, both retried
    d.deliver(uids, None, 2)  # both delivered
    fake_langfuse.fail(400)
    d.deliver(_put(d, [message("c")]), None, 1)  # refused: dead letter
    got = span_capture.metrics()
    lf = {DEST: "langfuse"}
    assert sum_value(got["difytrace.ops_trace.delivered"], lf) == 2
    assert sum_value(got["difytrace.ops_trace.retried"], {**lf, "error.type": "http_503"}) == 2
    assert sum_value(got["difytrace.ops_trace.failed"], lf) == 3
    assert (
        sum_value(
            got["difytrace.ops_trace.dead_lettered"],
            {**lf, "difytrace.ops_trace.reason": "http_400"},
        )
        == 1
    )
    (lag,) = got["difytrace.ops_trace.lag"]
    assert lag.count == 2
    assert lag.attributes == lf
    assert sum(p.count or 0 for p in got["difytrace.ops_trace.batch.size"]) == 3
    # delivery never touches the global tracer provider (no vendor SDK attaches to it)
    assert span_capture.spans() == []


def test_queue_depth_gauge_and_worker_count(span_capture) -> None:
    metrics.set_queue_depth("ops_trace_x", 42)
    metrics.worker_running("ops_trace_x", 1)
    got = span_capture.metrics()
    depth = [
        p
        for p in got["difytrace.ops_trace.queue.depth"]
        if p.attributes == {"messaging.destination.name": "ops_trace_x"}
    ]
    assert depth[0].value == 42
    assert (
        sum_value(got["difytrace.ops_trace.workers"], {"messaging.destination.name": "ops_trace_x"})
        == 1
    )
