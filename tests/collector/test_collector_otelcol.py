"""With a real otelcol-contrib binary (``OTELCOL_BIN``, v0.159.0): ``validate`` every profile,
then run each one: OTLP in → file / OTLP out, checking scrubbing, sampling and routing.

Network exporters are pointed at local sinks by an overlay config (``--config`` twice; the
collector merges maps and replaces lists): the tracing backend at the test's OTLP receiver,
everything else at ``file`` exporters in a temporary directory.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from collector_support import COLLECTOR, PROFILES

OTELCOL = os.environ.get("OTELCOL_BIN", "")
pytestmark = pytest.mark.skipif(
    not OTELCOL, reason="OTELCOL_BIN not set (otelcol-contrib v0.159.0 binary needed)"
)
SECRET = "Bearer abcdefgh12345678secret"


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(tmp: Path, backend: str) -> dict[str, str]:
    ports = {name: _port() for name in ("http", "grpc", "health", "telemetry", "prom")}
    env = {
        **os.environ,
        "DIFYTRACE_TRACES_BACKEND_ENDPOINT": backend,
        "LANGFUSE_HOST": "http://127.0.0.1:9",
        "LANGFUSE_BASIC_AUTH": "dGVzdDp0ZXN0",
        "DIFYTRACE_QUEUE_DIR": str(tmp / "queue"),
        "DIFYTRACE_GATEWAY_HOST": "localhost",
        "DIFYTRACE_GATEWAY_INSECURE": "true",
        "DIFYTRACE_COLLECTOR_TELEMETRY_PORT": str(ports["telemetry"]),
        "DIFYTRACE_PROMETHEUS_ENDPOINT": f"127.0.0.1:{ports['prom']}",
    }
    for prefix in ("DIFYTRACE_AGENT_", "DIFYTRACE_GATEWAY_", "DIFYTRACE_"):
        env[f"{prefix}OTLP_HTTP_ENDPOINT"] = f"127.0.0.1:{ports['http']}"
        env[f"{prefix}OTLP_GRPC_ENDPOINT"] = f"127.0.0.1:{ports['grpc']}"
        env[f"{prefix}HEALTH_ENDPOINT"] = f"127.0.0.1:{ports['health']}"
    env["_PORTS"] = json.dumps(ports)
    return env


def _overlay(profile: str, tmp: Path) -> dict[str, Any]:
    files = {name: {"path": str(tmp / f"{name}.jsonl")} for name in ("traces", "langfuse")}
    files["metrics"] = {"path": str(tmp / "metrics.jsonl")}
    exporters = {f"file/{name}": cfg for name, cfg in files.items()}
    if profile == "agent":
        pipelines = {
            "traces": {"exporters": ["span_metrics", "file/traces"]},
            "metrics": {"exporters": ["file/metrics"]},
        }
        fast = {"connectors": {"span_metrics": {"metrics_flush_interval": "1s"}}}
    else:
        pipelines = {"traces/langfuse": {"exporters": ["file/langfuse"]}}
        exporters.pop("file/traces")
        exporters.pop("file/metrics")
        fast = {"processors": {"tail_sampling": {"decision_wait": "1s"}}}
        if profile == "single-node":
            fast["connectors"] = {"span_metrics": {"metrics_flush_interval": "1s"}}
    return {"exporters": exporters, "service": {"pipelines": pipelines}, **fast}


@pytest.mark.parametrize("profile", PROFILES)
def test_otelcol_validate(profile: str, tmp_path: Path) -> None:
    env = _env(tmp_path, "http://127.0.0.1:9")
    proc = subprocess.run(
        [OTELCOL, "validate", f"--config={COLLECTOR / f'{profile}.yaml'}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _poll(what: str, check: Callable[[], Any], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)
    return value


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as resp:
            return resp.status == 200
    except OSError:
        return False


@pytest.fixture
def collector(
    request: pytest.FixtureRequest, tmp_path: Path, otlp_receiver: Any
) -> Iterator[dict[str, Any]]:
    profile = request.param
    env = _env(tmp_path, otlp_receiver.endpoint)
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(yaml.safe_dump(_overlay(profile, tmp_path)))
    log = (tmp_path / "otelcol.log").open("wb")
    proc = subprocess.Popen(
        [OTELCOL, f"--config={COLLECTOR / f'{profile}.yaml'}", f"--config={overlay}"],
        env=env,
        stdout=log,
        stderr=log,
    )
    ports = json.loads(env["_PORTS"])
    try:
        _poll("collector healthy", lambda: proc.poll() is None and _healthy(ports["health"]))
        yield {"profile": profile, "ports": ports, "tmp": tmp_path, "receiver": otlp_receiver}
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


def _send(http_port: int) -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.trace import Status, StatusCode

    provider = TracerProvider(resource=Resource.create({"service.name": "otelcol-test"}))
    exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{http_port}/v1/traces")
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("otelcol-test")
    with tracer.start_as_current_span("chat gpt-4o-mini") as span:
        span.set_attribute("gen_ai.operation.name", "chat")
        span.set_attribute("gen_ai.request.model", "gpt-4o-mini")
        span.set_attribute("gen_ai.input.messages", '[{"role":"user","content":"my secret plan"}]')
        span.set_attribute("http.request.header.authorization", SECRET)
    with tracer.start_as_current_span("GET /fail") as span:
        span.set_status(Status(StatusCode.ERROR, "boom"))
    provider.shutdown()


def _file_spans(path: Path) -> dict[str, dict[str, Any]]:
    spans: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return spans
    for line in path.read_text().splitlines():
        for rs in json.loads(line).get("resourceSpans", []):
            for ss in rs.get("scopeSpans", []):
                for span in ss.get("spans", []):
                    attrs = {a["key"]: next(iter(a["value"].values())) for a in span["attributes"]}
                    spans[span["name"]] = attrs
    return spans


def _check_scrubbed(attrs: dict[str, Any]) -> None:
    assert "gen_ai.input.messages" not in attrs
    assert attrs["gen_ai.request.model"] == "gpt-4o-mini"
    assert SECRET not in json.dumps(attrs)


@pytest.mark.parametrize("collector", PROFILES, indirect=True)
def test_otelcol_behaviour(collector: dict[str, Any]) -> None:
    profile, tmp = collector["profile"], collector["tmp"]
    _send(collector["ports"]["http"])
    if profile == "agent":
        spans = _poll(
            "agent output", lambda: (s := _file_spans(tmp / "traces.jsonl")) and len(s) >= 2 and s
        )
        _check_scrubbed(spans["chat gpt-4o-mini"])
        _poll(
            "span metrics",
            lambda: (
                "traces.span.metrics.calls"
                in ((tmp / "metrics.jsonl").read_text() if (tmp / "metrics.jsonl").exists() else "")
            ),
        )
        return
    receiver = collector["receiver"]
    receiver.wait_for(name="GET /fail", timeout=30)  # errors are always kept
    langfuse = _poll("langfuse output", lambda: _file_spans(tmp / "langfuse.jsonl"))
    assert set(langfuse) == {"chat gpt-4o-mini"}  # GenAI spans only
    if profile == "single-node":
        _check_scrubbed(langfuse["chat gpt-4o-mini"])
