"""The demo's Flask API, shaped like Dify's: a chat endpoint streaming its answer over SSE and
a workflow endpoint that hands the run to a Celery worker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, jsonify, request, stream_with_context
from opentelemetry import context as otel_context

from difytrace.demo import llm, recording, tasks


def create_app(model: tuple[str, str]) -> Flask:
    """The API app (``model`` = OpenAI base URL and key); difytrace's Flask and Celery
    instrumentors make its spans."""
    app = Flask("difytrace_demo")

    @app.post("/v1/chat-messages")
    def chat_messages() -> Response:
        query = str((request.get_json(silent=True) or {}).get("query") or "hello")
        # The body is generated after the view returns: keep the request's trace context.
        request_context = otel_context.get_current()
        live_trace = recording.trace_id()

        def finished(answer: llm.Answer) -> None:
            recording.submit(recording.message_record(query, answer, datetime.now(UTC), live_trace))

        def events() -> Iterator[str]:
            token = otel_context.attach(request_context)
            try:
                for delta in llm.stream(*model, query, finished):
                    yield "data: " + json.dumps({"event": "message", "answer": delta}) + "\n\n"
                yield "data: " + json.dumps({"event": "message_end"}) + "\n\n"
            finally:
                otel_context.detach(token)

        return Response(stream_with_context(events()), mimetype="text/event-stream")

    @app.post("/v1/workflows/run")
    def workflows_run() -> Any:
        inputs = (request.get_json(silent=True) or {}).get("inputs") or {}
        kwargs = {"inputs": inputs, "model_base_url": model[0], "model_api_key": model[1]}
        result = tasks.run_workflow.apply_async(kwargs=kwargs)
        return jsonify({"task_id": result.id, "status": "queued"}), 202

    return app
