"""The instruments of the LLM metrics, one set per meter, shared by every LLM instrumentor.

``gen_ai.client.operation.duration``, ``gen_ai.client.token.usage`` and
``gen_ai.client.operation.time_to_first_chunk`` are histograms (the SDK offers no cheaper way to
a histogram); difytrace's cost counter is summed here and *observed* (:class:`CostTotals`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from typing import Any, NamedTuple

from opentelemetry.metrics import CallbackOptions, Observation

from difytrace import semconv

#: Past this many attribute sets, new ones are summed into one overflow series, as the SDK
#: does with its cardinality limit (tenant ids come from baggage: not bounded by difytrace).
_MAX_SERIES = 2000
_OVERFLOW_KEY = ("otel.metric.overflow",)
_OVERFLOW_ATTRIBUTES = {"otel.metric.overflow": True}


class CostTotals:
    """USD cost per metric attribute set, summed here and reported by an observable counter.

    A synchronous ``Counter.add`` costs ~100k instructions on opentelemetry-sdk 1.45 (attribute
    cleaning and hashing, exemplar filter): more than all of difytrace's own work on a call. A
    locked dict update costs ~1k, and the exported series is the same monotonic sum. Reset in
    fork children, which must not report the parent's calls again.
    """

    def __init__(self) -> None:
        self._reset()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._totals: dict[tuple[Any, ...], list[Any]] = {}

    def add(self, amount: float, key: tuple[Any, ...], attributes: dict[str, Any]) -> None:
        """Add ``amount`` to the series of ``attributes`` (``key``: the same, hashable)."""
        with self._lock:
            entry = self._totals.get(key)
            if entry is None:
                if len(self._totals) >= _MAX_SERIES:
                    key, attributes = _OVERFLOW_KEY, _OVERFLOW_ATTRIBUTES
                    entry = self._totals.get(key)
                if entry is None:
                    entry = self._totals[key] = [attributes, 0.0]
            entry[1] += amount

    def observe(self, options: CallbackOptions) -> Iterable[Observation]:
        """The callback of the observable counter: every series' total so far."""
        with self._lock:
            totals = [(attributes, total) for attributes, total in self._totals.values()]
        return [Observation(total, attributes) for attributes, total in totals]


class Instruments(NamedTuple):
    """What :class:`~difytrace.instrumentation.llm.telemetry.Telemetry` records into."""

    duration: Any
    tokens: Any
    time_to_first_chunk: Any
    cost: CostTotals


#: Instruments per meter: every instrumentor (openai, litellm, manual) shares one set, since
#: SDK 1.27 logs a warning each time an instrument name is created again.
_INSTRUMENTS: dict[int, tuple[Any, Instruments]] = {}
_LOCK = threading.Lock()


def instruments(meter: Any) -> Instruments:
    """The instruments of ``meter``, created on first use."""
    with _LOCK:
        cached = _INSTRUMENTS.get(id(meter))
        if cached is not None and cached[0] is meter:
            return cached[1]
        cost = CostTotals()
        meter.create_observable_counter(
            semconv.GEN_AI_CLIENT_COST.name,
            callbacks=[cost.observe],
            unit=semconv.GEN_AI_CLIENT_COST.unit,
            description=semconv.GEN_AI_CLIENT_COST.description,
        )
        made = Instruments(
            _histogram(meter, semconv.GEN_AI_CLIENT_OPERATION_DURATION, _DURATION_BUCKETS),
            _histogram(meter, semconv.GEN_AI_CLIENT_TOKEN_USAGE, _TOKEN_BUCKETS),
            _histogram(meter, semconv.GEN_AI_CLIENT_TIME_TO_FIRST_CHUNK, _DURATION_BUCKETS),
            cost,
        )
        _INSTRUMENTS[id(meter)] = (meter, made)  # the strong reference keeps id() unambiguous
        return made


# One table of bucket boundaries for every histogram (bootstrap turns it into views too).
_DURATION_BUCKETS = semconv.GEN_AI_DURATION_BUCKETS_S
_TOKEN_BUCKETS = semconv.GEN_AI_TOKEN_BUCKETS


def _histogram(meter: Any, spec: semconv.MetricSpec, buckets: tuple[float, ...]) -> Any:
    """The histogram of ``spec`` (name, unit, description from the one catalogue)."""
    try:  # advisory bucket boundaries arrived in API 1.28; 1.27 (Dify's pin) lacks them
        return meter.create_histogram(
            spec.name,
            unit=spec.unit,
            description=spec.description,
            explicit_bucket_boundaries_advisory=list(buckets),
        )
    except TypeError:
        return meter.create_histogram(spec.name, unit=spec.unit, description=spec.description)
