"""Test helpers for code instrumented with difytrace (and the pytest plugin behind them).

Installed with difytrace, the plugin provides the ``span_capture`` and ``otlp_receiver``
fixtures (see :mod:`difytrace.testing.plugin`; opt out with ``-p no:difytrace``)::

    from difytrace.testing import S, assert_tree

    def test_chat(client, span_capture):
        client.post("/chat", json={"query": "hi"})
        assert_tree(span_capture.spans(), S("POST /chat", attrs={"http.route": "/chat"},
                                            children=[S.any_number(S("chat gpt-4o"), min=1)]))

Metric points from :meth:`SpanCapture.metrics` and :meth:`OTLPReceiver.metrics` are merged to
one point per attribute set (delta points added, the latest of each cumulative stream).
"""

from __future__ import annotations

from difytrace.testing._metrics import histogram_totals, matching, merge_points, sum_value
from difytrace.testing._model import CapturedSpan, HistogramTotals, MetricPoint
from difytrace.testing._render import render_spans
from difytrace.testing.capture import SpanCapture, install_global_capture
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
    "assert_tree",
    "find_tree",
    "histogram_totals",
    "install_global_capture",
    "matching",
    "merge_points",
    "normalize_trace",
    "render_spans",
    "reset_configuration",
    "sum_value",
]
