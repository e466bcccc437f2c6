"""The instruments of the LLM metrics, one set per meter, shared by every LLM instrumentor.

``gen_ai.client.operation.duration``, ``gen_ai.client.token.usage`` and
``gen_ai.client.operation.time_to_first_chunk`` are histograms, aggregated in process
(:mod:`difytrace.lean_histogram`); difytrace's cost counter is summed here and *observed*
(:class:`CostTotals`).
"""

from __future__ import annotations

import threading
from typing import Any, NamedTuple

from difytrace import semconv
from difytrace.lean_histogram import LeanHistogram, histogram
from difytrace.observed_sums import ObservedSums


class CostTotals(ObservedSums):
    """USD cost per metric attribute set, reported by the ``difytrace.gen_ai.client.cost``
    observable counter (see :mod:`difytrace.observed_sums` for why not ``Counter.add``)."""


class Instruments(NamedTuple):
    """What :class:`~difytrace.instrumentation.llm.telemetry.Telemetry` records into."""

    duration: LeanHistogram
    tokens: LeanHistogram
    time_to_first_chunk: LeanHistogram
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
            histogram(meter, semconv.GEN_AI_CLIENT_OPERATION_DURATION, _DURATION_BUCKETS),
            histogram(meter, semconv.GEN_AI_CLIENT_TOKEN_USAGE, _TOKEN_BUCKETS),
            histogram(meter, semconv.GEN_AI_CLIENT_TIME_TO_FIRST_CHUNK, _DURATION_BUCKETS),
            cost,
        )
        _INSTRUMENTS[id(meter)] = (meter, made)  # the strong reference keeps id() unambiguous
        return made


# One table of bucket boundaries for every histogram (bootstrap turns it into views too).
_DURATION_BUCKETS = semconv.GEN_AI_DURATION_BUCKETS_S
_TOKEN_BUCKETS = semconv.GEN_AI_TOKEN_BUCKETS
