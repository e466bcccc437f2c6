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
from tests.integration._procs import free_port
from tests.integration.test_e2e_processes import _assert_clean_exit, _gunicorn, _post, _worker

pytestmark = pytest.mark.integration


def test_flask_celery_llm_is_one_trace(
    otlp_receiver: OTLPReceiver, openai_server: OpenAIServer, tmp_path: Path
) -> None:
    queue = f"e2e-llm-{uuid.uuid4().hex[:8]}"
    model = {
        "E2E_OPENAI_BASE_URL": openai_server.base_url,
        "E2E_OPENAI_API_KEY": openai_server.api_key,
    }
    worker = _worker(otlp_receiver, tmp_path, "prefork", queue, **model)
    port = free_port()
    api = None
    try:
        api = _gunicorn(otlp_receiver, tmp_path, port, queue, **model)
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
