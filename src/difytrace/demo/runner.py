"""Runs the demo end to end: receiver, model server, API, a real Celery worker process,
a few requests; then draws the traces and writes them as OTLP/JSON."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from difytrace import cli_otlp_json, cli_tree
from difytrace.testing.receiver import OTLPReceiver

WORKER_START_TIMEOUT_S = 30.0
SPANS_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class Broker:
    """The Celery broker the demo uses and why."""

    url: str
    folder: str | None
    note: str


def reachable(url: str, timeout: float = 0.5) -> bool:
    """Whether a TCP connection to the URL's host and port opens within ``timeout``."""
    parts = urllib.parse.urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or 6379), timeout=timeout
        ):
            return True
    except OSError:
        return False


def choose_broker(workdir: Path, environ: dict[str, str]) -> Broker:
    """Redis from CELERY_BROKER_URL / REDIS_URL when it answers, else the embedded broker."""
    for var in ("CELERY_BROKER_URL", "REDIS_URL"):
        url = environ.get(var, "")
        if url.startswith(("redis://", "rediss://")):
            if reachable(url):
                return Broker(url, None, f"Redis from {var}")
            embedded = _embedded(workdir)
            return Broker(
                embedded.url,
                embedded.folder,
                f"{var} is set but its Redis does not answer; using the embedded broker",
            )
    return _embedded(workdir)


def _embedded(workdir: Path) -> Broker:
    folder = workdir / "broker"
    (folder / "control").mkdir(parents=True, exist_ok=True)
    return Broker("filesystem://", str(folder), f"embedded filesystem broker in {folder}")


@contextmanager
def worker_process(
    broker: Broker, endpoint: str, workdir: Path, console: Console
) -> Iterator[subprocess.Popen[bytes]]:
    """A real Celery worker in its own process, configured by ``difytrace.configure()``."""
    ready = workdir / "worker.ready"
    env = {
        **os.environ,
        "DIFYTRACE_DEMO_BROKER_URL": broker.url,
        "DIFYTRACE_DEMO_BROKER_DIR": broker.folder or "",
        "DIFYTRACE_DEMO_READY_FILE": str(ready),
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_METRIC_EXPORT_INTERVAL": "1000",
    }
    for var in (
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
        "OTLP_TRACE_ENDPOINT",
        "OTLP_METRIC_ENDPOINT",
        "OTEL_TRACES_EXPORTER",
        "DIFYTRACE_EXPORTER",
    ):
        env.pop(var, None)
    log = (workdir / "worker.log").open("wb")
    cmd = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "difytrace.demo.tasks",
        "worker",
        "-P",
        "solo",
        "-c",
        "1",
        "-Q",
        "difytrace_demo",
        "--without-mingle",
        "--without-gossip",
        "--without-heartbeat",
        "-l",
        "WARNING",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        with console.status("starting the Celery worker…"):
            _poll(
                lambda: ready.exists() or proc.poll() is not None,
                WORKER_START_TIMEOUT_S,
                "the Celery worker did not start",
            )
        if proc.poll() is not None:
            raise RuntimeError("the Celery worker exited: " + _tail(workdir / "worker.log"))
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _tail(path: Path, lines: int = 5) -> str:
    return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])


def _poll(done: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout:.0f}s")
        time.sleep(0.05)


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


def post(url: str, payload: dict[str, Any]) -> tuple[int, bytes]:
    """POST JSON; return status and the whole body (an SSE stream is read to its end)."""
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        method="POST",
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=20) as response:
        return response.status, response.read()


def _complete(spans: Sequence[cli_tree.SpanLike]) -> bool:
    names = [s.name for s in spans]
    return (
        any(n.startswith("node Web search") for n in names)
        and sum(n.startswith("chat ") for n in names) >= 2
        and any(n == "POST /v1/chat-messages" for n in names)
    )


def run(out: Path, console: Console, environ: dict[str, str]) -> int:
    """Run the demo; return the exit code."""
    with tempfile.TemporaryDirectory(prefix="difytrace-demo-") as tmp:
        workdir = Path(tmp)
        broker = choose_broker(workdir, environ)
        os.environ["DIFYTRACE_DEMO_BROKER_URL"] = broker.url
        os.environ["DIFYTRACE_DEMO_BROKER_DIR"] = broker.folder or ""
        with OTLPReceiver() as receiver:
            console.print(f"[bold]broker[/]: {broker.note}")
            console.print(f"[bold]OTLP receiver[/]: {receiver.endpoint}")
            spans = _exercise(receiver, broker, workdir, console)
    console.print()
    cli_tree.draw(spans, console)
    path = cli_otlp_json.write(spans, out)
    console.print(f"[bold]OTLP/JSON[/]: {len(spans)} spans written to {path}")
    return 0


def _exercise(receiver: OTLPReceiver, broker: Broker, workdir: Path, console: Console) -> list[Any]:
    """Start the app and the worker, send the requests, return every span received."""
    import difytrace
    from difytrace.demo import app as demo_app
    from difytrace.demo import tasks, telemetry
    from difytrace.demo.model_server import ModelServer

    active = telemetry.setup("difytrace-demo-api", receiver.endpoint)
    import openai  # noqa: F401 - imported before the requests so they do not pay for it

    console.print("[bold]instrumentation[/]: " + (", ".join(active) or "demo's own spans"))
    tasks.app.conf.update(tasks.broker_options(broker.url, broker.folder))
    with ModelServer() as model, worker_process(broker, receiver.endpoint, workdir, console):
        app = demo_app.create_app(
            model.base_url,
            manual_flask="difytrace_flask" not in active,
            manual_celery="difytrace_celery" not in active,
        )
        console.print(f"[bold]model server[/]: {model.base_url}")
        with api_server(app) as base:
            _send_requests(base, console)
            difytrace.force_flush()
            with console.status("waiting for the worker's spans…"):
                _poll(
                    lambda: _complete(receiver.spans()),
                    SPANS_TIMEOUT_S,
                    "the demo's spans did not all arrive",
                )
    difytrace.force_flush()
    return list(receiver.spans())


def _send_requests(base: str, console: Console) -> None:
    console.print(f"[bold]API[/]: {base}  (sending requests…)")
    status, body = post(base + "/v1/chat-messages", {"query": "What is tracing?"})
    console.print(f"  POST /v1/chat-messages → {status}, {body.count(b'data: ')} SSE events")
    status, body = post(
        base + "/v1/workflows/run", {"inputs": {"topics": ["latency", "tokens", "cost"]}}
    )
    console.print(f"  POST /v1/workflows/run → {status} {body.decode().strip()}")
