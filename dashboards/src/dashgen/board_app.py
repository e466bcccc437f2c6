"""The Celery and API dashboards."""

from __future__ import annotations

from difytrace import semconv as sc

from ._common import (
    METHOD,
    QUEUE,
    ROUTE,
    SERVICE,
    STATE,
    STATUS,
    TASK,
    legend,
    quantiles,
    series,
    service_var,
)
from .grafana import Dashboard, Panel, Target, Variable
from .promql import Scope, ratio


def celery_tasks() -> Dashboard:
    """Task rate, failures, retries, queue wait and run time by task and queue."""
    dur = sc.CELERY_TASK_DURATION
    scope = Scope({SERVICE: "service", QUEUE: "queue"})
    by = (TASK, QUEUE)
    failure = {STATE: "(?i)failure"}
    panels = [
        Panel("Tasks run", "cps", (Target(scope.rate(dur, by, "_count"), legend(*by)),)),
        Panel(
            "Tasks published",
            "cps",
            (Target(scope.rate(sc.CELERY_TASK_PUBLISHED, by), legend(*by)),),
        ),
        Panel(
            "Failures",
            "cps",
            (Target(scope.rate(dur, by, "_count", matchers=failure), legend(*by)),),
            "Tasks that ended in FAILURE.",
        ),
        Panel(
            "Retries",
            "cps",
            (Target(scope.rate(dur, by, "_count", matchers={STATE: "(?i)retry"}), legend(*by)),),
            "Task runs that ended in RETRY.",
        ),
        Panel(
            "Failure ratio",
            "percentunit",
            (
                Target(
                    ratio(
                        scope.rate(dur, by, "_count", matchers=failure),
                        scope.rate(dur, by, "_count"),
                    ),
                    legend(*by),
                ),
            ),
        ),
        Panel("States", "cps", (Target(scope.rate(dur, (STATE,), "_count"), legend(STATE)),)),
        Panel(
            "Queue wait",
            "s",
            quantiles(scope, sc.CELERY_QUEUE_WAIT_DURATION, by),
            "Publish → start of the task.",
        ),
        Panel("Run time", "s", quantiles(scope, dur, by)),
    ]
    queue = Variable("queue", "Queue", series(dur, sc.CELERY_QUEUE_WAIT_DURATION), QUEUE)
    return Dashboard(
        "difytrace-celery",
        "difytrace / Celery",
        "Celery tasks by task and queue.",
        (service_var(dur, sc.CELERY_TASK_PUBLISHED), queue),
        panels,
    )


def api() -> Dashboard:
    """Request rate, error ratio, latency by route, SSE stream durations."""
    req, stream = sc.HTTP_SERVER_DURATION, sc.HTTP_STREAM_DURATION
    scope = Scope({SERVICE: "service"})
    by = (METHOD, ROUTE)
    errors = {STATUS: "5.."}
    panels = [
        Panel("Requests", "reqps", (Target(scope.rate(req, by, "_count"), legend(*by)),)),
        Panel(
            "Error ratio (5xx)",
            "percentunit",
            (
                Target(
                    ratio(
                        scope.rate(req, by, "_count", matchers=errors),
                        scope.rate(req, by, "_count"),
                    ),
                    legend(*by),
                ),
            ),
        ),
        Panel(
            "Responses by status",
            "reqps",
            (Target(scope.rate(req, (STATUS,), "_count"), legend(STATUS)),),
        ),
        Panel("Latency", "s", quantiles(scope, req, (ROUTE,))),
        Panel(
            "SSE streams",
            "reqps",
            (Target(scope.rate(stream, (ROUTE,), "_count"), legend(ROUTE)),),
            "Streamed (server-sent events) responses finished.",
        ),
        Panel(
            "SSE stream duration",
            "s",
            quantiles(scope, stream, (ROUTE,)),
            "First byte → end of stream.",
        ),
    ]
    return Dashboard(
        "difytrace-api",
        "difytrace / API",
        "HTTP API served by Flask.",
        (service_var(req, stream),),
        panels,
    )
