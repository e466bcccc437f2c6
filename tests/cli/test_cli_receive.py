"""`difytrace receive`: spans sent by the real OTLP/HTTP exporter are drawn and written."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

BIN = Path(sys.executable).parent


def _start(*args: str) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "DIFYTRACE_STRICT": "1", "PYTHONUNBUFFERED": "1", "COLUMNS": "250"}
    proc = subprocess.Popen(
        [str(BIN / "difytrace"), "receive", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", first)
    if match is None:
        proc.kill()
        pytest.fail(f"no listening line: {first!r} {proc.communicate()}")
    return proc, match.group(1)


def _send(endpoint: str) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": "sender"}))
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint + "/v1/traces"))
    )
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("POST /chat", kind=SpanKind.SERVER) as server:
        server.set_attribute("http.response.status_code", 200)
        with tracer.start_as_current_span("chat gpt-4o", kind=SpanKind.CLIENT) as llm:
            llm.set_attribute("gen_ai.usage.input_tokens", 12)
            llm.set_attribute("gen_ai.usage.output_tokens", 34)
        with tracer.start_as_current_span("tool search") as tool:
            tool.set_status(Status(StatusCode.ERROR, "timed out"))
    provider.shutdown()


def test_receive_draws_spans_from_a_real_exporter(tmp_path: Path) -> None:
    out = tmp_path / "received.otlp.json"
    proc, endpoint = _start("--json", str(out), "--max-traces", "1", "--settle", "0.3")
    try:
        _send(endpoint)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert re.search(r"POST /chat\s+sender", stdout), stdout
    assert re.search(r"├─ chat gpt-4o\s+sender", stdout), stdout
    assert re.search(r"└─ tool search\s+sender", stdout), stdout
    assert "in 12 tok · out 34 tok" in stdout
    assert "✗ timed out" in stdout
    document = json.loads(out.read_text())
    names = {
        s["name"]
        for rs in document["resourceSpans"]
        for ss in rs["scopeSpans"]
        for s in ss["spans"]
    }
    assert names == {"POST /chat", "chat gpt-4o", "tool search"}


def test_receive_port_in_use_is_one_line_error() -> None:
    proc, endpoint = _start("--max-traces", "1")
    try:
        port = endpoint.rsplit(":", 1)[1]
        second = subprocess.run(
            [str(BIN / "difytrace"), "receive", "--port", port],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    finally:
        proc.kill()
        proc.communicate()
    assert second.returncode != 0
    assert second.stderr.strip().count("\n") == 0, second.stderr
    assert second.stderr.startswith("difytrace: error:")
