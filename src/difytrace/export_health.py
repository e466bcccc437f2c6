"""Self-metrics of this process's export pipeline: spans exported, spans lost, failed exports.

Operators need to see when telemetry itself is being lost (the exporter-health dashboard and
the spans-dropped alert read these). Counted per batch, not per span, except a span refused by
a full batch queue, which is counted when it happens.
"""

from __future__ import annotations

import collections
from typing import Any

from opentelemetry import metrics

from difytrace import semconv


class ExportHealth:
    """Counters of :data:`semconv.EXPORTER_METRICS`, created at first use."""

    def __init__(self) -> None:
        self._counters: tuple[Any, Any, Any] | None = None

    def _get(self) -> tuple[Any, Any, Any]:
        if self._counters is None:
            meter = metrics.get_meter("difytrace.exporter")
            self._counters = tuple(  # type: ignore[assignment]
                meter.create_counter(s.name, unit=s.unit, description=s.description)
                for s in (
                    semconv.EXPORTER_SPANS_EXPORTED,
                    semconv.EXPORTER_SPANS_DROPPED,
                    semconv.EXPORTER_EXPORT_FAILURES,
                )
            )
        assert self._counters is not None
        return self._counters

    def exported(self, spans: int) -> None:
        """``spans`` were handed over to the backend."""
        self._get()[0].add(spans)

    def dropped(self, reason: str, spans: int) -> None:
        """``spans`` were lost: ``queue_full``, ``export_failed`` or ``shutdown``."""
        self._get()[1].add(spans, {semconv.EXPORTER_REASON: reason})

    def failed(self, signal: str, error_type: str) -> None:
        """One export call of ``signal`` (traces, metrics) failed."""
        self._get()[2].add(1, {semconv.EXPORTER_SIGNAL: signal, semconv.ERROR_TYPE: error_type})


HEALTH = ExportHealth()


def batch_queue(processor: object) -> collections.deque[Any] | None:
    """The bounded queue of an SDK batch span processor (1.27: ``queue``; 1.4x: inside
    ``_batch_processor``), or None for anything else."""
    for holder in (processor, getattr(processor, "_batch_processor", None)):
        for name in ("queue", "_queue"):
            queue = getattr(holder, name, None)
            if isinstance(queue, collections.deque) and queue.maxlen:
                return queue
    return None
