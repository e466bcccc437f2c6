"""The LLM usage and exporter-health dashboards."""

from __future__ import annotations

from difytrace import semconv as sc

from ._common import (
    APP,
    ERROR,
    ESTIMATED,
    MODEL,
    PROVIDER,
    SERVICE,
    TENANT,
    TOKEN_TYPE,
    legend,
    quantiles,
    series,
    service_var,
)
from .grafana import Dashboard, Panel, Target, Variable
from .promql import Scope, label, ratio


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
            (Target(scope.rate(tokens, (*pm, TOKEN_TYPE), "_sum"), legend(*pm, TOKEN_TYPE)),),
            "Tokens per second, input and output.",
        ),
        Panel(
            "Tokens by tenant / app",
            "short",
            (Target(scope.rate(tokens, ta, "_sum"), legend(*ta)),),
        ),
        Panel(
            "Cost by model (USD/h)",
            "currencyUSD",
            (Target(f"3600 * {scope.rate(cost, pm)}", legend(*pm)),),
        ),
        Panel(
            "Cost by tenant / app (USD/h)",
            "currencyUSD",
            (Target(f"3600 * {scope.rate(cost, ta)}", legend(*ta)),),
        ),
        Panel("Call latency by model", "s", quantiles(scope, dur, pm)),
        Panel(
            "Call latency by tenant / app",
            "s",
            quantiles(scope, dur, ta)[:2],
            "p50 and p95 of LLM call duration per tenant and app.",
        ),
        Panel("Time to first token by model", "s", quantiles(scope, ttft, pm)),
        Panel(
            "Time to first token by tenant / app",
            "s",
            quantiles(scope, ttft, ta)[:2],
            "p50 and p95 of time to first token (streamed calls) per tenant and app.",
        ),
        Panel(
            "Calls and errors",
            "reqps",
            (
                Target(scope.rate(dur, pm, "_count"), f"calls {legend(*pm)}"),
                Target(
                    scope.rate(dur, (*pm, ERROR), "_count", matchers={ERROR: ".+"}),
                    f"errors {legend(*pm, ERROR)}",
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
                    legend(*pm),
                ),
            ),
            "Tokens counted by difytrace's estimate, not the provider.",
        ),
    ]
    variables = (
        service_var(tokens, dur, cost),
        Variable("tenant", "Tenant", series(tokens), TENANT, all_value=".*"),
        Variable("app", "App", series(tokens), APP, all_value=".*"),
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
    # Span metrics carry service.name as a data point attribute; their resource (→ job) may be
    # empty (span_metrics drops resource attributes by default), so they filter on it instead.
    svc = label(sc.SERVICE_NAME)
    spans = Scope({svc: "service"})
    drop_all = scope.rate(dropped, proc)
    exported_all = scope.rate(exported, proc)
    # A process that only drops (its collector is down) has no exported series, and one that
    # never dropped has no dropped series: either alone still makes the denominator.
    handled = f"({drop_all} + {exported_all}) or {drop_all} or {exported_all}"
    panels = [
        Panel(
            "Spans dropped per process",
            "cps",
            (
                Target(
                    scope.rate(dropped, (*proc, label(sc.EXPORTER_REASON))),
                    legend(*proc, label(sc.EXPORTER_REASON)),
                ),
            ),
        ),
        Panel(
            "Export failures per process",
            "cps",
            (
                Target(
                    scope.rate(failures, (*proc, label(sc.EXPORTER_SIGNAL), ERROR)),
                    legend(*proc, label(sc.EXPORTER_SIGNAL), ERROR),
                ),
            ),
        ),
        Panel(
            "Drop ratio per process",
            "percentunit",
            (Target(ratio(drop_all, handled), legend(*proc)),),
            "Spans lost / (lost + exported).",
        ),
        Panel(
            "Spans exported per process",
            "cps",
            (Target(exported_all, legend(*proc)),),
        ),
        Panel(
            "Spans seen by the agent collector",
            "cps",
            (Target(spans.rate(calls, (svc, status)), legend(svc, status)),),
            "span_metrics connector, before sampling.",
        ),
        Panel(
            "Span duration (agent collector)",
            "s",
            quantiles(spans, sc.SPAN_METRICS_DURATION, (svc, label(sc.SPAN_NAME)))[1:2],
            "p95 by service and span name, before sampling.",
        ),
    ]
    return Dashboard(
        "difytrace-exporter",
        "difytrace / exporter health",
        "Is telemetry flowing? Drops and failures per process.",
        (service_var(exported, dropped, failures),),
        panels,
    )
