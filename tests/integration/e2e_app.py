"""A Dify-shaped app for the end-to-end tests: a Flask API that enqueues a Celery task, an
SSE endpoint that streams for ~250 ms, and the task itself. Configured by environment only, as
it runs under gunicorn and celery started by the tests (under ``opentelemetry-instrument``)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

from celery import Celery
from flask import Flask, Response, stream_with_context

if os.environ.get("E2E_CONFIGURE") == "1":
    # From code, as an app started without opentelemetry-instrument does (ENABLE_OTEL decides).
    import difytrace

    difytrace.configure()

if os.environ.get("E2E_NOTHING_AT_EXIT") == "1":
    # Registered last, so it runs first at interpreter shutdown: no atexit flush (the SDK's)
    # gets to run, as on Python 3.12 where an atexit export may not start a thread.
    import atexit

    atexit.register(os._exit, 0)

celery = Celery("e2e", broker=os.environ.get("E2E_BROKER", "redis://127.0.0.1:6379/14"))
celery.conf.update(
    task_default_queue=os.environ.get("E2E_QUEUE", "e2e"),
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@celery.task(name="e2e.summarise")
def summarise(text: str) -> int:
    """Stands in for Dify's post-processing tasks."""
    return len(text)


@celery.task(name="e2e.llm_node")
def llm_node(question: str) -> str:
    """A workflow's LLM node: the real OpenAI SDK against the test's model server."""
    import openai

    client = openai.OpenAI(
        base_url=os.environ["E2E_OPENAI_BASE_URL"],
        api_key=os.environ["E2E_OPENAI_API_KEY"],
        max_retries=0,
    )
    reply = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": question}]
    )
    return reply.choices[0].message.content or ""


app = Flask(__name__)

if os.environ.get("E2E_SPAN_AT_IMPORT") == "1":
    # Under gunicorn --preload this runs in the master, before any fork.
    from opentelemetry import trace

    with trace.get_tracer("e2e").start_as_current_span("import e2e_app"):
        pass


@app.post("/apps/<app_id>/chat-messages")
def chat(app_id: str) -> dict[str, str]:
    result = summarise.delay(f"hello from {app_id}")
    return {"task_id": result.id}


@app.post("/apps/<app_id>/workflows/run")
def run_workflow(app_id: str) -> dict[str, str]:
    result = llm_node.delay(f"summarise the run of {app_id}")
    return {"task_id": result.id}


@app.get("/apps/<app_id>/stream")
def stream(app_id: str) -> Response:
    def events() -> Iterator[str]:
        for index in range(5):
            time.sleep(0.05)  # gevent-patched under gunicorn -k gevent
            yield f"data: chunk {index} for {app_id}\n\n"

    return Response(stream_with_context(events()), mimetype="text/event-stream")
