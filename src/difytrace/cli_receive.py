"""``difytrace receive``: a local OTLP/HTTP receiver that draws incoming traces as trees."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from difytrace import cli_otlp_json, cli_tree
from difytrace.testing.receiver import OTLPReceiver

POLL_S = 0.1


class TraceDrawer:
    """Draws each trace once it has been quiet for ``settle_s`` (again if it grows later)."""

    def __init__(self, console: Console, settle_s: float) -> None:
        self._console = console
        self._settle_s = settle_s
        self._seen: dict[str, tuple[int, float]] = {}  # trace id → (span count, last change)
        self._drawn: dict[str, int] = {}

    def update(self, spans: list[cli_tree.SpanLike], now: float, *, final: bool = False) -> int:
        """Draw the traces that settled since the last call (all of them when ``final``);
        return how many were drawn."""
        traces = cli_tree.group_traces(spans)
        drawn = 0
        for trace_id, trace_spans in traces.items():
            count = len(trace_spans)
            if self._seen.get(trace_id, (0, 0.0))[0] != count:
                self._seen[trace_id] = (count, now)
            # Children end (and are exported) before their parents: without its root a trace
            # is probably incomplete, so it gets longer to settle.
            has_root = any(span.parent_span_id is None for span in trace_spans)
            quiet = now - self._seen[trace_id][1]
            settled = final or quiet >= self._settle_s * (1 if has_root else 5)
            if settled and self._drawn.get(trace_id) != count:
                self._console.print(cli_tree.trace_table(trace_spans))
                self._drawn[trace_id] = count
                drawn += 1
        return drawn

    @property
    def traces_drawn(self) -> int:
        """How many distinct traces have been drawn."""
        return len(self._drawn)


def serve(
    *,
    host: str,
    port: int,
    json_path: Path | None,
    settle_s: float,
    max_traces: int | None,
    console: Console,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Receive until interrupted (or ``max_traces`` traces were drawn); return the exit code."""
    drawer = TraceDrawer(console, settle_s)
    with OTLPReceiver(host, port) as receiver:
        console.print(
            f"difytrace receive: listening on {receiver.endpoint} "
            f"(OTEL_EXPORTER_OTLP_ENDPOINT={receiver.endpoint}); Ctrl-C to stop"
        )
        try:
            while max_traces is None or drawer.traces_drawn < max_traces:
                time.sleep(POLL_S)  # the receiver has no callback: poll its store
                if drawer.update(receiver.spans(), clock()) and json_path is not None:
                    cli_otlp_json.write(receiver.spans(), json_path)
        except KeyboardInterrupt:
            console.print("difytrace receive: stopped")
        drawer.update(receiver.spans(), clock(), final=True)
        if json_path is not None:
            cli_otlp_json.write(receiver.spans(), json_path)
            console.print(f"difytrace receive: {len(receiver.spans())} spans in {json_path}")
    return 0
