"""One trace id: a record submitted inside a live span lands in Langfuse under that trace id."""

from __future__ import annotations

import flask
import pytest
from opentelemetry import trace

from difytrace.instrumentation.flask import FlaskInstrumentor
from difytrace.ops_trace import outbox
from difytrace.ops_trace.view import build_view
from tests.ops_trace.conftest import OpsEnv, wait_until
from tests.ops_trace.factories import message

pytestmark = pytest.mark.integration


@pytest.fixture
def to_langfuse(ops_env: OpsEnv, fake_langfuse) -> outbox.Outbox:
    fake_langfuse.add_project("pk", "sk", "tenant-a")
    ops_env.route(
        {
            "default": [
                {
                    "kind": "langfuse",
                    "host": fake_langfuse.endpoint,
                    "public_key": "pk",
                    "secret_key": "sk",
                }
            ]
        }
    )
    ops_env.start_worker()
    return outbox.configure(ops_env.settings())


def _delivered_trace_ids(fake_langfuse, record) -> set[str]:
    span_id = build_view(record).observations[0].span_id
    wait_until(lambda: span_id in fake_langfuse.ids(), 30, f"{record.record_id} delivered")
    return {
        w.entity["trace_id"] for (_, sid), w in fake_langfuse.entities.items() if sid == span_id
    }


def test_a_record_submitted_in_a_flask_request_shares_its_trace_id(
    to_langfuse, fake_langfuse, span_capture
) -> None:
    app = flask.Flask("linking")
    record = message("in-request")

    @app.post("/chat")
    def chat() -> dict[str, bool]:
        return {"queued": outbox.submit(record)}

    instrumentor = FlaskInstrumentor()
    instrumentor.instrument()
    try:
        assert app.test_client().post("/chat").json == {"queued": True}
    finally:
        instrumentor.uninstrument()
    (server,) = [s for s in span_capture.spans() if s.kind == "SERVER"]
    assert _delivered_trace_ids(fake_langfuse, record) == {server.trace_id}


def test_manual_span_own_trace_id_and_no_span(to_langfuse, fake_langfuse, span_capture) -> None:
    tracer = trace.get_tracer("tests.linking")
    inside, own, outside = message("inside"), message("own", trace_id="ab" * 16), message("out")
    with tracer.start_as_current_span("task") as span:
        live = format(span.get_span_context().trace_id, "032x")
        assert outbox.submit(inside)
        assert outbox.submit(own)  # a trace id of its own wins over the live one
    assert outbox.submit(outside)
    assert _delivered_trace_ids(fake_langfuse, inside) == {live}
    assert _delivered_trace_ids(fake_langfuse, own) == {"ab" * 16}
    assert _delivered_trace_ids(fake_langfuse, outside) == {build_view(outside).trace_id}
    assert build_view(outside).trace_id != live
