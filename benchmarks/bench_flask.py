"""Flask server-span overhead: difytrace against opentelemetry-instrumentation-flask.

``python benchmarks/bench_flask.py`` (or ``benchmarks/run.py flask``). Every variant runs in
its own subprocess (instrumentation is process-global) and calls the WSGI app directly, as a
server would, with a fresh environ per request; the body is iterated and closed. Spans go
through a ``BatchSpanProcessor`` into an exporter that drops them; metrics into an in-memory
reader that is never collected. The figure is CPU time per request (``time.process_time``,
so the batch processor's thread counts too) over ``--requests`` requests after a warm-up, best
of ``--rounds`` rounds. The contrib instrumentor runs with ``OTEL_SEMCONV_STABILITY_OPT_IN=http``
so that both sides emit the same stable HTTP attributes. Compare the ratios, not the absolute
figures, across machines.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

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
}


def _providers(with_metrics: bool) -> None:
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Drop(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Drop()))
    trace.set_tracer_provider(provider)
    if with_metrics:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader

        metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))


def _app(instrumentation: str) -> Any:
    if instrumentation == "upstream":
        from opentelemetry.instrumentation.flask import FlaskInstrumentor as Upstream

        Upstream().instrument()
    elif instrumentation == "difytrace":
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


def run_variant(name: str, requests: int, rounds: int) -> float:
    """µs of CPU per request for one variant, in this process."""
    _, instrumentation, with_metrics, path = VARIANTS[name]
    if instrumentation != "none":
        _providers(with_metrics)
    one = _request(_app(instrumentation), path)
    for _ in range(min(requests, 2000)):
        one()
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(requests):
            one()
        best = min(best, (time.process_time() - start) / requests)
    return best * 1e6


def _in_subprocess(name: str, requests: int, rounds: int) -> float:
    env = dict(os.environ, OTEL_SEMCONV_STABILITY_OPT_IN="http", DIFYTRACE_STRICT="1")
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--variant",
            name,
            "--requests",
            str(requests),
            "--rounds",
            str(rounds),
        ],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return float(json.loads(out.strip().splitlines()[-1])["us_per_request"])


def table(results: dict[str, float]) -> str:
    """The markdown table: µs/request, overhead over bare Flask, and against contrib's."""
    bare = results["bare"]
    baseline = {
        "difytrace": "upstream",
        "difytrace_metrics": "upstream_metrics",
        "difytrace_identity": "upstream_metrics",
    }
    rows = [
        "| variant | µs/request | added µs | added vs contrib's |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, us in results.items():
        added = us - bare
        ratio = ""
        if name in baseline:
            ratio = f"{added / (results[baseline[name]] - bare):.2f}x"
        rows.append(f"| {VARIANTS[name][0]} | {us:.1f} | {added:.1f} | {ratio} |")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> str:
    """Run every variant, each in its own subprocess; print and return the markdown table.

    The variants run one after another, ``--passes`` times over; each variant's figure is its
    best pass, so that a burst of load from elsewhere on the machine does not land on one
    variant only.
    """
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--variant", choices=sorted(VARIANTS))
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--passes", type=int, default=3)
    args = parser.parse_args([] if argv is None and __name__ != "__main__" else argv)
    if args.variant:
        us = run_variant(args.variant, args.requests, args.rounds)
        print(json.dumps({"variant": args.variant, "us_per_request": us}))
        return ""
    results = dict.fromkeys(VARIANTS, float("inf"))
    for _ in range(args.passes):
        for name in VARIANTS:
            results[name] = min(results[name], _in_subprocess(name, args.requests, args.rounds))
    text = table(results)
    print(text)
    return text


if __name__ == "__main__":
    main()
