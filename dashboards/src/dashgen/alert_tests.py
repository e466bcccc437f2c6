"""promtool unit tests for :mod:`dashgen.alerts`: for every alert a case where it fires and
cases where it must stay quiet. Series names come from the same MetricSpecs as the rules."""

from __future__ import annotations

import re
from typing import Any

from difytrace import semconv as sc

from . import alerts
from .alerts import DEST, QUEUE
from .promql import label

REASON = label(sc.OPS_TRACE_REASON)
EXPORTER_REASON = label(sc.EXPORTER_REASON)
PROC = 'job="worker", instance="w1:9464"'
Series = list[tuple[str, str]]


def _series(spec: sc.MetricSpec, labels: str, suffix: str = "") -> str:
    return f"{spec.prometheus_name}{suffix}{{{labels}}}"


def _lag(bucket_values: dict[str, str]) -> Series:
    lag = sc.OPS_TRACE_LAG
    return [
        (_series(lag, f'{DEST}="langfuse", le="{le}", {PROC}', "_bucket"), v)
        for le, v in bucket_values.items()
    ]


def _delivery(failed: str | None, delivered: str | None = "0+10x40") -> Series:
    out = []
    if delivered is not None:
        out.append((_series(sc.OPS_TRACE_DELIVERED, f'{DEST}="otlp", {PROC}'), delivered))
    if failed is not None:
        out.append(
            (_series(sc.OPS_TRACE_FAILED, f'{DEST}="otlp", error_type="503", {PROC}'), failed)
        )
    return out


_DEPTH = sc.OPS_TRACE_QUEUE_DEPTH
_SUBMITTED = sc.OPS_TRACE_SUBMITTED
RECORD_TYPE = label(sc.OPS_TRACE_RECORD_TYPE)
API = 'job="api", instance="a1:9464"'
_DEAD = sc.OPS_TRACE_DEAD_LETTERED
_DROPPED = sc.EXPORTER_SPANS_DROPPED
#: alert → (eval time, labels of the firing alert, [firing inputs], [quiet inputs]).
CASES: dict[str, tuple[str, dict[str, str], list[Series], list[Series]]] = {
    "DifytraceOpsTraceBacklogGrowing": (
        "25m",
        {QUEUE: "ops_trace"},
        [[(_series(_DEPTH, f'{QUEUE}="ops_trace", {PROC}'), "0+20x30")]],
        [
            [(_series(_DEPTH, f'{QUEUE}="ops_trace", {PROC}'), "500x30")],
            [(_series(_DEPTH, f'{QUEUE}="ops_trace", {PROC}'), "0+1x30")],
        ],
    ),
    "DifytraceOpsTraceLagHigh": (
        "20m",
        {DEST: "langfuse"},
        [_lag({"1": "0x40", "60": "0x40", "120": "0+10x40", "+Inf": "0+10x40"})],
        [_lag({"1": "0+10x40", "60": "0+10x40", "120": "0+10x40", "+Inf": "0+10x40"})],
    ),
    "DifytraceOpsTraceNoWorkers": (
        "25m",
        {},
        [[(_series(_SUBMITTED, f'{RECORD_TYPE}="workflow", {API}'), "0+10x30")]],
        [
            [  # a worker reports the depth
                (_series(_SUBMITTED, f'{RECORD_TYPE}="workflow", {API}'), "0+10x30"),
                (_series(_DEPTH, f'{QUEUE}="ops_trace", {PROC}'), "0x30"),
            ],
            [(_series(_SUBMITTED, f'{RECORD_TYPE}="workflow", {API}'), "5x30")],  # idle app
        ],
    ),
    "DifytraceOpsTraceDeadLetters": (
        "15m",
        {DEST: "langsmith", REASON: "validation"},
        [
            [
                (
                    _series(_DEAD, f'{DEST}="langsmith", {REASON}="validation", {PROC}'),
                    " ".join(["0"] * 13 + ["1"] * 4),
                )
            ],
            # A series born at its first dead letter: nothing for increase() to see.
            [
                (
                    _series(_DEAD, f'{DEST}="langsmith", {REASON}="validation", {PROC}'),
                    " ".join(["_"] * 13 + ["1"] * 4),
                )
            ],
        ],
        [[(_series(_DEAD, f'{DEST}="langsmith", {REASON}="validation", {PROC}'), "3x20")]],
    ),
    "DifytraceOpsTraceDeliveryFailing": (
        "20m",
        {DEST: "otlp"},
        # Some deliveries fail; or every one does, so there is no delivered series at all.
        [_delivery("0+5x40"), _delivery("0+5x40", delivered=None)],
        [_delivery("0x40"), _delivery(None)],
    ),
    "DifytraceSpansDropped": (
        "15m",
        {"job": "worker", "instance": "w1:9464"},
        [[(_series(_DROPPED, f'{EXPORTER_REASON}="queue_full", {PROC}'), "0+5x20")]],
        [[(_series(_DROPPED, f'{EXPORTER_REASON}="queue_full", {PROC}'), "0x20")]],
    ),
}


def _annotations(alert: alerts.Alert, labels: dict[str, str]) -> dict[str, str]:
    def fill(text: str) -> str:
        return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], text)

    return {"summary": fill(alert.summary), "description": fill(alert.description)}


def _case(alert: alerts.Alert, at: str, series: Series, fired: dict[str, str] | None) -> Any:
    expected = []
    if fired is not None:
        expected = [
            {
                "exp_labels": {"severity": alert.severity, **fired},
                "exp_annotations": _annotations(alert, fired),
            }
        ]
    return {
        "interval": "1m",
        "input_series": [{"series": s, "values": v} for s, v in series],
        "alert_rule_test": [{"eval_time": at, "alertname": alert.name, "exp_alerts": expected}],
    }


def tests_file(rules_path: str) -> dict[str, Any]:
    """The ``promtool test rules`` file; raises if an alert has no case."""
    by_name = {a.name: a for a in alerts.ALERTS}
    if set(by_name) != set(CASES):
        raise KeyError(f"alerts without cases / cases without alerts: {set(by_name) ^ set(CASES)}")
    tests = []
    for name, (at, fired, firing, quiet) in CASES.items():
        tests += [_case(by_name[name], at, series, fired) for series in firing]
        tests += [_case(by_name[name], at, series, None) for series in quiet]
    return {"rule_files": [rules_path], "evaluation_interval": "1m", "tests": tests}
