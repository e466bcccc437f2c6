"""Flask server-span overhead: difytrace against opentelemetry-instrumentation-flask.

``python benchmarks/bench_flask.py`` (or ``benchmarks/run.py flask``). Every variant runs in
its own subprocess (instrumentation is process-global) and calls the WSGI app directly, as a
server would, with a fresh environ per request; the body is iterated and closed. Spans go
through a ``BatchSpanProcessor`` into an exporter that drops them; metrics into an in-memory
reader that is never collected. The figure is CPU time per request (``time.process_time``,
so the batch processor's thread counts too) over ``--requests`` requests after a warm-up,
best of ``--rounds`` rounds taken in turns with the other variants (see :func:`main`). The
contrib instrumentor runs with ``OTEL_SEMCONV_STABILITY_OPT_IN=http`` so that both sides emit
the same stable HTTP attributes. Compare the ratios, not the absolute figures, across
machines. With valgrind installed, each variant's instructions per request are counted too
(:mod:`instructions`): the figure machine load cannot move.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import instructions

#: variant name → (label, instrumentation, with metrics, path requested)
VARIANTS: dict[str, tuple[str, str, bool, str]] = {
    "bare": ("bare Flask", "none", False, "/v1/chat-messages/abc"),
    "upstream": (
        "opentelemetry-instrumentation-flask, traces",
        "upstream",
        False,
        "/v1/chat-messages/abc",
    ),
    "upstream_metrics": (
        "opentelemetry-instrumentation-flask, traces + metrics",
        "upstream",
        True,
        "/v1/chat-messages/abc",
    ),
    "difytrace": ("difytrace, traces", "difytrace", False, "/v1/chat-messages/abc"),
    "difytrace_metrics": (
        "difytrace, traces + metrics",
        "difytrace",
        True,
        "/v1/chat-messages/abc",
    ),
    "difytrace_identity": (
        "difytrace, traces + metrics + app.id/tenant.id ids and baggage",
        "difytrace",
        True,
        "/apps/app-1/chat-messages/abc",
    ),
    # Every span difytrace exports is scrubbed of secrets first (contrib has no such step).
    "difytrace_scrub": (
        "difytrace, traces + metrics + secret scrubbing at export",
        "difytrace_scrub",
        True,
        "/v1/chat-messages/abc",
    ),
}


def _providers(with_metrics: bool, scrub: bool = False) -> None:
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Drop(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    exporter: SpanExporter = Drop()
    if scrub:
        from difytrace.scrub import Scrubber, ScrubbingSpanExporter

        exporter = ScrubbingSpanExporter(exporter, Scrubber())
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    if with_metrics:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader

        metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))


def _app(instrumentation: str) -> Any:
    if instrumentation == "upstream":
        from opentelemetry.instrumentation.flask import FlaskInstrumentor as Upstream

        Upstream().instrument()
    elif instrumentation.startswith("difytrace"):
        from difytrace.instrumentation.flask import FlaskInstrumentor

        FlaskInstrumentor().instrument()
    import flask

    app = flask.Flask("bench")

    @app.get("/v1/chat-messages/<task_id>")
    def message(task_id: str) -> dict[str, str]:
        return {"task_id": task_id, "answer": "hello"}

    @app.get("/apps/<app_id>/chat-messages/<task_id>")
    def app_message(app_id: str, task_id: str) -> dict[str, str]:
        return {"task_id": task_id, "answer": "hello"}

    return app


def _request(app: Any, path: str) -> Callable[[], None]:
    from werkzeug.test import EnvironBuilder

    base = EnvironBuilder(
        path=path,
        headers={"User-Agent": "bench/1.0", "Host": "api.local:5001", "X-Tenant-Id": "tenant-1"},
    ).get_environ()
    del base["HTTP_X_TENANT_ID"]  # only the identity variant sends it (added below)
    if "/apps/" in path:
        base["HTTP_X_TENANT_ID"] = "tenant-1"

    def start_response(
        status: str, headers: Iterable[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        return lambda data: None

    def one() -> None:
        body = app(dict(base), start_response)
        for _ in body:
            pass
        close = getattr(body, "close", None)
        if close is not None:
            close()

    return one


def serve_variant(name: str, requests: int) -> None:
    """Child process: set up one variant, then time a round of requests per line on stdin."""
    _, instrumentation, with_metrics, path = VARIANTS[name]
    if instrumentation != "none":
        _providers(with_metrics, scrub=instrumentation == "difytrace_scrub")
    one = _request(_app(instrumentation), path)
    for _ in range(2000):
        one()
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "calls":
            print(_calls_per_request(one), flush=True)
            continue
        start = time.process_time()
        for _ in range(requests):
            one()
        print((time.process_time() - start) / requests * 1e6, flush=True)


def count_variant(name: str, requests: int) -> None:
    """Child process for :mod:`instructions`: set up, warm up, ``requests`` requests, exit."""
    _, instrumentation, with_metrics, path = VARIANTS[name]
    if instrumentation != "none":
        _providers(with_metrics, scrub=instrumentation == "difytrace_scrub")
    one = _request(_app(instrumentation), path)
    for _ in range(300):
        one()
    for _ in range(requests):
        one()
    if instrumentation != "none":
        from opentelemetry import trace

        trace.get_tracer_provider().force_flush()  # type: ignore[attr-defined]


def measure_instructions() -> dict[str, float]:
    """Instructions per request of every variant (valgrind; empty without it)."""
    if not instructions.available():
        return {}
    env = dict(os.environ, OTEL_SEMCONV_STABILITY_OPT_IN="http", DIFYTRACE_STRICT="1")
    return {
        name: instructions.per_operation(
            lambda n, name=name: [sys.executable, __file__, "--variant", name, "--count", str(n)],
            env=env,
        )
        for name in VARIANTS
    }


def _calls_per_request(one: Callable[[], None], requests: int = 200) -> float:
    # Function calls seen by cProfile: a second figure that machine load cannot move.
    import cProfile
    import pstats

    profile = cProfile.Profile()
    profile.enable()
    for _ in range(requests):
        one()
    profile.disable()
    return float(pstats.Stats(profile).total_calls) / requests


class _Child:
    """One variant's process, waiting for its turn."""

    def __init__(self, name: str, requests: int) -> None:
        env = dict(os.environ, OTEL_SEMCONV_STABILITY_OPT_IN="http", DIFYTRACE_STRICT="1")
        command = [sys.executable, __file__, "--variant", name, "--requests", str(requests)]
        self.popen = subprocess.Popen(
            command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.name = name

    def _line(self) -> str:
        assert self.popen.stdout is not None
        line = self.popen.stdout.readline()
        if not line:
            raise RuntimeError(f"benchmark variant {self.name} exited ({self.popen.wait()})")
        return line.strip()

    def wait_ready(self) -> None:
        if self._line() != "ready":
            raise RuntimeError(f"benchmark variant {self.name} did not start")

    def ask(self, command: str) -> float:
        assert self.popen.stdin is not None
        self.popen.stdin.write(command + "\n")
        self.popen.stdin.flush()
        return float(self._line())

    def stop(self) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.close()
        self.popen.wait(30)


def measure(requests: int, rounds: int) -> tuple[dict[str, float], dict[str, float]]:
    """Best µs/request and calls/request of every variant; the variants take turns."""
    children = [_Child(name, requests) for name in VARIANTS]
    try:
        for child in children:
            child.wait_ready()
        best = dict.fromkeys(VARIANTS, float("inf"))
        for _ in range(rounds):
            for child in children:
                best[child.name] = min(best[child.name], child.ask("run"))
        return best, {child.name: child.ask("calls") for child in children}
    finally:
        for child in children:
            child.stop()


def table(
    results: dict[str, float], calls: dict[str, float], instr: dict[str, float] | None = None
) -> str:
    """The markdown table: CPU µs, instructions (when valgrind is there) and function calls per
    request, each as overhead over bare Flask and against the contrib instrumentor's."""
    baseline = {
        "difytrace": "upstream",
        "difytrace_metrics": "upstream_metrics",
        "difytrace_identity": "upstream_metrics",
        "difytrace_scrub": "upstream_metrics",
    }

    def added(figures: dict[str, float], name: str) -> tuple[float, str]:
        extra = figures[name] - figures["bare"]
        if name not in baseline:
            return extra, ""
        return extra, f"{extra / (figures[baseline[name]] - figures['bare']):.2f}x"

    header = "| variant | µs/request | added µs | vs contrib |"
    rule = "| --- | ---: | ---: | ---: |"
    if instr:
        header += " added k instr | vs contrib |"
        rule += " ---: | ---: |"
    rows = [header + " added calls | vs contrib |", rule + " ---: | ---: |"]
    for name, us in results.items():
        extra_us, ratio_us = added(results, name)
        extra_calls, ratio_calls = added(calls, name)
        row = f"| {VARIANTS[name][0]} | {us:.1f} | {extra_us:.1f} | {ratio_us} |"
        if instr:
            extra_instr, ratio_instr = added(instr, name)
            row += f" {extra_instr / 1000:.0f} | {ratio_instr} |"
        rows.append(row + f" {extra_calls:.0f} | {ratio_calls} |")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> str:
    """Run every variant, each in its own subprocess; print and return the markdown table.

    All variant processes are started and warmed up first; then they take turns, one round of
    ``--requests`` requests each, ``--rounds`` times over, and each variant's figure is its
    best round. Only one process runs at a time, and a burst of load from elsewhere on the
    machine lands on every variant alike.
    """
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--variant", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args([] if argv is None and __name__ != "__main__" else argv)
    if args.variant and args.count is not None:
        count_variant(args.variant, args.count)
        return ""
    if args.variant:
        serve_variant(args.variant, args.requests)
        return ""
    text = table(*measure(args.requests, args.rounds), measure_instructions())
    print(text)
    return text


if __name__ == "__main__":
    main()
