"""Trees, OTLP/JSON and the receive command's drawing rules, on hand-made spans."""

from __future__ import annotations

import json
import urllib.request

from rich.console import Console

from difytrace import cli_otlp_json, cli_tree
from difytrace.cli_receive import TraceDrawer
from difytrace.testing import CapturedSpan, OTLPReceiver

TRACE = "0af7651916cd43dd8448eb211c80319c"


def _span(
    name: str, span_id: str, parent: str | None, start: int, end: int, **attributes: object
) -> CapturedSpan:
    return CapturedSpan(
        name=name,
        trace_id=TRACE,
        span_id=span_id,
        parent_span_id=parent,
        kind="CLIENT" if name.startswith("chat") else "SERVER" if parent is None else "INTERNAL",
        attributes=dict(attributes),
        events=[("first_chunk", {"n": 1})],
        status_code="ERROR" if name == "tool" else "UNSET",
        status_description="boom" if name == "tool" else None,
        start_time_ns=start,
        end_time_ns=end,
        resource={"service.name": "api"},
        scope_name="test",
    )


SPANS = [
    _span(
        "POST /chat", "00f067aa0ba902b7", None, 0, 100_000_000, **{"http.response.status_code": 200}
    ),
    _span(
        "chat gpt-4o",
        "00f067aa0ba902b8",
        "00f067aa0ba902b7",
        10_000_000,
        60_000_000,
        **{
            "gen_ai.usage.input_tokens": 12,
            "gen_ai.usage.output_tokens": 34,
            "difytrace.gen_ai.usage.cost": 0.000123,
            "gen_ai.response.time_to_first_chunk": 0.05,
            "gen_ai.response.finish_reasons": ("stop",),
        },
    ),
    _span(
        "tool", "00f067aa0ba902b9", "00f067aa0ba902b7", 60_000_000, 90_000_000, ok=True, ratio=0.5
    ),
]


def _text(renderable: object) -> str:
    console = Console(record=True, width=200)
    console.print(renderable)
    return console.export_text()


def test_trace_table_draws_the_tree_and_the_facts() -> None:
    text = _text(cli_tree.trace_table(SPANS))
    assert f"trace {TRACE} · 100.0 ms · 3 spans" in text
    lines = text.splitlines()
    chat = next(line for line in lines if "├─ chat gpt-4o" in line)
    assert "in 12 tok · out 34 tok · cost $0.000123 · TTFT 50 ms" in chat
    assert "█" in chat
    assert "└─ tool" in next(line for line in lines if "tool" in line and "─" in line)
    assert "✗ boom" in text
    assert "status 200" in text


def test_otlp_json_round_trips_through_a_receiver(otlp_receiver: OTLPReceiver) -> None:
    body = json.dumps(cli_otlp_json.to_otlp_json(SPANS)).encode()
    request = urllib.request.Request(
        otlp_receiver.endpoint + "/v1/traces",
        data=body,
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    got = {s.span_id: s for s in otlp_receiver.wait_for(count=3)}
    for sent in SPANS:
        back = got[sent.span_id]
        assert (back.name, back.trace_id, back.parent_span_id, back.kind, back.status_code) == (
            sent.name,
            sent.trace_id,
            sent.parent_span_id,
            sent.kind,
            sent.status_code,
        )
        assert back.start_time_ns == sent.start_time_ns
        assert back.attributes == sent.attributes
        assert back.resource["service.name"] == "api"


def test_drawer_waits_for_the_root_and_redraws_a_grown_trace() -> None:
    console = Console(record=True, width=200)
    drawer = TraceDrawer(console, settle_s=1.0)
    children = SPANS[1:]
    assert drawer.update(children, now=0.0) == 0
    assert drawer.update(children, now=2.0) == 0  # no root yet: waits 5 times the settle time
    assert drawer.update(SPANS, now=2.5) == 0  # grew: quiet time starts again
    assert drawer.update(SPANS, now=3.6) == 1
    assert drawer.update(SPANS, now=9.0) == 0  # drawn once
    assert drawer.traces_drawn == 1
    assert "POST /chat" in console.export_text()


def test_drawer_final_draws_what_is_left() -> None:
    drawer = TraceDrawer(Console(record=True, width=200), settle_s=60)
    assert drawer.update(SPANS[1:], now=0.0, final=True) == 1
