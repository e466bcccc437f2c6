"""Runs the demo end to end: OTLP receivers, a local OpenAI-compatible server, the API, real
Celery worker processes (the app's and ops_trace's), a few requests; then draws the traces,
writes them as OTLP/JSON and says where the same data goes in production."""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.rule import Rule

from difytrace import cli_otlp_json, cli_tree
from difytrace.demo import embedded, workers
from difytrace.demo.embedded import Broker
from difytrace.testing.openai_server import OpenAIServer, Reply
from difytrace.testing.receiver import OTLPReceiver

SPANS_TIMEOUT_S = 30.0
_OPS_WAIT = "the ops_trace records did not arrive at their destination"


def post(url: str, payload: dict[str, Any]) -> tuple[int, bytes]:
    """POST JSON; return status and the whole body (an SSE stream is read to its end)."""
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        method="POST",
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, response.read()


@contextmanager
def api_server(app: Any) -> Iterator[str]:
    """Serve the Flask app on 127.0.0.1 and an ephemeral port; yield its base URL."""
    from werkzeug.serving import WSGIRequestHandler, make_server

    class QuietHandler(WSGIRequestHandler):
        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            return

    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="difytrace-demo-api")
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()


def _environment(broker: Broker, workdir: Path, ops: OTLPReceiver) -> dict[str, str]:
    """Variables for every demo process (this one included): broker, queues, ops_trace."""
    env = {
        "DIFYTRACE_DEMO_BROKER_URL": broker.url,
        "DIFYTRACE_DEMO_BROKER_DIR": broker.folder or "",
        "DIFYTRACE_DEMO_QUEUE": broker.app_queue,
        "DIFYTRACE_DEMO_OPS_TRACE": "1" if broker.redis else "0",
    }
    if broker.redis:
        routing = workdir / "destinations.yaml"
        routing.write_text(f"default:\n  - {{kind: otlp, endpoint: '{ops.endpoint}/v1/traces'}}\n")
        env.update(
            {
                "DIFYTRACE_OPS_TRACE_BROKER_URL": broker.url,
                "DIFYTRACE_OPS_TRACE_QUEUE": broker.ops_queue,
                "DIFYTRACE_OPS_TRACE_KEY_PREFIX": broker.key_prefix,
                "DIFYTRACE_OPS_TRACE_DESTINATIONS": str(routing),
                "DIFYTRACE_OPS_TRACE_OUTBOX_URL": "",
                "DIFYTRACE_OPS_TRACE_RESOLVER": "",
            }
        )
    return env


def _script(model: OpenAIServer) -> None:
    """The model's replies, in request order: chat (streamed), Plan (a tool call), Answer."""
    model.script(
        Reply(
            text="Tracing follows each request across the API, the queue and the model.",
            chunks=8,
            first_byte_delay=0.12,
        ),
        Reply(
            tool_calls=[
                {
                    "name": "web_search",
                    "arguments": json.dumps({"query": "llm latency tokens cost"}),
                }
            ],
            finish_reason="tool_calls",
        ),
        Reply(text="Latency, tokens and cost are all visible per node."),
    )


def _complete(spans: Sequence[cli_tree.SpanLike]) -> bool:
    names = [s.name for s in spans]
    return (
        sum(n.startswith("chat ") for n in names) >= 3
        and "node End" in names
        and "POST /v1/chat-messages" in names
    )


def _send_requests(base: str, console: Console) -> None:
    console.print(f"[bold]API[/]: {base}  (sending requests…)")
    status, body = post(base + "/v1/chat-messages", {"query": "What is tracing?"})
    console.print(f"  POST /v1/chat-messages → {status}, {body.count(b'data: ')} SSE events")
    status, body = post(
        base + "/v1/workflows/run", {"inputs": {"topics": ["latency", "tokens", "cost"]}}
    )
    console.print(f"  POST /v1/workflows/run → {status} {body.decode().strip()}")


@dataclass(frozen=True)
class Stage:
    """What a run sets up before the app starts."""

    broker: Broker
    workdir: Path
    live: OTLPReceiver
    ops: OTLPReceiver
    model: OpenAIServer


def _workers(stage: Stage, env: dict[str, str]) -> list[workers.Worker]:
    """The app's worker and, with a Redis, the ops_trace worker."""
    child_env = {
        **env,
        "OTEL_EXPORTER_OTLP_ENDPOINT": stage.live.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_METRIC_EXPORT_INTERVAL": "1000",
        "DIFYTRACE_DEMO_MODEL_URL": stage.model.base_url,
        "DIFYTRACE_DEMO_MODEL_KEY": stage.model.api_key,
    }
    broker = stage.broker
    procs = [
        workers.Worker("app", "difytrace.demo.tasks", broker.app_queue, stage.workdir, child_env)
    ]
    if broker.redis:
        procs.append(
            workers.Worker(
                "ops_trace",
                "difytrace.demo.ops_worker",
                broker.ops_queue,
                stage.workdir,
                {**child_env, "DIFYTRACE_ENABLED": "false"},
            )
        )
    return procs


def _exercise(stage: Stage, console: Console) -> None:
    """Start the workers and the app, send the requests, wait for every span."""
    import difytrace
    from difytrace.demo import app as demo_app
    from difytrace.demo import llm, tasks, telemetry

    broker, live, ops, model = stage.broker, stage.live, stage.ops, stage.model
    env = _environment(broker, stage.workdir, ops)
    os.environ.update(env)
    # The workers boot (seconds of imports) while this process sets itself up.
    with workers.running(_workers(stage, env), console) as ready:
        active = telemetry.setup("difytrace-demo-api", live.endpoint)
        console.print("[bold]instrumentation[/]: " + ", ".join(active))
        tasks.app.conf.update(tasks.broker_options(broker.url, broker.folder, broker.app_queue))
        llm.client(model.base_url, model.api_key)  # built before the requests, as in a server
        _script(model)
        app = demo_app.create_app((model.base_url, model.api_key))
        console.print(f"[bold]model server[/]: {model.base_url} (OpenAI-compatible)")
        ready()
        with api_server(app) as base:
            _send_requests(base, console)
            difytrace.force_flush()
            with console.status("waiting for the worker's spans…"):
                workers.poll(
                    lambda: _complete(live.spans()),
                    SPANS_TIMEOUT_S,
                    "the demo's spans did not all arrive",
                )
            if broker.redis:
                with console.status("waiting for ops_trace to deliver the records…"):
                    workers.poll(
                        lambda: len({s.trace_id for s in ops.spans()}) >= 2,
                        SPANS_TIMEOUT_S,
                        _OPS_WAIT,
                    )
    difytrace.force_flush()


def _is_ops_publish(spans: Sequence[cli_tree.SpanLike]) -> bool:
    return all(s.name.endswith("difytrace.ops_trace.deliver") for s in spans)


def _draw(live: list[Any], ops: list[Any], console: Console) -> None:
    console.print(Rule("live telemetry: what your collector receives (Flask → Celery → LLM)"))
    traces = cli_tree.group_traces(live)
    publishes = [t for t in traces.values() if _is_ops_publish(t)]
    for spans in traces.values():
        if not _is_ops_publish(spans):
            console.print(cli_tree.trace_table(spans))
    if publishes:
        console.print(
            f"(and {len(publishes)} short trace(s) of ops_trace handing its records to its queue)\n"
        )
    if ops:
        console.print(
            Rule(
                "ops_trace: the same runs as records, delivered by the worker "
                "(Langfuse and LangSmith get these)"
            )
        )
        cli_tree.draw(ops, console)
        shared = {s.trace_id for s in ops} & {s.trace_id for s in live}
        console.print(
            f"{len(shared)} ops_trace trace(s) share their trace id with the live "
            "trace: one id links Tempo/Jaeger to Langfuse."
        )


def run(out: Path, console: Console, environ: dict[str, str]) -> int:
    """Run the demo; return the exit code."""
    started = time.monotonic()
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="difytrace-demo-")))
        broker = stack.enter_context(embedded.broker(workdir, environ))
        live = stack.enter_context(OTLPReceiver())
        ops = stack.enter_context(OTLPReceiver())
        model = stack.enter_context(OpenAIServer())
        console.print(f"[bold]broker[/]: {escape(broker.note)}")
        console.print(f"[bold]OTLP receiver[/]: {live.endpoint}")
        try:
            _exercise(Stage(broker, workdir, live, ops, model), console)
        finally:
            embedded.clean(broker)
        live_spans, ops_spans = list(live.spans()), list(ops.spans())
    console.print()
    _draw(live_spans, ops_spans, console)
    path = cli_otlp_json.write([*live_spans, *ops_spans], out)
    console.print(f"[bold]OTLP/JSON[/]: {len(live_spans) + len(ops_spans)} spans written to {path}")
    from difytrace.demo.guide import print_guide

    print_guide(console)
    console.print(f"[bold]demo finished[/] in {time.monotonic() - started:.1f} s")
    return 0
