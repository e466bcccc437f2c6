"""The ops_trace dashboard: queue, outcomes by destination, drops, lag, batches."""

from __future__ import annotations

from difytrace import semconv as sc

from ._common import (
    DEST,
    QUEUE,
    REASON,
    RECORD_TYPE,
    SERVICE,
    legend,
    quantiles,
    series,
    service_var,
)
from .grafana import Dashboard, Panel, Target, Variable
from .promql import Scope, ratio, total, with_label

#: The destination shown for ``submitted``, which is counted before any routing.
BEFORE_ROUTING = "all (before routing)"


def ops_trace() -> Dashboard:
    """Queue depth, outcomes by destination, drops, lag, batch sizes, workers."""
    specs = sc.OPS_TRACE_METRICS
    scope = Scope({SERVICE: "service", QUEUE: "queue"})
    by_dest = (DEST,)
    attempts = total(
        scope.rate(sc.OPS_TRACE_DELIVERED, by_dest), scope.rate(sc.OPS_TRACE_FAILED, by_dest)
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
            (Target(scope.gauge(sc.OPS_TRACE_QUEUE_DEPTH, (QUEUE,), agg="max"), legend(QUEUE)),),
            "Records waiting in the ops_trace queue.",
        ),
        Panel(
            "Workers",
            "short",
            (Target(scope.gauge(sc.OPS_TRACE_WORKERS, (QUEUE,)), legend(QUEUE)),),
            "ops_trace worker processes running.",
        ),
        Panel(
            "Submitted by record type",
            "cps",
            (Target(scope.rate(sc.OPS_TRACE_SUBMITTED, (RECORD_TYPE,)), legend(RECORD_TYPE)),),
            "Records enqueued by the app.",
        ),
        Panel(
            "Outcomes by destination",
            "cps",
            (
                Target(
                    with_label(scope.rate(sc.OPS_TRACE_SUBMITTED), DEST, BEFORE_ROUTING),
                    f"submitted {legend(DEST)}",
                ),
                *(
                    Target(scope.rate(spec, by_dest), f"{name} {legend(DEST)}")
                    for name, spec in outcomes
                ),
            ),
            "Submitted (all destinations: records are routed by tenant/app in the worker, after "
            "submit, so `submitted` has no destination), then delivered / failed / retried / "
            "dead-lettered per destination kind.",
        ),
        Panel(
            "Delivery failure ratio",
            "percentunit",
            (Target(ratio(scope.rate(sc.OPS_TRACE_FAILED, by_dest), attempts), legend(DEST)),),
            "Failed attempts / (delivered + failed), by destination kind.",
        ),
        Panel(
            "Dead letters by reason",
            "short",
            (
                Target(
                    scope.rate(sc.OPS_TRACE_DEAD_LETTERED, (DEST, REASON), func="increase"),
                    legend(DEST, REASON),
                ),
            ),
            "Records dead-lettered per rate interval.",
        ),
        Panel(
            "Drops by reason",
            "cps",
            (Target(scope.rate(sc.OPS_TRACE_DROPPED, (REASON,)), legend(REASON)),),
            "Records dropped before enqueue.",
        ),
        Panel(
            "End-to-end lag",
            "s",
            quantiles(scope, sc.OPS_TRACE_LAG, by_dest),
            "Record finished in the app → accepted by the destination.",
        ),
        Panel(
            "Batch size",
            "short",
            (
                *quantiles(scope, batch, by_dest)[:2],
                Target(
                    ratio(scope.rate(batch, by_dest, "_sum"), scope.rate(batch, by_dest, "_count")),
                    f"mean {legend(DEST)}",
                ),
            ),
            "Records per delivery batch.",
        ),
    ]
    queue = Variable(
        "queue", "Queue", series(sc.OPS_TRACE_QUEUE_DEPTH, sc.OPS_TRACE_WORKERS), QUEUE
    )
    return Dashboard(
        "difytrace-ops-trace",
        "difytrace / ops_trace",
        "Delivery of LLM application traces (Langfuse, LangSmith, OTLP).",
        (service_var(*specs), queue),
        panels,
    )
