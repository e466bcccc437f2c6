"""Nothing touches the network at import, instrument or start (a child process with
socket.connect / getaddrinfo blocked)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import socket
    attempts = []
    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network blocked by test")
    socket.socket.connect = refuse
    socket.socket.connect_ex = refuse
    socket.create_connection = refuse
    socket.getaddrinfo = refuse

    import difytrace
    from difytrace.instrumentation.llm.openai import OpenAIInstrumentor
    from difytrace.instrumentation.llm.litellm import LiteLLMInstrumentor
    from difytrace.instrumentation.llm import pricing
    from difytrace.scrub import Scrubber
    import difytrace.semconv_genai
    difytrace.configure(enabled=True, service_name="no-net", metrics_enabled=True)
    OpenAIInstrumentor().instrument()
    LiteLLMInstrumentor().instrument()
    import sys
    assert "litellm" not in sys.modules, "instrumenting must not import litellm"
    import openai
    book = pricing.PriceBook()
    assert book.rates("openai", "gpt-4o-mini") is not None
    from difytrace.instrumentation.llm.manual import llm_call
    with llm_call(provider="openai", model="gpt-4o-mini") as call:
        call.usage(input_tokens=1, output_tokens=1)
    assert attempts == [], attempts
    print("OK")
""")


def test_import_instrument_and_start_make_no_connection() -> None:
    env = {
        **os.environ,
        "DIFYTRACE_STRICT": "1",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
    }
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("OK")
