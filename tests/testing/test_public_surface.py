"""difytrace.testing is public API (users import it in their tests): pinned and documented."""

from __future__ import annotations

import inspect

import difytrace.testing
from difytrace.testing import plugin


def test_public_names_are_pinned() -> None:
    assert sorted(difytrace.testing.__all__) == [
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


def test_every_public_name_and_method_has_a_docstring() -> None:
    for name in difytrace.testing.__all__:
        obj = getattr(difytrace.testing, name)
        assert obj.__doc__, name
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if not attr.startswith("_") and callable(member):
                    assert member.__doc__, f"{name}.{attr}"


def test_plugin_docstring_documents_the_fixtures_and_the_opt_out() -> None:
    doc = plugin.__doc__ or ""
    for needle in (
        "span_capture",
        "otlp_receiver",
        "otlp_receiver_session",
        "deterministic_ids",
        "fixed_clock",
        "trace_snapshot",
        "-p no:difytrace",
        "--difytrace-update-snapshots",
    ):
        assert needle in doc
