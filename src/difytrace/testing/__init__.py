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
(``OTEL_EXPORTER_OTLP_ENDPOINT``) and ``otlp_receiver.wait_for(name=...)``. Snapshots:
``normalize_trace(spans)``. Metrics: ``span_capture.metrics()`` / ``receiver.metrics()`` give
one merged point per attribute set (delta points added, the latest of each cumulative
stream); ``.histogram(name, attributes)`` gives its count and sum. ``reset_configuration()``
lets ``difytrace.configure()`` run again in the same process.
"""

from __future__ import annotations

from difytrace.testing._metrics import histogram_totals, matching, merge_points, sum_value
from difytrace.testing._model import CapturedSpan, HistogramTotals, MetricPoint
from difytrace.testing._render import render_spans
from difytrace.testing.capture import SpanCapture, install_global_capture
from difytrace.testing.genai import assert_genai_valid, genai_registry
from difytrace.testing.receiver import OTLPReceiver, ReceivedRequest
from difytrace.testing.snapshot import normalize_trace
from difytrace.testing.state import reset_configuration
from difytrace.testing.tree import Repeat, S, assert_tree, find_tree

__all__ = [
    "CapturedSpan",
    "HistogramTotals",
    "MetricPoint",
    "OTLPReceiver",
    "ReceivedRequest",
    "Repeat",
    "S",
    "SpanCapture",
    "assert_genai_valid",
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
]
