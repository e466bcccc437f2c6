"""Histograms aggregated by the SDK's rules at the cost of a dict update.

``Histogram.record`` costs ~114k instructions on opentelemetry-sdk 1.45 for five attributes
(~7 µs per attribute): it builds a ``Measurement`` that cleans the attributes recursively,
copies them, hashes them recursively into a key, then takes two locks and offers an exemplar
through four calls. An LLM call records three histograms, a Celery task one or two: the SDK's
records were half of difytrace's whole cost on an LLM call and a third on a task run.

:class:`LeanHistogram` keeps the same aggregation in process — explicit buckets found with the
same ``bisect_left``, sum, count, min and max per attribute set and per reader, exemplars as the
SDK's aligned-bucket reservoir keeps them (the last sampled measurement per bucket, SDK 1.28+)
— and adds its data points to what the SDK collects for each reader, in the instrument's own
scope, with the reader's temporality and the SDK's start times. The SDK instrument is still
created (it keeps the name registered, and what others record into it joins the same series);
it aggregates only where difytrace cannot reproduce the pipeline: no SDK provider yet (the
proxy drops the value, as before), another SDK, a View of the host's own on the instrument, a
reader aggregation other than the default, or a custom exemplar filter or reservoir.

Where it differs, on purpose: a non-finite amount is refused on every SDK version (1.27 would
record it and export a NaN sum); a forked child starts with empty series (the SDK's children
report their parent's measurements again, under their own ``service.instance.id``). Attribute
sets are told apart by equality, so ``True``, ``1`` and ``1.0`` under one key share a series,
as SDK 1.27 does (1.45 keeps them apart; difytrace never records such mixes). Attributes are
cleaned as the SDK cleans them when an attribute set is first seen, not at every record.
"""

from __future__ import annotations

import _thread
import dataclasses
import logging
import math
import sys
import threading
import weakref
from bisect import bisect_left
from collections.abc import Callable, Hashable, Mapping, Sequence
from time import time_ns
from typing import Any

from opentelemetry import metrics
from opentelemetry.context import Context
from opentelemetry.metrics._internal.instrument import _ProxyHistogram
from opentelemetry.sdk.metrics import Histogram as SdkHistogram
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    HistogramDataPoint,
    Metric,
    MetricsData,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.metrics.export import Histogram as HistogramData
from opentelemetry.sdk.metrics.view import (
    DefaultAggregation,
    ExplicitBucketHistogramAggregation,
)
from opentelemetry.trace import INVALID_SPAN
from opentelemetry.util.types import Attributes

from difytrace import semconv
from difytrace._guard import report_internal_error
from difytrace.context_keys import span_in
from difytrace.forksafe import after_fork_in_child

logger = logging.getLogger(__name__)

#: The specification's default explicit bucket boundaries (the SDK's when no advice is given).
DEFAULT_BOUNDARIES: tuple[float, ...] = (0.0, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0)
DEFAULT_BOUNDARIES += (500.0, 750.0, 1000.0, 2500.0, 5000.0, 7500.0, 10000.0)
_EMPTY_KEY: frozenset[Any] = frozenset()
#: Label sets remembered by identity per histogram (callers cache theirs: bounded there too).
_SHARED_MAX = 1024
_HAS_EXEMPLARS = "exemplars" in {f.name for f in dataclasses.fields(HistogramDataPoint)}
_NOT_RESOLVED: Any = object()
#: Resolving a histogram and wiring a provider's collection happen once each, under this lock.
_SETUP = threading.RLock()
#: Every lean state, emptied in a forked child (held weakly: a dropped provider is freed).
_STATES: weakref.WeakSet[_LeanState] = weakref.WeakSet()

# Exemplar filters by class name (SDK 1.28+); None: the SDK has no exemplars.
_FILTERS = {
    "AlwaysOffExemplarFilter": "off",
    "AlwaysOnExemplarFilter": "on",
    "TraceBasedExemplarFilter": "trace",
}


def _clean_like_the_sdk() -> Callable[[Mapping[str, Any]], Mapping[str, Any]]:
    """How the SDK cleans measurement attributes: 1.28+ in ``Measurement``, 1.27 not at all."""
    from opentelemetry.sdk.metrics._internal.measurement import Measurement

    if not hasattr(Measurement, "__post_init__"):
        return dict
    from opentelemetry.attributes import _clean_attribute_value

    return lambda attributes: _clean_attribute_value(attributes, None)  # type: ignore[no-any-return]


_clean = _clean_like_the_sdk()


def histogram(
    meter: metrics.Meter, spec: semconv.MetricSpec, buckets: Sequence[float]
) -> LeanHistogram:
    """The histogram of ``spec`` with ``buckets`` as the advised boundaries.

    API 1.27 (Dify's pin) takes no advice: there, difytrace's provider gives the buckets
    through a View (``bootstrap``), which this histogram follows.
    """
    try:
        sdk = meter.create_histogram(
            spec.name,
            unit=spec.unit,
            description=spec.description,
            explicit_bucket_boundaries_advisory=list(buckets),
        )
    except TypeError:
        sdk = meter.create_histogram(spec.name, unit=spec.unit, description=spec.description)
    return LeanHistogram(sdk)


class LeanHistogram(metrics.Histogram):
    """Records like the SDK histogram it wraps; see the module docstring for what differs."""

    def __init__(self, sdk_histogram: metrics.Histogram) -> None:
        self.name = getattr(sdk_histogram, "name", "")
        self.unit = getattr(sdk_histogram, "unit", "")
        self.description = getattr(sdk_histogram, "description", "")
        self._sdk = sdk_histogram
        self._lean: _LeanState | None = _NOT_RESOLVED

    def record(
        self,
        amount: int | float,
        attributes: Attributes = None,
        context: Context | None = None,
    ) -> None:
        """Record ``amount`` (non-negative, finite) for ``attributes``."""
        self._record(amount, attributes, context, shared=False)

    def record_shared(self, amount: int | float, attributes: Mapping[str, Any]) -> None:
        """:meth:`record` for a label set its caller keeps and never mutates (a cached dict).

        It is recognised by identity, so its items are not hashed into a key at every record
        (0.6 µs for seven attributes; an LLM call records three such sets).
        """
        self._record(amount, attributes, None, shared=True)

    def _record(
        self, amount: int | float, attributes: Attributes, context: Context | None, shared: bool
    ) -> None:
        lean = self._lean
        if lean is _NOT_RESOLVED:
            lean = self._resolve()
        if lean is None:
            if context is None:  # API 1.27 (Dify's pin) takes no context
                self._sdk.record(amount, attributes)
            else:
                self._sdk.record(amount, attributes, context)
            return
        try:
            lean.record(amount, attributes, context, shared)
        except Exception as exc:
            report_internal_error("lean histogram record", exc)

    def _resolve(self) -> _LeanState | None:
        """The lean state once the SDK instrument exists; None while it cannot be reproduced.

        Before a provider is set the proxy has no instrument: resolved again at the next call.
        """
        instrument: Any = self._sdk
        if isinstance(instrument, _ProxyHistogram):
            instrument = instrument._real_instrument
            if instrument is None:
                return None
        with _SETUP:
            if self._lean is not _NOT_RESOLVED:
                return self._lean
            lean = None
            try:
                lean = _LeanState.of(instrument)
            except Exception as exc:
                report_internal_error("lean histogram", exc)
            self._lean = lean
            return lean


class _Series:
    """One attribute set's aggregation for one reader (the SDK's histogram aggregation)."""

    __slots__ = ("attributes", "count", "counts", "exemplars", "max", "min", "start_ns", "sum")

    def __init__(self, attributes: Mapping[str, Any], buckets: int, start_ns: int) -> None:
        self.attributes = attributes
        self.start_ns = start_ns
        self.counts = [0] * buckets
        self.count = 0
        self.sum: float = 0
        self.min = math.inf
        self.max = -math.inf
        #: bucket index → (value, time, span id, trace id, measurement had attributes)
        self.exemplars: dict[int, _Exemplar] = {}


_Exemplar = tuple[float, int, "int | None", "int | None", bool]


class _Reader:
    """One reader's view of one histogram: its temporality and series.

    ``interval`` holds what was recorded since the reader's last collection; ``known`` every
    attribute set seen, with the start time of its next point (cumulative: the first
    measurement; delta: the last collection) and, for a cumulative reader, its totals.
    ``storage`` is the SDK's storage of the reader: a reader removed and added again gets a new
    one, and starts afresh as the SDK starts it.
    """

    __slots__ = ("delta", "interval", "known", "reader", "storage")

    def __init__(self, reader: Any, storage: Any, delta: bool) -> None:
        self.reader = reader
        self.storage = storage
        self.delta = delta
        self.interval: dict[Hashable, _Series] = {}
        self.known: dict[Hashable, _Series] = {}


class _LeanState:
    """A histogram resolved on one SDK pipeline (one meter provider)."""

    def __init__(
        self,
        instrument: Any,
        pipeline: _Pipeline,
        boundaries: tuple[float, ...],
        record_min_max: bool,
        views: bool,
    ) -> None:
        self.instrument = instrument
        self.pipeline = pipeline
        self.boundaries = boundaries
        self.buckets = len(boundaries) + 1
        self.record_min_max = record_min_max
        self.views = views  # whether a View gives the buckets
        self.meter_config = getattr(instrument, "_meter_config", None)  # SDK 1.4x: may disable
        self.readers: list[_Reader] = []
        #: attribute set as recorded (its items) → (its series key, the cleaned attributes)
        self.canonical: dict[Hashable, tuple[Hashable, Mapping[str, Any]]] = {}
        #: id of a label set recorded with record_shared → (the set, its canonical pair)
        self.shared: dict[int, tuple[Any, tuple[Hashable, Mapping[str, Any]]]] = {}
        self.lock = _raw_lock()

    def forget(self) -> None:
        """Drop every series (in a forked child: the parent's measurements are its own)."""
        self.lock = _raw_lock()
        for reader in self.readers:
            reader.interval.clear()
            reader.known.clear()

    @classmethod
    def of(cls, instrument: Any) -> _LeanState | None:
        """The lean state of an SDK histogram (one per instrument), or None where its
        pipeline is not reproduced."""
        if not isinstance(instrument, SdkHistogram):
            return None
        existing: _LeanState | None = instrument.__dict__.get("_difytrace_lean")
        if existing is not None:
            return existing
        pipeline = _Pipeline.of(getattr(instrument, "_measurement_consumer", None))
        buckets = None if pipeline is None else _buckets(instrument, pipeline)
        if pipeline is None or buckets is None:
            return None
        boundaries, record_min_max, views = buckets
        state = cls(instrument, pipeline, tuple(boundaries), record_min_max, views)
        pipeline.add(state)
        setattr(instrument, "_difytrace_lean", state)  # noqa: B010 - one state per instrument
        # Whoever else records into this instrument joins the same series: one stream.
        instrument.record = state.record_guarded  # type: ignore[method-assign]
        _STATES.add(state)
        return state

    def reader(self, reader: Any) -> _Reader | None:
        """The series of ``reader`` (None for a reader this histogram never saw)."""
        for known in self.readers:
            if known.reader is reader:
                return known
        return None

    def sync(self, storages: Mapping[Any, Any]) -> None:
        """Follow the provider's readers: series for a new one, none for a removed one."""
        with self.lock:
            kept = [r for r in self.readers if storages.get(r.reader) is r.storage]
            for reader, storage in storages.items():
                if any(known.reader is reader for known in kept):
                    continue
                if not self.views and not _default_aggregation(reader, self.instrument):
                    logger.warning(
                        "difytrace: a reader added later asks for its own aggregation of "
                        "%s; it gets explicit buckets",
                        self.instrument.name,
                    )
                temporality = reader._instrument_class_temporality.get(type(self.instrument))
                delta = temporality is AggregationTemporality.DELTA
                kept.append(_Reader(reader, storage, delta))
            self.readers = kept

    def record_guarded(
        self, amount: int | float, attributes: Attributes = None, context: Context | None = None
    ) -> None:
        """:meth:`record` with the SDK instrument's signature, never raising into the caller."""
        try:
            self.record(amount, attributes, context)
        except Exception as exc:
            report_internal_error("lean histogram record", exc)

    def record(
        self,
        amount: float,
        attributes: Attributes,
        context: Context | None,
        shared: bool = False,
    ) -> None:
        config = self.meter_config
        if config is not None and not config.is_enabled:
            return
        if not (0 <= amount < math.inf):
            self._refuse(amount)
            return
        known = self.shared.get(id(attributes)) if shared else None
        if known is not None and known[0] is attributes:
            series_key, cleaned = known[1]
        else:
            series_key, cleaned = self._canonical_of(attributes, shared)
        index = bisect_left(self.boundaries, amount)
        pipeline = self.pipeline
        if pipeline.consumer._reader_storages is not pipeline.synced:
            pipeline.sync()  # a reader was added or removed (SDK 1.3x+)
        exemplar = None
        if pipeline.exemplar_mode is not None:
            exemplar = pipeline.exemplar(amount, bool(cleaned), context)
        record_min_max = self.record_min_max
        with self.lock:
            for reader in self.readers:
                series = reader.interval.get(series_key)
                if series is None:
                    series = self._new_series(reader, series_key, cleaned)
                series.counts[index] += 1
                series.count += 1
                series.sum += amount
                if record_min_max:
                    series.min = min(series.min, amount)
                    series.max = max(series.max, amount)
                if exemplar is not None:
                    series.exemplars[index] = exemplar

    def _canonical_of(
        self, attributes: Attributes, shared: bool
    ) -> tuple[Hashable, Mapping[str, Any]]:
        """The series key and cleaned attributes of ``attributes``, found by their items."""
        try:
            key: Hashable = frozenset(attributes.items()) if attributes else _EMPTY_KEY
            canonical = self.canonical.get(key)
        except (TypeError, AttributeError):  # an unhashable value, or not a mapping
            key, canonical = None, None
        if canonical is None:
            canonical = self._canonical(key, attributes)
        if shared:
            if len(self.shared) >= _SHARED_MAX:
                self.shared.clear()
            # Held strongly: while it is here, no other object can take its id.
            self.shared[id(attributes)] = (attributes, canonical)
        return canonical

    def _canonical(
        self, key: Hashable | None, attributes: Attributes
    ) -> tuple[Hashable, Mapping[str, Any]]:
        """The series key and cleaned attributes of an attribute set seen for the first time
        (or of one that cannot be remembered: an unhashable value)."""
        if attributes is not None and not isinstance(attributes, Mapping):
            logger.warning(
                "Invalid type '%s' for attributes. Expected a Mapping or None.", type(attributes)
            )
            attributes = None
        cleaned = _clean(attributes) if attributes else {}
        series_key = (
            frozenset((k, _frozen(v)) for k, v in cleaned.items()) if cleaned else _EMPTY_KEY
        )
        canonical = (series_key, cleaned)
        if key is not None:
            self.canonical[key] = canonical
        return canonical

    def _new_series(self, reader: _Reader, key: Hashable, attributes: Mapping[str, Any]) -> _Series:
        known = reader.known.get(key)
        if known is None:
            known = reader.known[key] = _Series(dict(attributes), self.buckets, time_ns())
        series = reader.interval[key] = _Series(known.attributes, self.buckets, known.start_ns)
        return series

    def _refuse(self, amount: float) -> None:
        name = self.instrument.name
        if math.isfinite(amount):
            logger.warning("Record amount must be non-negative on Histogram %s.", name)
        else:
            logger.warning(
                "Record amount %s is not finite on Histogram %s, ignoring measurement.",
                amount,
                name,
            )

    def collect(self, reader: Any, now: int) -> Metric | None:
        """This histogram's metric for ``reader`` at ``now``, or None without points."""
        state = self.reader(reader)
        if state is None:
            return None
        with self.lock:
            interval, state.interval = state.interval, {}
            if state.delta:
                # The SDK's delta points start at the previous collection, with or without
                # measurements in between.
                points = [self._point(s, s, now) for s in interval.values()]
                for known in state.known.values():
                    known.start_ns = now
            else:
                for key, fresh in interval.items():
                    _add(state.known[key], fresh)
                points = [
                    self._point(total, interval.get(key), now) for key, total in state.known.items()
                ]
        if not points:
            return None
        temporality = (
            AggregationTemporality.DELTA if state.delta else AggregationTemporality.CUMULATIVE
        )
        return Metric(
            name=self.instrument.name,
            description=self.instrument.description,
            unit=self.instrument.unit,
            data=HistogramData(data_points=points, aggregation_temporality=temporality),
        )

    def _point(self, series: _Series, interval: _Series | None, now: int) -> HistogramDataPoint:
        fields: dict[str, Any] = {
            "attributes": series.attributes,
            "start_time_unix_nano": series.start_ns,
            "time_unix_nano": now,
            "count": series.count,
            "sum": series.sum,
            "bucket_counts": tuple(series.counts),
            "explicit_bounds": self.boundaries,
            "min": series.min,
            "max": series.max,
        }
        if _HAS_EXEMPLARS:  # the exemplars of this interval only, as the SDK's reservoir
            fields["exemplars"] = _exemplars(interval.exemplars if interval else {})
        return HistogramDataPoint(**fields)


def _add(total: _Series, interval: _Series) -> None:
    total.counts = [a + b for a, b in zip(total.counts, interval.counts, strict=True)]
    total.count += interval.count
    total.sum += interval.sum
    total.min = min(total.min, interval.min)
    total.max = max(total.max, interval.max)


def _exemplars(kept: Mapping[int, _Exemplar]) -> list[Any]:
    if not kept:
        return []
    from opentelemetry.sdk.metrics import Exemplar  # type: ignore[attr-defined]  # SDK 1.28+

    made = []
    for index in sorted(kept):
        value, time, span_id, trace_id, had_attributes = kept[index]
        # The SDK keeps the measurement's attributes not already on the point: none here.
        made.append(Exemplar({} if had_attributes else None, value, time, span_id, trace_id))
    return made


class _Pipeline:
    """One SDK meter provider's collection, with the lean histograms' points added."""

    def __init__(self, consumer: Any) -> None:
        config = consumer._sdk_config
        self.consumer = consumer
        self.config = config
        self.views = tuple(config.views)
        exemplar_filter = getattr(config, "exemplar_filter", None)
        mode = None if exemplar_filter is None else _FILTERS[type(exemplar_filter).__name__]
        self.exemplar_mode = None if mode == "off" else mode
        self.states: list[_LeanState] = []
        self.synced = consumer._reader_storages
        self._original = consumer.collect
        consumer.collect = self.collect  # readers added later are handed this one
        for reader in self.storages():
            if getattr(reader, "_collect", None) == self._original:
                reader._collect = self.collect

    @classmethod
    def of(cls, consumer: Any) -> _Pipeline | None:
        config = getattr(consumer, "_sdk_config", None)
        if config is None or not hasattr(consumer, "_reader_storages"):
            return None
        exemplar_filter = getattr(config, "exemplar_filter", None)
        if exemplar_filter is not None and type(exemplar_filter).__name__ not in _FILTERS:
            return None
        pipeline: _Pipeline | None = getattr(consumer, "_difytrace_pipeline", None)
        if pipeline is None:
            pipeline = consumer._difytrace_pipeline = cls(consumer)
        return pipeline

    def storages(self) -> Mapping[Any, Any]:
        """The provider's readers and their SDK storages."""
        return self.consumer._reader_storages  # type: ignore[no-any-return]

    def add(self, state: _LeanState) -> None:
        state.sync(self.storages())
        self.states = [*self.states, state]

    def sync(self) -> None:
        """Hand the provider's current readers to every histogram."""
        with _SETUP:
            storages = self.consumer._reader_storages
            for state in self.states:
                state.sync(storages)
            self.synced = storages

    def exemplar(
        self, amount: float, had_attributes: bool, context: Context | None
    ) -> _Exemplar | None:
        """The exemplar of a measurement, as the provider's exemplar filter decides."""
        span = span_in(context)
        if span is None or span is INVALID_SPAN:  # the SDK's test: no span in the context
            if self.exemplar_mode == "trace":
                return None
            return (amount, time_ns(), None, None, had_attributes)
        span_context = span.get_span_context()
        if self.exemplar_mode == "trace" and not span_context.trace_flags.sampled:
            return None
        return (amount, time_ns(), span_context.span_id, span_context.trace_id, had_attributes)

    def collect(self, reader: Any, timeout_millis: float = 10_000) -> MetricsData | None:
        data: MetricsData | None = self._original(reader, timeout_millis=timeout_millis)
        try:
            if self.consumer._reader_storages is not self.synced:
                self.sync()
            now = time_ns()
            added: dict[Any, list[Metric]] = {}
            for state in self.states:
                metric = state.collect(reader, now)
                if metric is not None:
                    added.setdefault(state.instrument.instrumentation_scope, []).append(metric)
            # The resource is read now: in a forked child the SDK gives it a new instance id.
            return _with_metrics(data, added, self.config.resource) if added else data
        except Exception as exc:
            report_internal_error("lean histogram collect", exc)
            return data


def _with_metrics(
    data: MetricsData | None, added: dict[Any, list[Metric]], resource: Any
) -> MetricsData:
    """``data`` with ``added`` metrics in their scopes (a scope the SDK reported is extended)."""
    if data is None or not data.resource_metrics:
        first = ResourceMetrics(resource=resource, scope_metrics=[], schema_url=resource.schema_url)
        rest: list[ResourceMetrics] = []
    else:
        first, *rest = data.resource_metrics
    scopes = []
    for reported in first.scope_metrics:
        extra = added.pop(reported.scope, None)
        if extra:
            reported = ScopeMetrics(  # noqa: PLW2901 - the scope with ours added
                scope=reported.scope,
                metrics=[*reported.metrics, *extra],
                schema_url=reported.schema_url,
            )
        scopes.append(reported)
    for scope, made in added.items():
        scopes.append(ScopeMetrics(scope=scope, metrics=made, schema_url=scope.schema_url or ""))
    merged = ResourceMetrics(
        resource=first.resource, scope_metrics=scopes, schema_url=first.schema_url
    )
    return MetricsData(resource_metrics=[merged, *rest])


def _buckets(instrument: Any, pipeline: _Pipeline) -> tuple[Sequence[float], bool, bool] | None:
    """(boundaries, record_min_max, from a View) as the SDK aggregates ``instrument``, or None
    where that is not an explicit-bucket histogram difytrace reproduces."""
    views = [view for view in pipeline.views if view._match(instrument)]
    if len(views) > 1:
        return None
    if views:
        shape = _bucket_view_shape(views[0])
        return None if shape is None else (*shape, True)
    if not all(_default_aggregation(r, instrument) for r in pipeline.storages()):
        return None
    advisory = getattr(instrument, "_advisory", None)
    advised = getattr(advisory, "explicit_bucket_boundaries", None)
    return (advised if advised is not None else _sdk_default_boundaries()), True, False


def _default_aggregation(reader: Any, instrument: Any) -> bool:
    aggregation = reader._instrument_class_aggregation.get(type(instrument))
    return isinstance(aggregation, DefaultAggregation)


def _bucket_view_shape(view: Any) -> tuple[Sequence[float], bool] | None:
    """(boundaries, record_min_max) of a View that only sets explicit buckets, else None."""
    aggregation = view._aggregation
    if type(aggregation) is not ExplicitBucketHistogramAggregation:
        return None
    if view._name is not None or view._description is not None or view._attribute_keys is not None:
        return None
    factory = getattr(view, "_exemplar_reservoir_factory", None)
    if factory is not None and getattr(factory, "__name__", "") != "_default_reservoir_factory":
        return None
    boundaries = aggregation._boundaries
    if boundaries is None:
        boundaries = _sdk_default_boundaries()
    return boundaries, bool(aggregation._record_min_max)


def _frozen(value: Any) -> Hashable:
    """A cleaned attribute value as part of a series key (lists and mappings made hashable)."""
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _frozen(v)) for k, v in value.items()))
    return value  # type: ignore[no-any-return]


def _sdk_default_boundaries() -> Sequence[float]:
    from opentelemetry.sdk.metrics._internal import aggregation

    found = getattr(aggregation, "_DEFAULT_EXPLICIT_BUCKET_HISTOGRAM_AGGREGATION_BOUNDARIES", None)
    return DEFAULT_BOUNDARIES if found is None else found  # 1.27: the same, as a default argument


def _forget_all() -> None:
    for state in list(_STATES):
        state.forget()


# A forked child reports its own measurements only (see forksafe: every process has its own
# service.instance.id, so inherited counts would be counted twice).
after_fork_in_child(_forget_all)


def _raw_lock() -> Any:
    """A lock of the OS, also under gevent: nothing in a record or collect yields while it is
    held, and a gevent lock costs several Python calls."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None:
        allocate: Callable[[], Any] = monkey.get_original("_thread", "allocate_lock")
        return allocate()
    return _thread.allocate_lock()
