"""Draws spans as one waterfall tree per trace in the terminal (rich)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from difytrace import semconv
from difytrace import semconv_genai as genai
from difytrace.testing import CapturedSpan

BAR_WIDTH = 24


def _ms(value: float) -> str:
    return f"{value * 1000:.0f} ms"


def _usd(value: float) -> str:
    return f"${value:.6f}"


# What a span's line shows: (label, attributes to read, first found wins, formatter).
_FACTS: tuple[tuple[str, tuple[str, ...], Callable[[Any], str]], ...] = (
    ("status", (semconv.HTTP_RESPONSE_STATUS_CODE,), str),
    ("model", (genai.REQUEST_MODEL,), str),
    ("Σ calls", (genai.ROLLUP_CALLS,), str),
    ("in", (genai.USAGE_INPUT_TOKENS, genai.ROLLUP_INPUT_TOKENS), lambda v: f"{v} tok"),
    ("out", (genai.USAGE_OUTPUT_TOKENS, genai.ROLLUP_OUTPUT_TOKENS), lambda v: f"{v} tok"),
    ("cost", (genai.USAGE_COST, genai.ROLLUP_COST), _usd),
    ("TTFT", (genai.RESPONSE_TIME_TO_FIRST_CHUNK, semconv.HTTP_TIME_TO_FIRST_BYTE), _ms),
    ("queue wait", (semconv.CELERY_QUEUE_WAIT,), _ms),
)


#: What the renderer draws: spans as the test kit and the OTLP receiver capture them.
SpanLike = CapturedSpan


def group_traces(spans: Iterable[SpanLike]) -> dict[str, list[SpanLike]]:
    """Spans by trace id, traces in order of their first start."""
    traces: dict[str, list[SpanLike]] = defaultdict(list)
    for span in sorted(spans, key=lambda s: s.start_time_ns):
        traces[span.trace_id].append(span)
    return dict(traces)


def _facts(span: SpanLike) -> list[str]:
    shown = []
    for label, keys, fmt in _FACTS:
        value = next((span.attributes[k] for k in keys if span.attributes.get(k) is not None), None)
        if value is None or value == "":
            continue
        try:
            shown.append(f"{label} {fmt(value)}")
        except (TypeError, ValueError):  # a foreign span with another type: show it raw
            shown.append(f"{label} {value}")
    return shown


def _bar(span: SpanLike, start: int, total: int) -> str:
    offset = round((span.start_time_ns - start) / total * BAR_WIDTH)
    width = max(1, round((span.end_time_ns - span.start_time_ns) / total * BAR_WIDTH))
    offset = min(offset, BAR_WIDTH - 1)
    width = min(width, BAR_WIDTH - offset)
    return "·" * offset + "█" * width + "·" * (BAR_WIDTH - offset - width)


def _ordered(spans: Sequence[SpanLike]) -> list[tuple[str, SpanLike]]:
    """Depth-first order with tree guides (``├─``, ``└─``) as each row's prefix."""
    ids = {s.span_id for s in spans}
    children: dict[str | None, list[SpanLike]] = defaultdict(list)
    for span in spans:
        children[span.parent_span_id if span.parent_span_id in ids else None].append(span)
    rows: list[tuple[str, SpanLike]] = []

    def walk(parent: str | None, indent: str, top: bool) -> None:
        kids = children.get(parent, [])
        for index, child in enumerate(kids):
            last = index == len(kids) - 1
            guide = "" if top else indent + ("└─ " if last else "├─ ")
            rows.append((guide, child))
            walk(child.span_id, "" if top else indent + ("   " if last else "│  "), False)

    walk(None, "", True)
    return rows


def trace_table(spans: Sequence[SpanLike]) -> Table:
    """One trace as a waterfall: tree of span names, service, duration, bar and key facts."""
    start = min(s.start_time_ns for s in spans)
    total = max(1, max(s.end_time_ns for s in spans) - start)
    table = Table(
        title=Text(
            f"trace {spans[0].trace_id} · {total / 1e6:.1f} ms · {len(spans)} spans",
            style="bold yellow",
        ),
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    table.add_column("span", no_wrap=True)
    table.add_column("service", style="magenta", no_wrap=True)
    table.add_column("ms", justify="right", style="dim", no_wrap=True)
    table.add_column("waterfall", style="cyan", no_wrap=True)
    table.add_column("details", style="green")
    for guide, span in _ordered(spans):
        error = span.status_code == "ERROR"
        name = Text(guide, style="dim")
        name.append(span.name, style="bold red" if error else "bold")
        details = Text(" · ".join([span.kind.lower(), *_facts(span)]))
        if error:
            details.append(f" ✗ {span.status_description or 'error'}", style="red")
        table.add_row(
            name,
            str(span.resource.get("service.name", "")),
            f"{(span.end_time_ns - span.start_time_ns) / 1e6:.1f}",
            _bar(span, start, total),
            details,
        )
    return table


def draw(spans: Iterable[SpanLike], console: Console) -> int:
    """Print every trace in ``spans`` as a tree; return how many traces were drawn."""
    traces = group_traces(spans)
    for trace_spans in traces.values():
        console.print(trace_table(trace_spans))
        console.print()
    return len(traces)
