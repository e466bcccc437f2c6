"""Monotonic sums kept in process and reported by an observable counter.

A synchronous ``Counter.add`` costs ~100k instructions on opentelemetry-sdk 1.45 (attribute
cleaning and hashing, the exemplar filter): more than all of difytrace's own work on a Celery
publish or an LLM call. A locked dict update costs ~1k, and the observable counter exports the
same cumulative series. Used for the Celery published count and the LLM cost.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Iterable, Mapping
from typing import Any

from opentelemetry.metrics import CallbackOptions, Observation

from difytrace.forksafe import after_fork_in_child

#: Past this many attribute sets, new ones are summed into one overflow series, as the SDK
#: does with its cardinality limit (tenant ids come from baggage: not bounded by difytrace).
MAX_SERIES = 2000
OVERFLOW_ATTRIBUTES: Mapping[str, Any] = {"otel.metric.overflow": True}
_OVERFLOW_KEY = ("otel.metric.overflow",)


class ObservedSums:
    """Sums per attribute set; :meth:`observe` is the observable counter's callback.

    Reset in fork children (a gunicorn or Celery prefork child must not report its parent's
    counts again). Example:

    >>> sums = ObservedSums()
    >>> sums.add(2, ("ct.add", "celery"), {"celery.task.name": "ct.add"})
    >>> sums.add(1, ("ct.add", "celery"), {"celery.task.name": "ct.add"})
    >>> [(o.value, dict(o.attributes)) for o in sums.observe(None)]
    [(3, {'celery.task.name': 'ct.add'})]
    """

    def __init__(self, max_series: int | None = None) -> None:
        self._max_series = max_series
        self._reset()
        after_fork_in_child(self._reset)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._sums: dict[Hashable, list[Any]] = {}

    def add(self, amount: float, key: Hashable, attributes: Mapping[str, Any]) -> None:
        """Add ``amount`` to the series of ``attributes``; ``key`` identifies it (hashable,
        equal for equal attributes), so the attributes are never hashed here."""
        with self._lock:
            entry = self._sums.get(key)
            if entry is None:
                limit = MAX_SERIES if self._max_series is None else self._max_series
                if len(self._sums) >= limit:
                    key, attributes = _OVERFLOW_KEY, OVERFLOW_ATTRIBUTES
                    entry = self._sums.get(key)
                if entry is None:
                    entry = self._sums[key] = [attributes, 0]
            entry[1] += amount

    def observe(self, options: CallbackOptions | None) -> Iterable[Observation]:
        """Every series' total so far (the callback of an observable counter)."""
        with self._lock:
            totals = [(attributes, total) for attributes, total in self._sums.values()]
        return [Observation(total, attributes) for attributes, total in totals]
