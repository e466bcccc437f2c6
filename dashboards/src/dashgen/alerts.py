"""Prometheus alert rules for difytrace, and their promtool unit tests (one fire, one quiet
case per alert). Thresholds are module constants so the tests and the rules agree."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from difytrace import semconv as sc

from .promql import Scope, label, ratio, total

BACKLOG_MIN_RECORDS = 100
LAG_P99_MAX_S = 60
FAILURE_RATIO_MAX = 0.1
DEST = label(sc.OPS_TRACE_DESTINATION)
QUEUE = label(sc.MESSAGING_DESTINATION_NAME)
_PLAIN = Scope({})


@dataclass(frozen=True)
class Alert:
    """One alerting rule; ``labels`` of the firing alert are the ``by`` labels of ``expr``."""

    name: str
    expr: str
    duration: str
    severity: str
    summary: str
    description: str

    def to_rule(self) -> dict[str, Any]:
        return {
            "alert": self.name,
            "expr": self.expr,
            "for": self.duration,
            "labels": {"severity": self.severity},
            "annotations": {"summary": self.summary, "description": self.description},
        }


def _failure_ratio() -> str:
    by = (DEST,)
    failed = _PLAIN.rate(sc.OPS_TRACE_FAILED, by, window="5m")
    delivered = _PLAIN.rate(sc.OPS_TRACE_DELIVERED, by, window="5m")
    return f"{ratio(failed, total(delivered, failed))} > {FAILURE_RATIO_MAX}"


def _lbl(name: str) -> str:
    return "{{ $labels." + name + " }}"


_DEAD_BY = (DEST, label(sc.OPS_TRACE_REASON))
_DEAD_SERIES = _PLAIN.selector(sc.OPS_TRACE_DEAD_LETTERED)
# A counter series is born at its first dead letter (value 1, or more), where increase() sees
# nothing: series that did not exist 10 minutes ago count too.
_DEAD = (
    f"{_PLAIN.rate(sc.OPS_TRACE_DEAD_LETTERED, _DEAD_BY, func='increase', window='10m')} > 0"
    f" or count by ({', '.join(_DEAD_BY)}) ({_DEAD_SERIES} unless {_DEAD_SERIES} offset 10m)"
)
ALERTS: tuple[Alert, ...] = (
    Alert(
        "DifytraceOpsTraceBacklogGrowing",
        f"max by ({QUEUE}) (deriv({_PLAIN.selector(sc.OPS_TRACE_QUEUE_DEPTH)}[10m])) > 0"
        f" and max by ({QUEUE}) ({_PLAIN.selector(sc.OPS_TRACE_QUEUE_DEPTH)})"
        f" > {BACKLOG_MIN_RECORDS}",
        "15m",
        "warning",
        f"ops_trace backlog on {_lbl(QUEUE)} keeps growing",
        f"More than {BACKLOG_MIN_RECORDS} records wait and the queue has grown for 15 minutes: "
        "workers are too few, stuck, or a destination is slow.",
    ),
    Alert(
        "DifytraceOpsTraceLagHigh",
        f"{_PLAIN.quantile(sc.OPS_TRACE_LAG, 0.99, (DEST,), window='5m')} > {LAG_P99_MAX_S}",
        "10m",
        "warning",
        f"ops_trace p99 lag to {_lbl(DEST)} is above {LAG_P99_MAX_S}s",
        "Traces reach this destination kind late: check worker count and destination latency.",
    ),
    Alert(
        # The depth gauge comes from workers' sweepers: with none running there is no series,
        # and the backlog alert above has nothing to look at.
        "DifytraceOpsTraceNoWorkers",
        f"{_PLAIN.rate(sc.OPS_TRACE_SUBMITTED, (), window='10m')} > 0"
        f" unless on() count({_PLAIN.selector(sc.OPS_TRACE_QUEUE_DEPTH)})",
        "10m",
        "critical",
        "ops_trace records are submitted but no worker reports the queue",
        "No `difytrace worker` (or celery worker on the ops_trace queue) has run its sweeper "
        "for 10 minutes while the app submits records: they pile up in the outbox.",
    ),
    Alert(
        "DifytraceOpsTraceDeadLetters",
        _DEAD,
        "0m",
        "warning",
        f"ops_trace records dead-lettered for {_lbl(DEST)}",
        f"Reason: {_lbl(label(sc.OPS_TRACE_REASON))}. Inspect with `difytrace dlq list`, fix, "
        "then `difytrace dlq replay`.",
    ),
    Alert(
        "DifytraceOpsTraceDeliveryFailing",
        _failure_ratio(),
        "10m",
        "critical",
        f"ops_trace deliveries to {_lbl(DEST)} fail",
        f"More than {FAILURE_RATIO_MAX:.0%} of delivery attempts failed for 10 minutes.",
    ),
    Alert(
        "DifytraceSpansDropped",
        f"{_PLAIN.rate(sc.EXPORTER_SPANS_DROPPED, ('job', 'instance'), window='5m')} > 0",
        "5m",
        "warning",
        f"{_lbl('job')} {_lbl('instance')} drops spans",
        "The process's span pipeline loses spans (batch queue full or export failing).",
    ),
)


def rules_file() -> dict[str, Any]:
    """The rule file Prometheus loads (``rule_files:``)."""
    return {"groups": [{"name": "difytrace", "rules": [a.to_rule() for a in ALERTS]}]}
