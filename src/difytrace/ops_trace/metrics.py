"""ops_trace metrics, names and attributes from :mod:`difytrace.semconv`.

Instruments are created on first use from the global meter provider (so a provider installed
after import, by ``configure()`` or the test plugin, is the one used), and recreated when the
provider changes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from difytrace import semconv as sc

_lock = threading.Lock()
_state: dict[str, Any] = {"provider": None}
_queue_depth: dict[str, int] = {}


def _instruments() -> dict[str, Any]:
    provider = metrics.get_meter_provider()
    if _state["provider"] is provider:
        return _state
    with _lock:
        if _state["provider"] is provider:
            return _state
        meter = provider.get_meter("difytrace.ops_trace")
        made: dict[str, Any] = {"provider": provider}
        for spec in sc.OPS_TRACE_METRICS:
            if spec.instrument == "counter":
                made[spec.name] = meter.create_counter(spec.name, spec.unit, spec.description)
            elif spec.instrument == "histogram":
                made[spec.name] = meter.create_histogram(spec.name, spec.unit, spec.description)
            elif spec.instrument == "up_down_counter":
                made[spec.name] = meter.create_up_down_counter(
                    spec.name, spec.unit, spec.description
                )
            else:
                made[spec.name] = meter.create_observable_gauge(
                    spec.name, [_observe_depth], spec.unit, spec.description
                )
        _state.clear()
        _state.update(made)
        return _state


def _observe_depth(options: CallbackOptions) -> Iterable[Observation]:
    return [
        Observation(depth, {sc.MESSAGING_DESTINATION_NAME: queue})
        for queue, depth in list(_queue_depth.items())
    ]


def _add(spec: sc.MetricSpec, value: float, attributes: dict[str, str]) -> None:
    _instruments()[spec.name].add(value, attributes)


def submitted(record_type: str) -> None:
    """One record accepted by ``submit()``."""
    _add(sc.OPS_TRACE_SUBMITTED, 1, {sc.OPS_TRACE_RECORD_TYPE: record_type})


def dropped(reason: str, count: int = 1) -> None:
    """Records dropped before enqueue, by reason."""
    _add(sc.OPS_TRACE_DROPPED, count, {sc.OPS_TRACE_REASON: reason})


def delivered(kind: str, count: int) -> None:
    """Records a destination accepted."""
    _add(sc.OPS_TRACE_DELIVERED, count, {sc.OPS_TRACE_DESTINATION: kind})


def failed(kind: str, error_type: str, count: int) -> None:
    """Delivery attempts that failed."""
    _add(sc.OPS_TRACE_FAILED, count, {sc.OPS_TRACE_DESTINATION: kind, sc.ERROR_TYPE: error_type})


def retried(kind: str, error_type: str, count: int) -> None:
    """Records scheduled for another attempt."""
    _add(sc.OPS_TRACE_RETRIED, count, {sc.OPS_TRACE_DESTINATION: kind, sc.ERROR_TYPE: error_type})


def dead_lettered(kind: str, reason: str, count: int = 1) -> None:
    """Records moved to the dead-letter store."""
    _add(
        sc.OPS_TRACE_DEAD_LETTERED,
        count,
        {sc.OPS_TRACE_DESTINATION: kind, sc.OPS_TRACE_REASON: reason},
    )


def lags(kind: str, seconds: Iterable[float]) -> None:
    """Record finished → accepted by the destination, for the records of one request."""
    histogram = _instruments()[sc.OPS_TRACE_LAG.name]
    attributes = {sc.OPS_TRACE_DESTINATION: kind}
    for value in seconds:
        histogram.record(max(value, 0.0), attributes)


def batch_size(kind: str, size: int) -> None:
    """Records in one destination request."""
    _instruments()[sc.OPS_TRACE_BATCH_SIZE.name].record(size, {sc.OPS_TRACE_DESTINATION: kind})


def worker_running(queue: str, delta: int) -> None:
    """+1 when a worker process starts consuming, -1 when it stops."""
    _add(sc.OPS_TRACE_WORKERS, delta, {sc.MESSAGING_DESTINATION_NAME: queue})


def set_queue_depth(queue: str, depth: int) -> None:
    """Latest observed depth of the queue (reported by the gauge at collection)."""
    _queue_depth[queue] = depth
    _instruments()
