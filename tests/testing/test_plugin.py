"""The pytest plugin, driven through pytester: fixtures, strict mode, failure output, opt-out."""

from __future__ import annotations

import pytest

_PASSING = """
from opentelemetry import trace
from difytrace import _guard
from difytrace.testing import S, assert_tree


def test_capture(span_capture):
    tracer = trace.get_tracer("sample")
    with tracer.start_as_current_span("POST /chat", attributes={"http.route": "/chat"}):
        with tracer.start_as_current_span("llm"):
            pass
    assert_tree(span_capture.spans(), S("POST /chat", attrs={"http.route": "/chat"},
                                        children=[S("llm")]))


def test_cleared_between_tests(span_capture):
    assert span_capture.spans() == []


def test_strict():
    assert _guard.STRICT is True


def test_receiver(otlp_receiver):
    assert otlp_receiver.endpoint.startswith("http://127.0.0.1:")
"""

_FAILING = """
from opentelemetry import trace
from difytrace.testing import S, assert_tree


def test_tree(span_capture):
    tracer = trace.get_tracer("sample")
    with tracer.start_as_current_span("POST /chat", attributes={"http.route": "/chat"}):
        with tracer.start_as_current_span("llm", attributes={"gen_ai.request.model": "gpt-4o"}):
            pass
    assert_tree(span_capture.spans(), S("POST /chat", children=[
        S("llm", attrs={"gen_ai.request.model": "gpt-5"})]))
"""


def test_fixtures_work_in_a_user_test_file(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_sample=_PASSING)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)


def test_failure_draws_expected_and_actual_trees(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "60")  # too narrow for both trees side by side
    pytester.makepyfile(test_sample=_FAILING)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*span tree not found: 'llm': attribute 'gen_ai.request.model' is 'gpt-4o', "
            "expected 'gpt-5'*",
            "*Expected:*",
            "*POST /chat",
            "*└── llm {gen_ai.request.model='gpt-5'}*",
            "*Actual (2 span(s)):*",
            "*POST /chat ?INTERNAL? * ms*",
            "*└── llm ?INTERNAL? * ms {gen_ai.request.model='gpt-4o'}*",
        ]
    )


def test_failure_draws_the_trees_side_by_side_in_a_wide_terminal(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    pytester.makepyfile(test_sample=_FAILING)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.re_match_lines(
        [
            r"E +Expected: +│ Actual \(2 span\(s\)\):$",
            r"E +POST /chat +│   POST /chat \[INTERNAL\] [\d.]+ ms {http.route='/chat'}$",
            r"E +└── llm {gen_ai.request.model='gpt-5'} │   └── llm \[INTERNAL\] [\d.]+ ms "
            r"{gen_ai.request.model='gpt-4o'}   ✗ here$",
        ]
    )


def test_opt_out_removes_the_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_sample="def test_x(span_capture):\n    pass\n")
    result = pytester.runpytest_inprocess("-p", "no:difytrace", "-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'span_capture' not found*"])


_XDIST = """
import os
from pathlib import Path

import pytest
from opentelemetry import trace

OUT = Path(os.environ["TK_OUT"])


@pytest.mark.parametrize("n", range(4))
def test_worker(n, span_capture, otlp_receiver, otlp_receiver_session):
    with trace.get_tracer("x").start_as_current_span(f"span-{n}"):
        pass
    assert [s.name for s in span_capture.spans()] == [f"span-{n}"]
    worker = os.environ["PYTEST_XDIST_WORKER"]
    (OUT / f"{worker}-{n}").write_text(otlp_receiver_session.endpoint)
    assert os.environ["DIFYTRACE_STRICT"] == "1"
"""


def test_parallel_under_xdist(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    out = pytester.mkdir("out")
    monkeypatch.setenv("TK_OUT", str(out))
    pytester.makepyfile(test_sample=_XDIST)
    # Unrelated plugins are switched off only to start the three processes faster.
    quiet = ("-p", "no:langsmith_plugin", "-p", "no:hypothesispytest", "-p", "no:anyio")
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider", *quiet)
    result.assert_outcomes(passed=4)
    endpoints: dict[str, set[str]] = {}
    for path in out.iterdir():
        endpoints.setdefault(path.name.split("-")[0], set()).add(path.read_text())
    assert len(endpoints) == 2, endpoints
    per_worker = [next(iter(e)) for e in endpoints.values()]
    assert all(len(e) == 1 for e in endpoints.values())
    assert per_worker[0] != per_worker[1]
