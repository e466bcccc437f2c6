"""The real difytrace workload the dashboard test scrapes (run as a script, one process each).

``python workload.py api|worker|ops --redis URL --queue NAME --ready FILE``

* ``api``: a Flask app (werkzeug server, threaded) with difytrace configured: ``/ok``,
  ``/fail`` (raises → 500), ``/stream`` (server-sent events), ``/enqueue/<kind>`` (publishes a
  Celery task: ok, fail, retry), ``/chat/<tenant_id>/<app_id>`` (real OpenAI SDK calls to the
  fake OpenAI server of difytrace.testing: one streamed without usage, so tokens are estimated,
  one with reported usage, one answered 429).
  ``/trace/<tenant_id>/<app_id>`` submits an ops_trace record (and one invalid dict, dropped).
* ``worker``: a real Celery worker (solo pool) consuming ``NAME`` on Redis.
* ``ops``: the real ops_trace worker (``difytrace.ops_trace.worker``) on ``NAME-ops``, routing
  tenant-a to a fake Langfuse that accepts, tenant-b to one that answers 400 (dead letters)
  and tenant-c to a closed port (failures and retries, forever).

Spans go over real OTLP/HTTP, so the exporter-health metrics are live too: the ``api``
exports to a stalled collector (accepts connections, never answers) through a 4-span batch
queue with a 1 s export timeout, so its exports fail (``export.failures``, spans dropped with
reason ``export_failed``) and bursts overflow the queue (``queue_full``); the ``worker``
exports to a real OTLP receiver (``spans.exported``). The ``ops`` worker exports nothing.

Each process exposes its metrics with :func:`difytrace.prometheus.serve` on a free port and
writes ``{"metrics_port": ..., "http_port": ...}`` to ``FILE`` when ready.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socketserver
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from celery import Celery


def make_celery(redis_url: str, queue: str) -> Celery:
    app = Celery("dashworkload", broker=redis_url)
    app.conf.update(
        task_default_queue=queue,
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )

    @app.task(name="dash.ok")
    def ok() -> str:
        time.sleep(0.01)
        return "ok"

    @app.task(name="dash.fail")
    def fail() -> None:
        raise ValueError("dashboard workload: planned failure")

    @app.task(name="dash.retry", bind=True, max_retries=1)
    def retry(self: Any) -> str:
        if self.request.retries == 0:
            raise self.retry(countdown=0)
        return "retried"

    return app


def _write_ready(path: str, **ports: int) -> None:
    tmp = Path(path + ".tmp")
    tmp.write_text(json.dumps(ports))
    tmp.replace(path)  # atomic: the test never reads half a file


def run_api(args: argparse.Namespace) -> None:
    from flask import Flask, Response
    from werkzeug.serving import make_server

    celery_app = make_celery(args.redis, args.queue)
    app = Flask("dashworkload")
    llm = _llm_server()

    @app.get("/ok")
    def ok() -> str:
        return "ok"

    @app.get("/fail")
    def fail() -> str:
        raise RuntimeError("dashboard workload: planned 500")

    @app.get("/stream")
    def stream() -> Response:
        def events() -> Iterator[str]:
            for i in range(3):
                yield f"data: {i}\n\n"

        return Response(events(), mimetype="text/event-stream")

    @app.get("/enqueue/<kind>")
    def enqueue(kind: str) -> str:
        celery_app.send_task(f"dash.{kind}", queue=args.queue)
        return "queued"

    @app.get("/chat/<tenant_id>/<app_id>")
    def chat(tenant_id: str, app_id: str) -> str:
        _chat(llm)
        return "chatted"

    @app.get("/trace/<tenant_id>/<app_id>")
    def trace(tenant_id: str, app_id: str) -> str:
        from difytrace import ops_trace

        ops_trace.submit(_message(tenant_id, app_id))
        ops_trace.submit({"record_type": "nope"})  # refused: counted as dropped
        return "submitted"

    server = make_server("127.0.0.1", 0, app, threaded=True)
    _write_ready(args.ready, metrics_port=args.metrics_port, http_port=server.server_port)
    server.serve_forever()


def _llm_server() -> Any:
    from difytrace.testing.openai_server import OpenAIServer

    return OpenAIServer().start()


def _chat(llm: Any) -> None:
    import openai

    from difytrace.testing.openai_server import Reply

    client = openai.OpenAI(base_url=llm.base_url, api_key=llm.api_key, max_retries=0)
    messages = [{"role": "user", "content": "hello"}]
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True)
    for _ in stream:
        pass
    client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    llm.script(Reply(status=429, retry_after="0"))
    with contextlib.suppress(openai.RateLimitError):
        client.chat.completions.create(model="gpt-4o-mini", messages=messages)


def _message(tenant_id: str, app_id: str) -> Any:
    from datetime import UTC, datetime, timedelta

    from difytrace.ops_trace import MessageRecord, Usage

    end = datetime.now(UTC)
    return MessageRecord(
        record_id=f"msg-{uuid.uuid4().hex}",
        tenant_id=tenant_id,
        app_id=app_id,
        user_id="u-1",
        conversation_id="conv-1",
        name="chat",
        start_time=end - timedelta(seconds=1),
        end_time=end,
        inputs={"query": "hello"},
        outputs={"answer": "world"},
        model="gpt-4o-mini",
        model_provider="openai",
        usage=Usage(input_tokens=12, output_tokens=3),
    )


def run_ops(args: argparse.Namespace) -> None:
    import yaml

    from difytrace.testing.vendors import FakeLangfuse

    accepting, refusing = FakeLangfuse().start(), FakeLangfuse().start()
    accepting.add_project("pk-a", "sk-a", "tenant-a")
    refusing.add_project("pk-b", "sk-b", "tenant-b")
    refusing.fail(400, times=10**6)
    routes = {
        "tenants": {
            "tenant-a": {"destinations": [_langfuse(accepting, "pk-a", "sk-a")]},
            "tenant-b": {"destinations": [_langfuse(refusing, "pk-b", "sk-b")]},
            "tenant-c": {"destinations": [{"kind": "otlp", "endpoint": "http://127.0.0.1:9"}]},
        }
    }
    path = Path(args.ready).with_name("routes.yaml")
    path.write_text(yaml.safe_dump(routes))
    os.environ["DIFYTRACE_OPS_TRACE_DESTINATIONS"] = str(path)
    from difytrace.ops_trace import worker

    _write_ready(args.ready, metrics_port=args.metrics_port, http_port=0)
    worker.app.worker_main(
        ["worker", "--pool=solo", f"--queues={os.environ['DIFYTRACE_OPS_TRACE_QUEUE']}",
         "--loglevel=WARNING", "--without-heartbeat", "--without-gossip", "--without-mingle"]
    )  # fmt: skip


def _langfuse(server: Any, public_key: str, secret_key: str) -> dict[str, str]:
    return {"kind": "langfuse", "host": server.endpoint, "public_key": public_key,
            "secret_key": secret_key, "api": "otlp"}  # fmt: skip


def run_worker(args: argparse.Namespace) -> None:
    celery_app = make_celery(args.redis, args.queue)
    _write_ready(args.ready, metrics_port=args.metrics_port, http_port=0)
    celery_app.worker_main(
        ["worker", "--pool=solo", f"--queues={args.queue}", "--loglevel=WARNING",
         "--without-heartbeat", "--without-gossip", "--without-mingle"]
    )  # fmt: skip


class StalledCollector(socketserver.ThreadingTCPServer):
    """An OTLP endpoint that accepts connections and reads requests but never answers, as a
    hung collector does: every export times out."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Swallow)
        self.traces_endpoint = f"http://127.0.0.1:{self.server_address[1]}/v1/traces"

    def start(self) -> StalledCollector:
        import threading

        threading.Thread(target=self.serve_forever, name="stalled-collector", daemon=True).start()
        return self


class _Swallow(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while self.request.recv(65536):  # until the exporter gives up and closes
            pass


def _span_export(role: str) -> dict[str, Any]:
    """configure() arguments for the role's span export (and its batch settings)."""
    if role == "api":
        os.environ.update({
            "OTEL_BSP_MAX_QUEUE_SIZE": "4",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OTEL_BSP_EXPORT_TIMEOUT": "1000",
        })  # fmt: skip
        return {"exporter": "otlp", "traces_endpoint": StalledCollector().start().traces_endpoint}
    if role == "worker":
        from difytrace.testing.receiver import OTLPReceiver

        os.environ["OTEL_BSP_SCHEDULE_DELAY"] = "200"
        receiver = OTLPReceiver().start()
        return {"exporter": "otlp", "traces_endpoint": f"{receiver.endpoint}/v1/traces"}
    return {"exporter": "none"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["api", "worker", "ops"])
    parser.add_argument("--redis", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--ready", required=True)
    args = parser.parse_args()

    import difytrace
    from difytrace.prometheus import serve

    endpoint = serve(port=0)
    args.metrics_port = endpoint.port
    # litellm's instrumentor is not driven here and its import costs seconds.
    difytrace.configure(
        enabled=True,
        service_name=f"dash-{args.role}",
        disabled_instrumentations=["litellm"],
        **_span_export(args.role),
    )
    os.environ.setdefault("DIFYTRACE_STRICT", "1")
    {"api": run_api, "worker": run_worker, "ops": run_ops}[args.role](args)


if __name__ == "__main__":
    main()
