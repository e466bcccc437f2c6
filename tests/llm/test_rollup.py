"""Tokens and cost of every LLM call rolled up onto the enclosing request or task span: several
calls, a stream and litellm under one span; a real Celery task span (eager run through the
worker's trace code); a real Flask request span (test client). The totals have names of their
own, so a sum of the per-call cost over the trace counts each call once."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import flask
import openai
import pytest
from celery import Celery
from opentelemetry import trace

from difytrace.instrumentation.celery import CeleryInstrumentor
from difytrace.instrumentation.flask import FlaskInstrumentor
from difytrace.testing import CapturedSpan, SpanCapture
from difytrace.testing.openai_server import OpenAIServer, Reply

from .conftest import LLMSetup

litellm = pytest.importorskip("litellm")

pytestmark = [  # litellm's own warnings (see test_litellm.py)
    pytest.mark.filterwarnings("ignore::UserWarning:pydantic._internal._generate_schema"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::PendingDeprecationWarning"),
    pytest.mark.filterwarnings("ignore:Accessing the 'model_computed_fields':Warning"),
    pytest.mark.filterwarnings("ignore:Pydantic serializer warnings:UserWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

MESSAGES = [{"role": "user", "content": "Hi"}]
PER_CALL_COST = "difytrace.gen_ai.usage.cost"


def llm_workload(server: OpenAIServer) -> None:
    """Two chat calls, one stream with a usage chunk, one litellm call: four LLM spans."""
    server.script(
        Reply(usage={"prompt": 1000, "completion": 100}),
        Reply(usage={"prompt": 2000, "completion": 200, "cached": 500}),
        Reply(chunks=10, include_usage=True, usage={"prompt": 300, "completion": 30}),
        Reply(usage={"prompt": 40, "completion": 4}),
    )
    with openai.OpenAI(base_url=server.base_url, api_key=server.api_key, max_retries=0) as c:
        c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
        c.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
        list(c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))  # type: ignore[arg-type]
    litellm.completion(
        model="openai/gpt-4o-mini",
        messages=MESSAGES,
        api_base=server.base_url,
        api_key=server.api_key,
        num_retries=0,
    )


def assert_rolled_up(spans: list[CapturedSpan], root: CapturedSpan) -> None:
    calls = [s for s in spans if "gen_ai.operation.name" in s.attributes]
    assert len(calls) == 4
    assert all(s.trace_id == root.trace_id for s in calls)
    a = root.attributes
    assert a["difytrace.gen_ai.rollup.calls"] == 4
    assert a["difytrace.gen_ai.rollup.input_tokens"] == 1000 + 2000 + 300 + 40
    assert a["difytrace.gen_ai.rollup.output_tokens"] == 100 + 200 + 30 + 4
    costs = [s.attributes[PER_CALL_COST] for s in calls]
    assert all(cost > 0 for cost in costs)
    assert a["difytrace.gen_ai.rollup.cost"] == pytest.approx(sum(costs))
    # what a trace query summing the per-call name gets: each call once, the root not again
    trace_total = sum(s.attributes.get(PER_CALL_COST, 0) for s in spans)
    assert trace_total == pytest.approx(sum(costs))
    for call in calls:
        assert not any(k.startswith("difytrace.gen_ai.rollup.") for k in call.attributes)


def test_several_calls_a_stream_and_litellm_roll_up_onto_the_enclosing_span(
    llm: LLMSetup, openai_server: OpenAIServer, span_capture: SpanCapture
) -> None:
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("POST /chat"), tracer.start_as_current_span("workflow"):
        llm_workload(openai_server)
    spans = span_capture.spans()
    root = next(s for s in spans if s.name == "POST /chat")
    assert_rolled_up(spans, root)
    workflow = next(s for s in spans if s.name == "workflow")
    assert "difytrace.gen_ai.rollup.calls" not in workflow.attributes  # only the local root


@pytest.fixture
def celery_instrumented() -> Iterator[None]:
    instrumentor = CeleryInstrumentor()
    already = instrumentor.is_instrumented_by_opentelemetry
    if already:
        instrumentor.uninstrument()
    instrumentor.instrument()
    yield
    instrumentor.uninstrument()
    if already:
        instrumentor.instrument()


@pytest.mark.usefixtures("celery_instrumented")
def test_rollup_onto_a_celery_task_span(
    llm: LLMSetup, openai_server: OpenAIServer, span_capture: SpanCapture
) -> None:
    app = Celery(f"rollup-{uuid.uuid4().hex[:6]}", broker="memory://", set_as_current=False)
    app.conf.task_always_eager = True

    @app.task(name="rollup.generate", shared=False)  # shared tasks reach every later app
    def generate() -> str:
        llm_workload(openai_server)
        return "done"

    # Eager, with no span around it: the run span is the local root, as on a worker where
    # its parent is the remote publish span.
    assert generate.delay().get() == "done"
    spans = span_capture.spans()
    task = next(s for s in spans if s.name == "process rollup.generate")
    assert task.kind == "CONSUMER"
    assert_rolled_up(spans, task)


@pytest.fixture
def flask_instrumented() -> Iterator[None]:
    instrumentor = FlaskInstrumentor()
    already = instrumentor.is_instrumented_by_opentelemetry
    if not already:
        instrumentor.instrument()
    yield
    if not already:
        instrumentor.uninstrument()


@pytest.mark.usefixtures("flask_instrumented")
def test_rollup_onto_a_flask_request_span(
    llm: LLMSetup, openai_server: OpenAIServer, span_capture: SpanCapture
) -> None:
    app = flask.Flask("rollup")

    @app.post("/apps/<app_id>/chat-messages")
    def chat(app_id: str) -> dict[str, Any]:
        llm_workload(openai_server)
        return {"answer": "ok"}

    response = app.test_client().post("/apps/a1/chat-messages")
    assert response.status_code == 200
    spans = span_capture.spans()
    server = next(s for s in spans if s.kind == "SERVER")
    assert server.name == "POST /apps/<app_id>/chat-messages"
    assert_rolled_up(spans, server)
