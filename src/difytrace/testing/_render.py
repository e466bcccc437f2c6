"""Text drawings of span trees (actual and expected), for assertion messages."""

from __future__ import annotations

import os
import shutil
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from difytrace.testing._model import CapturedSpan

if TYPE_CHECKING:
    from difytrace.testing._spec import Repeat, S

_MAX_VALUE = 40
_DEFAULT_SHOWN = 3
_GUTTER = " │ "
#: pytest prints assertion messages behind "E   ".
_MESSAGE_INDENT = 4
_terminal_columns: int | None = None


def set_terminal_columns(columns: int | None) -> int | None:
    """Set the width of pytest's terminal (the plugin does; ``COLUMNS`` wins); returns the
    previous one."""
    global _terminal_columns
    previous, _terminal_columns = _terminal_columns, columns
    return previous


def message_width() -> int:
    """Columns a line of an assertion message may use without wrapping."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit():
        total = int(columns)
    else:
        total = _terminal_columns or shutil.get_terminal_size((80, 24)).columns
    return total - _MESSAGE_INDENT


def beside(left: list[str], right: list[str], width: int) -> list[str] | None:
    """Two blocks of lines side by side, or None when they do not fit in ``width`` columns
    (then one after the other reads better than wrapped lines)."""
    left_width = max(map(len, left), default=0)
    if left_width + len(_GUTTER) + max(map(len, right), default=0) > width:
        return None
    rows = max(len(left), len(right))
    pad_left, pad_right = left + [""] * (rows - len(left)), right + [""] * (rows - len(right))
    return [
        (a.ljust(left_width) + _GUTTER + b).rstrip()
        for a, b in zip(pad_left, pad_right, strict=True)
    ]


def children_index(spans: Sequence[CapturedSpan]) -> dict[str | None, list[CapturedSpan]]:
    """``{parent span id: children by start time}``; roots (parent unknown) under ``None``."""
    known = {s.span_id for s in spans}
    index: dict[str | None, list[CapturedSpan]] = {}
    for s in sorted(spans, key=lambda s: (s.start_time_ns, s.end_time_ns)):
        parent = s.parent_span_id if s.parent_span_id in known else None
        index.setdefault(parent, []).append(s)
    return index


def _value(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_VALUE else text[: _MAX_VALUE - 1] + "…"


def span_line(span: CapturedSpan, keys: Collection[str] = ()) -> str:
    """``name [KIND] 1.2 ms ERROR {key=value, ...}`` — the keys asked for, else a few."""
    shown = [k for k in keys if k in span.attributes] or list(span.attributes)[:_DEFAULT_SHOWN]
    parts = [span.name, f"[{span.kind}]", f"{span.duration_s * 1000:.1f} ms"]
    if span.status_code == "ERROR":
        parts.append(f"ERROR({span.status_description or ''})")
    if shown:
        parts.append("{" + ", ".join(f"{k}={_value(span.attributes[k])}" for k in shown) + "}")
    return " ".join(parts)


def _line(span: CapturedSpan, keys: Collection[str], marks: Mapping[str, str]) -> str:
    mark = marks.get(span.span_id)
    return span_line(span, keys) + (f"   {mark}" if mark else "")


def _tree_lines(
    span: CapturedSpan,
    index: dict[str | None, list[CapturedSpan]],
    keys: Collection[str],
    marks: Mapping[str, str],
    *,
    prefix: str,
    out: list[str],
) -> None:
    kids = index.get(span.span_id, [])
    for i, child in enumerate(kids):
        last = i == len(kids) - 1
        out.append(prefix + ("└── " if last else "├── ") + _line(child, keys, marks))
        _tree_lines(
            child, index, keys, marks, prefix=prefix + ("    " if last else "│   "), out=out
        )


def render_spans(
    spans: Iterable[CapturedSpan],
    keys: Collection[str] = (),
    indent: str = "  ",
    marks: Mapping[str, str] | None = None,
    *,
    max_lines: int | None = None,
    first: CapturedSpan | None = None,
) -> str:
    """Every trace in ``spans`` drawn as a tree, one root per block.

    ``keys`` chooses the attributes shown (else the first few); ``marks`` appends a note to
    the line of the span with that id. The tree holding ``first`` comes first; past
    ``max_lines`` the drawing is cut with a note of how much was left out. Example:

    >>> from opentelemetry import trace
    >>> from difytrace.testing import FakeClock, install_global_capture, use_clock
    >>> capture = install_global_capture(); capture.clear()
    >>> tracer = trace.get_tracer("doc")
    >>> with use_clock(FakeClock(step=0.001)):
    ...     with tracer.start_as_current_span("POST /chat", attributes={"http.route": "/chat"}):
    ...         with tracer.start_as_current_span("llm"):
    ...             pass
    >>> print(render_spans(capture.spans(), keys=["http.route"]))
      POST /chat [INTERNAL] 3.0 ms {http.route='/chat'}
      └── llm [INTERNAL] 1.0 ms
    """
    spans = list(spans)
    index = children_index(spans)
    marks = marks or {}
    out: list[str] = []
    top = _root_of(first, spans) if first is not None else None
    roots = sorted(index.get(None, []), key=lambda r: r is not top)
    for root in roots:
        out.append(indent + _line(root, keys, marks))
        _tree_lines(root, index, keys, marks, prefix=indent, out=out)
    if max_lines is not None and len(out) > max_lines:
        left = len(out) - max_lines
        out = [*out[:max_lines], f"{indent}… {left} more line(s) not shown"]
    return "\n".join(out)


def _root_of(span: CapturedSpan, spans: list[CapturedSpan]) -> CapturedSpan:
    by_id = {s.span_id: s for s in spans}
    seen: set[str] = set()
    while span.parent_span_id in by_id and span.span_id not in seen:
        seen.add(span.span_id)
        span = by_id[span.parent_span_id]
    return span


def render_expected(spec: S | Repeat, indent: str = "  ") -> str:
    """The expected tree, drawn like the actual one."""
    out: list[str] = []
    _expected_lines(spec, indent, "", out)
    return "\n".join(out)


def _describe(spec: S | Repeat) -> str:
    from difytrace.testing._spec import Repeat

    if isinstance(spec, Repeat):
        high = "∞" if spec.max is None else str(spec.max)
        return f"<{spec.min}..{high} of> " + _describe(spec.spec)
    name = spec.name if isinstance(spec.name, str) else f"/{spec.name.pattern}/"
    parts = [name]
    if spec.kind:
        parts.append(f"[{spec.kind}]")
    if spec.status:
        parts.append(spec.status)
    if spec.attrs:
        parts.append("{" + ", ".join(f"{k}={_value(v)}" for k, v in spec.attrs.items()) + "}")
    flags = [f for f, on in (("ordered", spec.ordered), ("exact", spec.exact)) if on]
    if flags:
        parts.append("(" + ", ".join(flags) + " children)")
    return " ".join(parts)


def _expected_lines(spec: S | Repeat, prefix: str, branch: str, out: list[str]) -> None:
    from difytrace.testing._spec import Repeat

    out.append(prefix + branch + _describe(spec))
    node = spec.spec if isinstance(spec, Repeat) else spec
    child_prefix = prefix + {"": "", "└── ": "    "}.get(branch, "│   ")
    for i, child in enumerate(node.children):
        last = i == len(node.children) - 1
        _expected_lines(child, child_prefix, "└── " if last else "├── ", out)
