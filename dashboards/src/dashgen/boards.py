"""The five difytrace dashboards: ops_trace, Celery, API, LLM usage, exporter health."""

from __future__ import annotations

from difytrace import semconv as sc

from .grafana import Dashboard, Panel, Target, Variable
from .promql import Scope, label, ratio, require

SERVICE = "job"
QUEUE = label(sc.MESSAGING_DESTINATION_NAME)
TASK = label(sc.CELERY_TASK_NAME)
STATE = label(sc.CELERY_TASK_STATE)
ROUTE = label(sc.HTTP_ROUTE)
METHOD = label(sc.HTTP_REQUEST_METHOD)
STATUS = label(sc.HTTP_RESPONSE_STATUS_CODE)
DEST = label(sc.OPS_TRACE_DESTINATION)
REASON = label(sc.OPS_TRACE_REASON)
RECORD_TYPE = label(sc.OPS_TRACE_RECORD_TYPE)
ERROR = label(sc.ERROR_TYPE)
PROVIDER = label(sc.GEN_AI_PROVIDER_NAME)
MODEL = label(sc.GEN_AI_REQUEST_MODEL)
TOKEN_TYPE = label(sc.GEN_AI_TOKEN_TYPE)
ESTIMATED = label(sc.GEN_AI_USAGE_ESTIMATED)
TENANT = label(sc.TENANT_ID)
APP = label(sc.APP_ID)
QUANTILES = (0.5, 0.95, 0.99)


def _series(*specs: sc.MetricSpec) -> str:
    """A selector matching any series of ``specs`` (for ``label_values``)."""
    names: list[str] = []
    for spec in map(require, specs):
        suffix = "_count" if spec.instrument == "histogram" else ""
        names.append(spec.prometheus_name + suffix)
    return f'{{__name__=~"{"|".join(names)}"}}'


def _legend(*labels: str) -> str:
    return " ".join("{{" + name + "}}" for name in labels)


def _quantiles(scope: Scope, spec: sc.MetricSpec, by: tuple[str, ...]) -> tuple[Target, ...]:
    return tuple(
        Target(scope.quantile(spec, q, by), f"p{round(q * 100)} {_legend(*by)}") for q in QUANTILES
    )


def _service_var(*specs: sc.MetricSpec) -> Variable:
    return Variable("service", "Service", _series(*specs), SERVICE)


def ops_trace() -> Dashboard:
    """Queue depth, outcomes by destination, drops, lag, batch sizes, workers."""
    specs = sc.OPS_TRACE_METRICS
    scope = Scope({SERVICE: "service", QUEUE: "queue"})
    by_dest = (DEST,)
    attempts = (
        f"{scope.rate(sc.OPS_TRACE_DELIVERED, by_dest)} + "
        f"({scope.rate(sc.OPS_TRACE_FAILED, by_dest)} or "
        f"0 * {scope.rate(sc.OPS_TRACE_DELIVERED, by_dest)})"
    )
    outcomes = (
        ("delivered", sc.OPS_TRACE_DELIVERED),
        ("failed", sc.OPS_TRACE_FAILED),
        ("retried", sc.OPS_TRACE_RETRIED),
        ("dead-lettered", sc.OPS_TRACE_DEAD_LETTERED),
    )
    batch = sc.OPS_TRACE_BATCH_SIZE
    panels = [
        Panel(
            "Queue depth",
            "short",
            (Target(scope.gauge(sc.OPS_TRACE_QUEUE_DEPTH, (QUEUE,), agg="max"), _legend(QUEUE)),),
            "Records waiting in the ops_trace queue.",
        ),
        Panel(
            "Workers",
            "short",
            (Target(scope.gauge(sc.OPS_TRACE_WORKERS, (QUEUE,)), _legend(QUEUE)),),
            "ops_trace worker processes running.",
        ),
        Panel(
            "Submitted by record type",
            "cps",
            (Target(scope.rate(sc.OPS_TRACE_SUBMITTED, (RECORD_TYPE,)), _legend(RECORD_TYPE)),),
            "Records enqueued by the app.",
        ),
        Panel(
            "Outcomes by destination",
            "cps",
            tuple(
                Target(scope.rate(spec, by_dest), f"{name} {_legend(DEST)}")
                for name, spec in outcomes
            ),
        ),
        Panel(
            "Delivery failure ratio",
            "percentunit",
            (Target(ratio(scope.rate(sc.OPS_TRACE_FAILED, by_dest), attempts), _legend(DEST)),),
            "Failed attempts / (delivered + failed), by destination kind.",
        ),
        Panel(
            "Dead letters by reason",
            "short",
            (
                Target(
                    scope.rate(sc.OPS_TRACE_DEAD_LETTERED, (DEST, REASON), func="increase"),
                    _legend(DEST, REASON),
                ),
            ),
            "Records dead-lettered per rate interval.",
        ),
        Panel(
            "Drops by reason",
            "cps",
            (Target(scope.rate(sc.OPS_TRACE_DROPPED, (REASON,)), _legend(REASON)),),
            "Records dropped before enqueue.",
        ),
        Panel(
            "End-to-end lag",
            "s",
            _quantiles(scope, sc.OPS_TRACE_LAG, by_dest),
            "Record finished in the app → accepted by the destination.",
        ),
        Panel(
            "Batch size",
            "short",
            (
                *_quantiles(scope, batch, by_dest)[:2],
                Target(
                    ratio(scope.rate(batch, by_dest, "_sum"), scope.rate(batch, by_dest, "_count")),
                    f"mean {_legend(DEST)}",
                ),
            ),
            "Records per delivery batch.",
        ),
    ]
    queue = Variable(
        "queue", "Queue", _series(sc.OPS_TRACE_QUEUE_DEPTH, sc.OPS_TRACE_WORKERS), QUEUE
    )
    return Dashboard(
        "difytrace-ops-trace",
        "difytrace / ops_trace",
        "Delivery of LLM application traces (Langfuse, LangSmith, OTLP).",
        (_service_var(*specs), queue),
        panels,
    )


def celery_tasks() -> Dashboard:
    """Task rate, failures, retries, queue wait and run time by task and queue."""
    dur = sc.CELERY_TASK_DURATION
    scope = Scope({SERVICE: "service", QUEUE: "queue"})
    by = (TASK, QUEUE)
    failure = {STATE: "(?i)failure"}
    panels = [
        Panel("Tasks run", "cps", (Target(scope.rate(dur, by, "_count"), _legend(*by)),)),
        Panel(
            "Tasks published",
            "cps",
            (Target(scope.rate(sc.CELERY_TASK_PUBLISHED, by), _legend(*by)),),
        ),
        Panel(
            "Failures",
            "cps",
            (Target(scope.rate(dur, by, "_count", matchers=failure), _legend(*by)),),
            "Tasks that ended in FAILURE.",
        ),
        Panel(
            "Retries",
            "cps",
            (Target(scope.rate(dur, by, "_count", matchers={STATE: "(?i)retry"}), _legend(*by)),),
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
                    _legend(*by),
                ),
            ),
        ),
        Panel("States", "cps", (Target(scope.rate(dur, (STATE,), "_count"), _legend(STATE)),)),
        Panel(
            "Queue wait",
            "s",
            _quantiles(scope, sc.CELERY_QUEUE_WAIT_DURATION, by),
            "Publish → start of the task.",
        ),
        Panel("Run time", "s", _quantiles(scope, dur, by)),
    ]
    queue = Variable("queue", "Queue", _series(dur, sc.CELERY_QUEUE_WAIT_DURATION), QUEUE)
    return Dashboard(
        "difytrace-celery",
        "difytrace / Celery",
        "Celery tasks by task and queue.",
        (_service_var(dur, sc.CELERY_TASK_PUBLISHED), queue),
        panels,
    )


def api() -> Dashboard:
    """Request rate, error ratio, latency by route, SSE stream durations."""
    req, stream = sc.HTTP_SERVER_DURATION, sc.HTTP_STREAM_DURATION
    scope = Scope({SERVICE: "service"})
    by = (METHOD, ROUTE)
    errors = {STATUS: "5.."}
    panels = [
        Panel("Requests", "reqps", (Target(scope.rate(req, by, "_count"), _legend(*by)),)),
        Panel(
            "Error ratio (5xx)",
            "percentunit",
            (
                Target(
                    ratio(
                        scope.rate(req, by, "_count", matchers=errors),
                        scope.rate(req, by, "_count"),
                    ),
                    _legend(*by),
                ),
            ),
        ),
        Panel(
            "Responses by status",
            "reqps",
            (Target(scope.rate(req, (STATUS,), "_count"), _legend(STATUS)),),
        ),
        Panel("Latency", "s", _quantiles(scope, req, (ROUTE,))),
        Panel(
            "SSE streams",
            "reqps",
            (Target(scope.rate(stream, (ROUTE,), "_count"), _legend(ROUTE)),),
            "Streamed (server-sent events) responses finished.",
        ),
        Panel(
            "SSE stream duration",
            "s",
            _quantiles(scope, stream, (ROUTE,)),
            "First byte → end of stream.",
        ),
    ]
    return Dashboard(
        "difytrace-api",
        "difytrace / API",
        "HTTP API served by Flask.",
        (_service_var(req, stream),),
        panels,
    )


def llm_usage() -> Dashboard:
    """Tokens, cost, latency and TTFT by provider/model/tenant/app; estimated token share."""
    tokens, dur = sc.GEN_AI_CLIENT_TOKEN_USAGE, sc.GEN_AI_CLIENT_OPERATION_DURATION
    cost, ttft = sc.GEN_AI_CLIENT_COST, sc.GEN_AI_CLIENT_TIME_TO_FIRST_CHUNK
    scope = Scope({SERVICE: "service", TENANT: "tenant", APP: "app"})
    pm, ta = (PROVIDER, MODEL), (TENANT, APP)
    panels = [
        Panel(
            "Tokens by model",
            "short",
            (Target(scope.rate(tokens, (*pm, TOKEN_TYPE), "_sum"), _legend(*pm, TOKEN_TYPE)),),
            "Tokens per second, input and output.",
        ),
        Panel(
            "Tokens by tenant / app",
            "short",
            (Target(scope.rate(tokens, ta, "_sum"), _legend(*ta)),),
        ),
        Panel(
            "Cost by model (USD/h)",
            "currencyUSD",
            (Target(f"3600 * {scope.rate(cost, pm)}", _legend(*pm)),),
        ),
        Panel(
            "Cost by tenant / app (USD/h)",
            "currencyUSD",
            (Target(f"3600 * {scope.rate(cost, ta)}", _legend(*ta)),),
        ),
        Panel("Call latency", "s", _quantiles(scope, dur, pm)),
        Panel("Time to first token", "s", _quantiles(scope, ttft, pm)),
        Panel(
            "Calls and errors",
            "reqps",
            (
                Target(scope.rate(dur, pm, "_count"), f"calls {_legend(*pm)}"),
                Target(
                    scope.rate(dur, (*pm, ERROR), "_count", matchers={ERROR: ".+"}),
                    f"errors {_legend(*pm, ERROR)}",
                ),
            ),
        ),
        Panel(
            "Estimated token share",
            "percentunit",
            (
                Target(
                    ratio(
                        scope.rate(tokens, pm, "_sum", matchers={ESTIMATED: "true"}),
                        scope.rate(tokens, pm, "_sum"),
                    ),
                    _legend(*pm),
                ),
            ),
            "Tokens counted by difytrace's estimate, not the provider.",
        ),
    ]
    variables = (
        _service_var(tokens, dur, cost),
        Variable("tenant", "Tenant", _series(tokens), TENANT),
        Variable("app", "App", _series(tokens), APP),
    )
    return Dashboard(
        "difytrace-llm",
        "difytrace / LLM usage",
        "LLM calls: tokens, cost, latency, time to first token.",
        variables,
        panels,
    )


def exporter_health() -> Dashboard:
    """Spans dropped and export failures per process; spans the agent collector saw."""
    exported, dropped = sc.EXPORTER_SPANS_EXPORTED, sc.EXPORTER_SPANS_DROPPED
    failures, calls = sc.EXPORTER_EXPORT_FAILURES, sc.SPAN_METRICS_CALLS
    scope = Scope({SERVICE: "service"})
    proc = ("job", "instance")
    status = label(sc.STATUS_CODE)
    drop_all = scope.rate(dropped, proc)
    panels = [
        Panel(
            "Spans dropped per process",
            "cps",
            (
                Target(
                    scope.rate(dropped, (*proc, label(sc.EXPORTER_REASON))),
                    _legend(*proc, label(sc.EXPORTER_REASON)),
                ),
            ),
        ),
        Panel(
            "Export failures per process",
            "cps",
            (
                Target(
                    scope.rate(failures, (*proc, label(sc.EXPORTER_SIGNAL), ERROR)),
                    _legend(*proc, label(sc.EXPORTER_SIGNAL), ERROR),
                ),
            ),
        ),
        Panel(
            "Drop ratio per process",
            "percentunit",
            (
                Target(
                    ratio(
                        drop_all,
                        f"{scope.rate(exported, proc)} + ({drop_all} or 0 * "
                        f"{scope.rate(exported, proc)})",
                    ),
                    _legend(*proc),
                ),
            ),
        ),
        Panel(
            "Spans exported per process",
            "cps",
            (Target(scope.rate(exported, proc), _legend(*proc)),),
        ),
        Panel(
            "Spans seen by the agent collector",
            "cps",
            (Target(scope.rate(calls, (SERVICE, status)), _legend(SERVICE, status)),),
            "span_metrics connector, before sampling.",
        ),
        Panel(
            "Span duration (agent collector)",
            "s",
            _quantiles(scope, sc.SPAN_METRICS_DURATION, (SERVICE, label(sc.SPAN_NAME)))[1:2],
            "p95 by service and span name, before sampling.",
        ),
    ]
    return Dashboard(
        "difytrace-exporter",
        "difytrace / exporter health",
        "Is telemetry flowing? Drops and failures per process.",
        (_service_var(exported, dropped, failures, calls),),
        panels,
    )


ALL = (ops_trace, celery_tasks, api, llm_usage, exporter_health)
