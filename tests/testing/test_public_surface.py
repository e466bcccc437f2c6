"""difytrace.testing is public API (users import it in their tests): pinned, documented with an
example on every public name, method and fixture, and the doctest examples run."""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil
import re
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

import difytrace.testing
from difytrace.testing import openai_server, plugin, vendors

FIXTURES = (
    "span_capture",
    "otlp_receiver",
    "otlp_receiver_session",
    "openai_server",
    "fake_langfuse",
    "fake_langsmith",
    "deterministic_ids",
    "fixed_clock",
    "trace_snapshot",
)


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


def _public_objects() -> Iterator[tuple[str, Any]]:
    """Every public name of difytrace.testing and of the fake servers, their public methods
    and properties, and the fixtures of the plugin."""
    names = [
        (f"difytrace.testing.{n}", getattr(difytrace.testing, n)) for n in difytrace.testing.__all__
    ]
    for module in (openai_server, vendors):
        names += [
            (f"{module.__name__}.{n}", obj)
            for n, obj in vars(module).items()
            if not n.startswith("_")
            and (inspect.isclass(obj) or inspect.isfunction(obj))
            and (n in getattr(module, "__all__", ()) or obj.__module__ == module.__name__)
            and n not in FIXTURES
        ]
    for name, obj in names:
        yield name, obj
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if attr.startswith("_"):
                    continue
                target = (
                    member.__func__ if isinstance(member, staticmethod | classmethod) else member
                )
                if callable(target) or isinstance(target, property):
                    yield f"{name}.{attr}", target
    for fixture in FIXTURES:
        yield f"fixture {fixture}", getattr(plugin, fixture)


def _has_example(doc: str | None) -> bool:
    """A doctest, or a literal block introduced by "Example::" / "Example (what it shows)::"."""
    if not doc:
        return False
    return ">>>" in doc or re.search(r"Example[^\n]*::\n", doc) is not None


def test_every_public_name_method_and_fixture_has_a_docstring_with_an_example() -> None:
    objects = dict(_public_objects())
    assert len(objects) > 80  # the walk does reach the methods
    missing = [name for name, obj in objects.items() if not _has_example(obj.__doc__)]
    assert missing == [], f"{len(missing)} public object(s) without an example: {missing}"


def test_the_walk_notices_a_missing_example() -> None:
    def documented_without_example() -> None:
        """Does something."""

    assert not _has_example(documented_without_example.__doc__)
    assert _has_example("Run it.\n\n>>> 1 + 1\n2\n")
    assert _has_example("Example::\n\n    client.post('/chat')\n")
    assert _has_example("Example (a gunicorn server)::\n\n    ...\n")
    assert not _has_example("Examples of spans: a, b::c")


def _testing_modules() -> list[ModuleType]:
    found = pkgutil.walk_packages(difytrace.testing.__path__, "difytrace.testing.")
    return [importlib.import_module(info.name) for info in found]


@pytest.mark.parametrize("module", _testing_modules(), ids=lambda m: m.__name__.rsplit(".", 1)[1])
def test_doctest_examples_run(module: ModuleType, span_capture: object) -> None:
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report: list[str] = []
    for test in finder.find(module, module.__name__):
        runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)


def test_plugin_docstring_documents_the_fixtures_and_the_opt_out() -> None:
    doc = plugin.__doc__ or ""
    for needle in (*FIXTURES, "-p no:difytrace", "--difytrace-update-snapshots"):
        assert needle in doc
