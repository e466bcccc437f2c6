"""`difytrace demo`, run exactly as the README writes it, with Redis unreachable."""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from difytrace.testing import OTLPReceiver

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent


README = Path(__file__).parents[2] / "README.md"
# Each would win over REDIS_URL and point the demo at a real broker.
_BROKER_VARIABLES = ("CELERY_BROKER_URL", "DIFYTRACE_OPS_TRACE_BROKER_URL")


def _readme_demo_argv() -> list[str]:
    """The demo command of the README's Quick start (its first line's last ``&&`` step), with
    ``.venv/bin/`` resolved to this interpreter's venv: the set-up steps before it are what
    created this venv."""
    section = README.read_text().split("## Quick start", 1)[1]
    first_line = section.split("```\n", 2)[1].splitlines()[0]
    argv = shlex.split(first_line.split("&&")[-1])
    assert Path(argv[0]).name == "difytrace", first_line
    assert argv[1:] == ["demo"], first_line
    return [str(BIN / "difytrace"), *argv[1:]]


@pytest.fixture(scope="module")
def demo_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess[str], Path]:
    cwd = tmp_path_factory.mktemp("demo")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    env = {
        **{k: v for k, v in os.environ.items() if k not in _BROKER_VARIABLES},
        "REDIS_URL": f"redis://127.0.0.1:{port}/0",
        "DIFYTRACE_STRICT": "1",
        "COLUMNS": "200",
    }
    try:
        proc = subprocess.run(
            _readme_demo_argv(),
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        sock.close()
    return proc, cwd / "difytrace-demo.otlp.json"


def test_demo_exits_zero_on_the_embedded_broker(
    demo_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    proc, _ = demo_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "REDIS_URL is set but its Redis does not answer" in proc.stdout
    assert "embedded Redis (fakeredis)" in proc.stdout
    assert "Traceback" not in proc.stderr
    assert re.search(r"demo finished in \d+\.\d s", proc.stdout)


def test_demo_draws_the_traces(demo_run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    out = demo_run[0].stdout
    live, _, ops = out.partition("ops_trace: the same runs as records")
    for expected in (
        "POST /v1/chat-messages",
        "POST /v1/workflows/run",
        "node Each topic",
        "├─ node Summarise",
        "chat gpt-4o-mini",
        "difytrace-demo-worker",
        "TTFT",
        "queue wait",
        "in 21 tok",
        "cost $",
        "Σ calls 2",
        "✗ search API answered 429",
    ):
        assert expected in live, expected
    for expected in (
        "research",
        "│  ├─ Summarise",
        "Plan",
        "✗ search API answered 429",
        "difytrace-ops-trace",
        "2 ops_trace trace(s) share their trace id",
    ):
        assert expected in ops, expected
    assert "where this data goes in production" in out
    assert "DIFYTRACE_OPS_TRACE_DESTINATIONS" in out


def _spans(document: dict) -> list[dict]:
    return [
        {
            **span,
            "service": next(
                a["value"]["stringValue"]
                for a in rs["resource"]["attributes"]
                if a["key"] == "service.name"
            ),
        }
        for rs in document["resourceSpans"]
        for ss in rs["scopeSpans"]
        for span in ss["spans"]
    ]


def test_demo_writes_the_flask_celery_llm_trace_as_otlp_json(
    demo_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    proc, path = demo_run
    assert str(path.name) in proc.stdout
    spans = _spans(json.loads(path.read_text()))
    by_id = {s["spanId"]: s for s in spans}
    llm = next(
        s
        for s in spans
        if s["name"].startswith("chat ") and s["service"] == "difytrace-demo-worker"
    )
    chain = [llm]
    while chain[-1].get("parentSpanId"):
        chain.append(by_id[chain[-1]["parentSpanId"]])
    kinds = [(s["kind"], s["service"]) for s in reversed(chain)]
    assert kinds[0] == (2, "difytrace-demo-api")  # SERVER: the Flask request
    assert (4, "difytrace-demo-api") in kinds  # PRODUCER: the Celery publish
    assert (5, "difytrace-demo-worker") in kinds  # CONSUMER: the task run, another process
    assert len({s["traceId"] for s in chain}) == 1
    assert all(len(s["traceId"]) == 32 and len(s["spanId"]) == 16 for s in spans)
    attrs = {a["key"]: a["value"] for a in llm["attributes"]}
    assert int(attrs["gen_ai.usage.input_tokens"]["intValue"]) > 0
    delivered = [s for s in spans if s["service"] == "difytrace-ops-trace"]
    assert {s["traceId"] for s in delivered} <= {
        s["traceId"] for s in spans if s["service"].startswith("difytrace-demo")
    }
    assert {s["name"] for s in delivered} >= {"message", "research", "Plan", "web_search"}


def test_demo_otlp_json_is_accepted_by_an_otlp_receiver(
    demo_run: tuple[subprocess.CompletedProcess[str], Path], otlp_receiver: OTLPReceiver
) -> None:
    body = demo_run[1].read_bytes()
    count = len(_spans(json.loads(body)))
    request = urllib.request.Request(
        otlp_receiver.endpoint + "/v1/traces",
        data=body,
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    received = otlp_receiver.wait_for(count=count)
    assert any(s.name == "POST /v1/workflows/run" and s.kind == "SERVER" for s in received)
