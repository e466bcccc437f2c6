"""Issue #6: a whole Flask → Celery → LLM trace across processes, asserted in one statement.

The API runs in gunicorn (gevent workers), the LLM node in a Celery worker calling the real
OpenAI SDK against the plugin's model server, both under ``opentelemetry-instrument`` and
exporting to the plugin's OTLP receiver in this test process.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from difytrace import semconv
from difytrace.testing import OTLPReceiver, S, assert_tree
from difytrace.testing.openai_server import OpenAIServer
from tests.integration._procs import free_port, start, wait_for_port
from tests.integration.test_e2e_processes import _assert_clean_exit, _post

pytestmark = pytest.mark.integration


def test_flask_celery_llm_is_one_trace(
    otlp_receiver: OTLPReceiver, openai_server: OpenAIServer, tmp_path: Path
) -> None:
    queue = f"e2e-llm-{uuid.uuid4().hex[:8]}"
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "E2E_BROKER": "redis://127.0.0.1:6379/14",
        "E2E_QUEUE": queue,
        "E2E_OPENAI_BASE_URL": openai_server.base_url,
        "E2E_OPENAI_API_KEY": openai_server.api_key,
    }
    worker = start(
        [
            "celery",
            "-A",
            "e2e_app:celery",
            "worker",
            "-P",
            "prefork",
            "-c",
            "1",
            "-Q",
            queue,
            "-n",
            f"{queue}@%h",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-l",
            "INFO",
        ],
        env={**env, "OTEL_SERVICE_NAME": "e2e-worker"},
        log=tmp_path / "worker.log",
    )
    api = None
    try:
        worker.wait_for_output("ready.")
        port = free_port()
        api = start(
            ["gunicorn", "-k", "gevent", "-w", "1", "-b", f"127.0.0.1:{port}", "e2e_app:app"],
            env={**env, "OTEL_SERVICE_NAME": "e2e-api"},
            log=tmp_path / "api.log",
        )
        wait_for_port(port)
        _post(port, "/apps/app-7/workflows/run")
        otlp_receiver.wait_for(predicate=lambda s: s.kind == "CLIENT", timeout=30)
        otlp_receiver.wait_for(count=4, timeout=30)

        assert_tree(
            otlp_receiver,
            S(
                "POST /apps/<app_id>/workflows/run",
                kind="SERVER",
                children=[
                    S(
                        "send e2e.llm_node",
                        kind="PRODUCER",
                        children=[
                            S(
                                "process e2e.llm_node",
                                kind="CONSUMER",
                                attrs={semconv.APP_ID: "app-7"},
                                children=[
                                    S(
                                        "chat gpt-4o-mini",
                                        kind="CLIENT",
                                        attrs={
                                            "gen_ai.operation.name": "chat",
                                            "gen_ai.request.model": "gpt-4o-mini",
                                            "gen_ai.usage.input_tokens": lambda v: v > 0,
                                        },
                                    ),
                                ],
                            ),
                        ],
                    ),
                ],
            ),
        )
        _assert_clean_exit(api)
        _assert_clean_exit(worker)
    finally:
        for proc in (api, worker):
            if proc is not None and proc.popen.poll() is None:
                proc.popen.kill()
                proc.popen.wait()
