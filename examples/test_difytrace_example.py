"""Copy me: testing your own instrumented code with the difytrace pytest plugin.

The plugin is active as soon as difytrace is installed (opt out: ``pytest -p no:difytrace``).
Run with ``pytest examples/test_difytrace_example.py``; the snapshot test writes
``examples/snapshots/test_difytrace_example/test_snapshot.json`` on its first run (commit it;
``pytest --difytrace-update-snapshots`` rewrites it after an intended change).
"""

from __future__ import annotations

import os
import subprocess
import sys

from opentelemetry import metrics, trace

from difytrace import llm_call
from difytrace.testing import S, assert_genai_valid, assert_tree, wait_for_tree

tracer = trace.get_tracer("my_app")
latency = metrics.get_meter("my_app").create_histogram("my_app.llm.duration", unit="s")


def answer(question: str) -> str:
    """Stand-in for your app code: one request span with a retrieval and an LLM call."""
    with tracer.start_as_current_span("POST /chat", attributes={"http.route": "/chat"}):
        with tracer.start_as_current_span("retrieve", attributes={"k": 3}):
            pass
        with tracer.start_as_current_span(
            "chat gpt-4o", attributes={"gen_ai.request.model": "gpt-4o"}
        ):
            latency.record(0.42, {"gen_ai.request.model": "gpt-4o"})
    return "42"


def test_spans_form_the_expected_tree(span_capture):
    answer("why?")
    assert_tree(
        span_capture.spans(),
        S(
            "POST /chat",
            attrs={"http.route": "/chat"},
            children=[
                S("retrieve"),
                S.any_number(S("chat gpt-4o", attrs={"gen_ai.request.model": "gpt-4o"}), min=1),
            ],
        ),
    )


def test_metrics(span_capture):
    answer("why?")
    totals = span_capture.histogram("my_app.llm.duration", {"gen_ai.request.model": "gpt-4o"})
    assert totals.count == 1


def test_snapshot(span_capture, trace_snapshot):
    answer("why?")
    trace_snapshot(span_capture)  # ids and times normalised: stable from run to run


def test_fixed_ids_and_clock(span_capture, deterministic_ids, fixed_clock):
    with tracer.start_as_current_span("nightly job"):
        fixed_clock.advance(90)  # pretend the job took a minute and a half
    (span,) = span_capture.spans()
    assert span.trace_id == "00000000000000000000000000000001"
    assert span.start_time_ns == 1_735_689_600_000_000_000  # 2025-01-01T00:00:00Z
    assert span.duration_s == 90.001  # the clock also moves 1 ms per reading


def test_llm_span_follows_the_genai_conventions(span_capture):
    with llm_call(
        provider="openai", model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
    ) as call:
        call.chunk("hello")
        call.usage(input_tokens=12, output_tokens=3)
    assert assert_genai_valid(span_capture) == 1  # spans and gen_ai.* metrics, by the registry


CHILD = """
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter()))
with provider.get_tracer("child").start_as_current_span("child work"):
    pass
"""


def test_spans_from_another_process(otlp_receiver):
    env = {
        **os.environ,
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.endpoint,
        "DIFYTRACE_STRICT": "1",
    }
    child = subprocess.Popen([sys.executable, "-c", CHILD], env=env)
    try:
        # Polls until the tree is there (or fails after 60 s, drawing what did arrive).
        span = wait_for_tree(otlp_receiver, S("child work"), timeout=60)
    finally:
        assert child.wait(timeout=60) == 0
    assert span.scope_name == "child"
