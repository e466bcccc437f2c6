"""Test helpers for code instrumented with difytrace (and the pytest plugin behind them).

Installed with difytrace, the plugin provides the ``span_capture``, ``otlp_receiver`` and
``otlp_receiver_session`` fixtures (see :mod:`difytrace.testing.plugin`; opt out with
``pytest -p no:difytrace``)::

    from difytrace.testing import S, assert_tree

    def test_chat(client, span_capture):
        client.post("/chat", json={"query": "hi"})
        assert_tree(span_capture, S("POST /chat", attrs={"http.route": "/chat"},
                                    children=[S.any_number(S("chat gpt-4o"), min=1)]))

Spans from other processes: point them at ``otlp_receiver.endpoint``
(``OTEL_EXPORTER_OTLP_ENDPOINT``) and ``otlp_receiver.wait_for(name=...)`` or
``wait_for_tree(otlp_receiver, S(...))``. Snapshots: ``normalize_trace(spans)``, the
``trace_snapshot`` fixture or ``assert_snapshot(data, path)``; ``deterministic_ids`` and
``fixed_clock`` (``use_sequential_ids()`` / ``use_clock()`` outside pytest) fix ids and times of
the spans of this process. GenAI semconv: ``assert_genai_valid(span_capture)`` against the
registry YAML shipped with the package (``genai_registry()``). Metrics:
``span_capture.metrics()`` / ``receiver.metrics()`` give one merged point per attribute set
(delta points added, the latest of each cumulative stream); ``.histogram(name, attributes)``
gives its count and sum. ``reset_configuration()`` lets ``difytrace.configure()`` run again in
the same process.
"""

from __future__ import annotations

from difytrace.testing._metrics import histogram_totals, matching, merge_points, sum_value
from difytrace.testing._model import CapturedSpan, HistogramTotals, MetricPoint
from difytrace.testing._render import render_spans
from difytrace.testing.capture import SpanCapture, install_global_capture
from difytrace.testing.clock import FakeClock, use_clock
from difytrace.testing.genai import assert_genai_valid, genai_registry
from difytrace.testing.ids import SequentialIdGenerator, use_sequential_ids
from difytrace.testing.receiver import OTLPReceiver, ReceivedRequest
from difytrace.testing.snapshot import TraceSnapshot, assert_snapshot, normalize_trace
from difytrace.testing.state import reset_configuration
from difytrace.testing.tree import Repeat, S, assert_tree, find_tree, wait_for_tree

__all__ = [
    "CapturedSpan",
    "FakeClock",
    "HistogramTotals",
    "MetricPoint",
    "OTLPReceiver",
    "ReceivedRequest",
    "Repeat",
    "S",
    "SequentialIdGenerator",
    "SpanCapture",
    "TraceSnapshot",
    "assert_genai_valid",
    "assert_snapshot",
    "assert_tree",
    "find_tree",
    "genai_registry",
    "histogram_totals",
    "install_global_capture",
    "matching",
    "merge_points",
    "normalize_trace",
    "render_spans",
    "reset_configuration",
    "sum_value",
    "use_clock",
    "use_sequential_ids",
    "wait_for_tree",
]
