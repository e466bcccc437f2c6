"""Copy me: testing your own instrumented code with the difytrace pytest plugin.

The plugin is active as soon as difytrace is installed (opt out: ``pytest -p no:difytrace``).
Run with ``pytest examples/test_difytrace_example.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys

from opentelemetry import metrics, trace

from difytrace.testing import S, assert_tree, normalize_trace

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


def test_snapshot(span_capture):
    answer("why?")
    names = [(s["name"], s["parent"]) for s in normalize_trace(span_capture.spans())["spans"]]
    assert names == [("POST /chat", None), ("retrieve", "s1"), ("chat gpt-4o", "s1")]


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
    subprocess.run([sys.executable, "-c", CHILD], env=env, check=True, timeout=60)
    (span,) = otlp_receiver.wait_for(name="child work")
    assert span.scope_name == "child"
