"""Hand-made server, producer and consumer spans for the demo, used only for the libraries that
difytrace does not instrument in this installation (so the demo shows a whole trace on every
build). With ``difytrace_flask`` / ``difytrace_celery`` present these hooks stay unused.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask
from opentelemetry import context, propagate, trace

from difytrace import semconv

_tracer = trace.get_tracer("difytrace.demo.manual")


def install_flask_hooks(app: Flask) -> None:
    """Open a SERVER span per request, ended when the (possibly streamed) response is done."""
    from flask import g, request

    @app.before_request
    def _start() -> None:
        rule = request.url_rule.rule if request.url_rule else request.path
        parent = propagate.extract(dict(request.headers))
        span = _tracer.start_span(
            f"{request.method} {rule}",
            context=parent,
            kind=trace.SpanKind.SERVER,
            attributes={
                semconv.HTTP_REQUEST_METHOD: request.method,
                semconv.HTTP_ROUTE: rule,
                semconv.URL_PATH: request.path,
            },
        )
        g.difytrace_demo_span = span
        g.difytrace_demo_token = context.attach(trace.set_span_in_context(span))

    @app.after_request
    def _status(response: Any) -> Any:
        span = g.pop("difytrace_demo_span")
        span.set_attribute(semconv.HTTP_RESPONSE_STATUS_CODE, response.status_code)
        # A streamed body is sent after this returns: end the span when the server closes it.
        response.call_on_close(span.end)
        return response

    @app.teardown_request
    def _detach(exc: BaseException | None) -> None:
        span = g.pop("difytrace_demo_span", None)
        if span is not None:  # the view raised: after_request did not run
            span.end()
        token = g.pop("difytrace_demo_token", None)
        if token is not None:
            context.detach(token)


def publish(task: Any, kwargs: dict[str, Any]) -> Any:
    """Send ``task`` inside a PRODUCER span, carrying the trace context in a kwarg."""
    with _tracer.start_as_current_span(
        f"publish {task.name}",
        kind=trace.SpanKind.PRODUCER,
        attributes={semconv.MESSAGING_SYSTEM: "celery", semconv.CELERY_TASK_NAME: task.name},
    ):
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        carrier[semconv.CELERY_PUBLISHED_AT_HEADER] = repr(time.time())
        return task.apply_async(kwargs={**kwargs, "trace_carrier": carrier})


@contextmanager
def consume(task_name: str, carrier: dict[str, str] | None) -> Iterator[None]:
    """Run a task body inside a CONSUMER span continuing the publisher's trace."""
    if carrier is None:
        yield
        return
    published = float(carrier.get(semconv.CELERY_PUBLISHED_AT_HEADER, time.time()))
    with _tracer.start_as_current_span(
        f"run {task_name}",
        context=propagate.extract(carrier),
        kind=trace.SpanKind.CONSUMER,
        attributes={
            semconv.MESSAGING_SYSTEM: "celery",
            semconv.CELERY_TASK_NAME: task_name,
            semconv.CELERY_QUEUE_WAIT: max(0.0, time.time() - published),
        },
    ):
        yield
