"""assert_tree / find_tree on spans from the real SDK (the plugin's span_capture)."""

from __future__ import annotations

import re
import threading
from unittest import mock

import pytest
from opentelemetry import trace

from difytrace.testing import CapturedSpan, S, SpanCapture, assert_tree, find_tree, wait_for_tree

tracer = trace.get_tracer("tests.tree")


def _chat(*children: str, route: str = "/chat") -> None:
    with tracer.start_as_current_span("POST /chat", attributes={"http.route": route}):
        for name in children:
            with tracer.start_as_current_span(name, attributes={"n": name}):
                pass


@pytest.fixture
def spans(span_capture: SpanCapture) -> list[CapturedSpan]:
    _chat("retrieve", "llm", "llm", "tool")
    return span_capture.spans()


def test_subset_of_attributes_and_children_in_any_order(spans: list[CapturedSpan]) -> None:
    root = assert_tree(
        spans, S("POST /chat", attrs={"http.route": "/chat"}, children=[S("tool"), S("retrieve")])
    )
    assert root.name == "POST /chat"


def test_value_matchers(spans: list[CapturedSpan]) -> None:
    assert_tree(
        spans,
        S(
            re.compile("POST /.*"),
            attrs={"http.route": re.compile("/c.at")},
            children=[S("llm", attrs={"n": mock.ANY})],
        ),
    )
    assert_tree(spans, S("POST /chat", attrs={"http.route": lambda v: v.startswith("/")}))
    assert find_tree(spans, S("POST /chat", attrs={"http.route": lambda v: False})) is None


def test_each_expected_child_needs_its_own_span(spans: list[CapturedSpan]) -> None:
    assert_tree(spans, S("POST /chat", children=[S("llm"), S("llm")]))
    assert find_tree(spans, S("POST /chat", children=[S("llm"), S("llm"), S("llm")])) is None


def test_any_number_with_bounds(spans: list[CapturedSpan]) -> None:
    assert_tree(spans, S("POST /chat", children=[S.any_number(S("llm"), min=2, max=2)]))
    assert_tree(spans, S("POST /chat", children=[S.any_number(S("db"))]))
    assert find_tree(spans, S("POST /chat", children=[S.any_number(S("llm"), min=3)])) is None
    # Unordered, every matching child counts: max is a real bound even without exact=True.
    assert find_tree(spans, S("POST /chat", children=[S.any_number(S("llm"), max=1)])) is None
    # ... except the children a plain expected node takes.
    assert_tree(spans, S("POST /chat", children=[S("llm"), S.any_number(S("llm"), max=1)]))


def test_overlapping_repeats_share_children(spans: list[CapturedSpan]) -> None:
    anything = S.any_number(S(re.compile(".*")), min=2)
    assert_tree(spans, S("POST /chat", children=[S.any_number(S("llm"), min=1), anything]))
    assert (
        find_tree(
            spans,
            S(
                "POST /chat",
                children=[S.any_number(S("llm"), min=2), S.any_number(S(re.compile(".*")), min=3)],
            ),
        )
        is None
    )


def test_exact_rejects_unexpected_children(spans: list[CapturedSpan]) -> None:
    complete = [S("retrieve"), S.any_number(S("llm"), min=1), S("tool")]
    assert_tree(spans, S("POST /chat", children=complete, exact=True))
    assert find_tree(spans, S("POST /chat", children=complete[:2], exact=True)) is None
    assert find_tree(spans, S("POST /chat", children=complete[:2]), exact=True) is None
    assert find_tree(spans, S("llm"), exact=True) is not None  # leaf: no children either way


def test_ordered_follows_start_times(spans: list[CapturedSpan]) -> None:
    assert_tree(spans, S("POST /chat", children=[S("retrieve"), S("tool")], ordered=True))
    assert (
        find_tree(spans, S("POST /chat", children=[S("tool"), S("retrieve")]), ordered=True) is None
    )
    in_order = [S("retrieve"), S.any_number(S("llm")), S("tool")]
    assert_tree(spans, S("POST /chat", children=in_order, ordered=True, exact=True))
    assert (
        find_tree(
            spans, S("POST /chat", children=[S("retrieve"), S("tool")], ordered=True, exact=True)
        )
        is None
    )


def test_matches_under_any_root_at_any_depth(span_capture: SpanCapture) -> None:
    with tracer.start_as_current_span("celery.run"):
        _chat("llm")
    _chat("tool", route="/other")
    spans = span_capture.spans()
    assert_tree(spans, S("POST /chat", attrs={"http.route": "/chat"}, children=[S("llm")]))
    assert_tree(spans, S("POST /chat", attrs={"http.route": "/other"}, children=[S("tool")]))
    assert_tree(spans, S("celery.run", children=[S("POST /chat", children=[S("llm")])]))


def test_kind_and_status(span_capture: SpanCapture) -> None:
    with tracer.start_as_current_span("srv", kind=trace.SpanKind.SERVER) as span:
        span.set_status(trace.Status(trace.StatusCode.ERROR, "x"))
    spans = span_capture.spans()
    assert_tree(spans, S("srv", kind="SERVER", status="ERROR"))
    assert find_tree(spans, S("srv", kind="client")) is None


@pytest.fixture
def narrow(monkeypatch: pytest.MonkeyPatch) -> None:
    """A terminal too narrow for the two trees side by side."""
    monkeypatch.setenv("COLUMNS", "40")


@pytest.mark.usefixtures("narrow")
def test_failure_message_draws_both_trees(spans: list[CapturedSpan]) -> None:
    with pytest.raises(AssertionError) as info:
        assert_tree(
            spans,
            S(
                "POST /chat",
                children=[S.any_number(S("llm"), min=3), S("tool", attrs={"n": "tool"})],
            ),
        )
    text = str(info.value)
    assert "'POST /chat': expected 3+ child(ren) like 'llm', found 2" in text
    expected, actual = text.split("Actual (5 span(s)):")
    assert "  POST /chat\n  ├── <3..∞ of> llm\n  └── tool {n='tool'}" in expected
    assert re.search(
        r"  POST /chat \[INTERNAL\] \d+\.\d ms {http.route='/chat'}   ✗ here\n"
        r"  ├── retrieve \[INTERNAL\] \d+\.\d ms {n='retrieve'}\n",
        actual,
    )
    assert "  └── tool [INTERNAL]" in actual
    assert actual.count("✗ here") == 1


def test_failure_marks_the_span_to_blame(spans: list[CapturedSpan]) -> None:
    with pytest.raises(AssertionError) as info:
        assert_tree(spans, S("POST /chat", children=[S("tool", attrs={"n": "x"})]))
    assert re.search(r"└── tool \[INTERNAL\] \d+\.\d ms {n='tool'}   ✗ here$", str(info.value))


def test_span_sources_and_hashing(span_capture: SpanCapture) -> None:
    _chat("llm")
    assert_tree(span_capture, S("POST /chat", children=[S("llm")]))
    assert len(set(span_capture.spans())) == 2


def test_failure_messages_name_the_mismatch(spans: list[CapturedSpan]) -> None:
    cases = {
        S("GET /x"): "no span is named 'GET /x'",
        S("POST /chat", attrs={"missing": 1}): "attribute 'missing' is missing",
        S(
            "POST /chat", children=[S("llm", attrs={"n": "other"})]
        ): "'llm': attribute 'n' is 'llm', expected 'other'",
        S("POST /chat", children=[S("db")]): "like 'db', found 0 among ['retrieve', 'llm'",
        S(
            "POST /chat", children=[S("tool"), S("retrieve")], ordered=True
        ): "not together (order, counts, or extra children",
    }
    for spec, reason in cases.items():
        with pytest.raises(AssertionError, match=re.escape(reason)):
            assert_tree(spans, spec)


def test_empty_input() -> None:
    with pytest.raises(AssertionError, match=r"(?s)no span is named 'x'.*\(no spans\)"):
        assert_tree([], S("x"))


def _span(name: str, span_id: int, parent: int | None, start: int) -> CapturedSpan:
    return CapturedSpan(
        name=name,
        trace_id="1" * 32,
        span_id=format(span_id, "016x"),
        parent_span_id=None if parent is None else format(parent, "016x"),
        kind="INTERNAL",
        attributes={},
        events=[],
        status_code="UNSET",
        status_description=None,
        start_time_ns=start,
        end_time_ns=start + 1,
        resource={},
        scope_name="synthetic",
    )


def test_thousands_of_children_do_not_hit_the_recursion_limit() -> None:
    kids = [_span("chunk" if i % 2 else "tool", i, 1, i) for i in range(2, 3002)]
    spans = [_span("stream", 1, None, 0), *kids]
    children = [S("tool"), S.any_number(S("chunk"), min=1500, max=1500), S.any_number(S("tool"))]
    assert_tree(spans, S("stream", children=children, exact=True))
    assert_tree(
        spans, S("stream", children=[S("tool"), S.any_number(S("chunk"), max=1)], ordered=True)
    )
    assert (
        find_tree(spans, S("stream", children=[S("chunk"), S("chunk")], ordered=True, exact=True))
        is None
    )
    assert find_tree(spans, S("stream", children=children[:2], exact=True)) is None


def test_many_identical_expected_children_fail_fast() -> None:
    kids = [_span("chunk", i, 1, i) for i in range(2, 302)]
    spans = [_span("stream", 1, None, 0), *kids, _span("stray", 5000, 1, 5000)]
    expected = S("stream", children=[S("chunk")] * 12 + [S.any_number(S("chunk"))], exact=True)
    assert find_tree(spans, expected) is None
    assert find_tree(spans, S("stream", children=[S("chunk")] * 301)) is None
    assert_tree(spans, S("stream", children=[S("chunk")] * 300))


@pytest.mark.usefixtures("narrow")
def test_long_drawings_are_cut_and_the_blamed_trace_comes_first() -> None:
    noise = [_span(f"noise-{i}", 10 + i, None, i) for i in range(500)]
    target = [_span("late", 9, None, 10_000), _span("kid", 8, 9, 10_001)]
    with pytest.raises(AssertionError) as info:
        assert_tree(noise + target, S("late", children=[S("other")]))
    lines = str(info.value).split("Actual (502 span(s)):\n")[1].splitlines()
    assert lines[0].startswith("  late [INTERNAL]")
    assert lines[0].endswith("✗ here")
    assert lines[1].startswith("  └── kid")
    assert len(lines) == 201
    assert lines[-1] == "  … 302 more line(s) not shown"


def test_trees_side_by_side_when_they_fit(
    spans: list[CapturedSpan], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    with pytest.raises(AssertionError) as info:
        assert_tree(spans, S("POST /chat", children=[S("tool", attrs={"n": "x"})]))
    lines = str(info.value).splitlines()
    assert lines[1] == ""
    assert re.fullmatch(r"Expected: +│ Actual \(5 span\(s\)\):", lines[2])
    assert re.fullmatch(
        r"  POST /chat +│   POST /chat \[INTERNAL\] \d+\.\d ms {http.route='/chat'}", lines[3]
    )
    assert re.fullmatch(r"  └── tool {n='x'} │   ├── retrieve \[INTERNAL\] .*", lines[4])
    assert re.fullmatch(r" +│   └── tool \[INTERNAL\] \d+\.\d ms {n='tool'}   ✗ here", lines[-1])
    assert len({line.index("│") for line in lines[2:]}) == 1  # one straight gutter
    assert max(map(len, lines)) <= 116  # 120 columns minus pytest's "E   "


def test_too_wide_for_the_terminal_stays_one_after_the_other(
    spans: list[CapturedSpan], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    with pytest.raises(AssertionError) as info:
        assert_tree(spans, S("POST /chat", children=[S("tool", attrs={"n": "x" * 30})]))
    text = str(info.value)
    assert "│" not in text
    assert "\n\nExpected:\n  POST /chat\n  └── tool {n='xxx" in text
    assert "\n\nActual (5 span(s)):\n  POST /chat [INTERNAL]" in text


class _Polled:
    """A span source that lets a test act after the first poll (no sleeps)."""

    def __init__(self, source: SpanCapture) -> None:
        self.source = source
        self.polls = 0
        self.first_poll = threading.Event()

    def spans(self) -> list[CapturedSpan]:
        self.polls += 1
        self.first_poll.set()
        return self.source.spans()


def test_wait_for_tree_waits_for_the_late_part(span_capture: SpanCapture) -> None:
    with tracer.start_as_current_span("POST /chat") as root:
        context = trace.set_span_in_context(root)
    source = _Polled(span_capture)

    def late_worker() -> None:
        source.first_poll.wait(10)
        with tracer.start_as_current_span("process task", context=context):
            pass

    worker = threading.Thread(target=late_worker)
    worker.start()
    try:
        found = wait_for_tree(source, S("POST /chat", children=[S("process task")]), timeout=10)
    finally:
        worker.join()
    assert found.name == "POST /chat"
    assert source.polls >= 2  # the first look saw the request without its task


def test_wait_for_tree_fails_with_the_drawn_tree(
    span_capture: SpanCapture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    _chat("llm")
    with pytest.raises(AssertionError) as info:
        wait_for_tree(span_capture, S("POST /chat", children=[S("tool")]), timeout=0.2)
    text = str(info.value)
    assert text.startswith(
        "after waiting 0.2s: span tree not found: 'POST /chat': expected 1+ child(ren) like 'tool'"
    )
    assert "└── tool" in text
    assert "└── llm [INTERNAL]" in text


def test_wait_for_tree_needs_something_to_poll(spans: list[CapturedSpan]) -> None:
    with pytest.raises(TypeError, match=r"needs a source with \.spans"):
        wait_for_tree(spans, S("POST /chat"))  # type: ignore[arg-type]
