"""LeanHistogram exports what the SDK histogram exports, by the same rules, for the same calls.

Each scenario records the same measurements into an SDK histogram and a LeanHistogram on two
providers built alike, collects both after every step and compares every field a reader sees
(times are compared by their rules, since the two providers collect microseconds apart).
"""

from __future__ import annotations

import decimal
import enum
import gc
import logging
import os
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.metrics._internal import _ProxyMeter
from opentelemetry.sdk import metrics as sdk_metrics
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.metrics.view import (
    ExplicitBucketHistogramAggregation,
    ExponentialBucketHistogramAggregation,
    View,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import INVALID_SPAN_CONTEXT, NonRecordingSpan

from difytrace import lean_histogram
from difytrace.lean_histogram import LeanHistogram

CUMULATIVE = AggregationTemporality.CUMULATIVE
DELTA = AggregationTemporality.DELTA
HAS_EXEMPLARS = hasattr(sdk_metrics, "AlwaysOnExemplarFilter")
SAMPLED = TracerProvider().get_tracer("t")
UNSAMPLED = TracerProvider(sampler=ALWAYS_OFF).get_tracer("t")

Step = Sequence[tuple[float, Any]]
STEPS: list[Step] = [
    [(0.05, {"a": "x"}), (5, {"a": "x", "b": 1}), (0.5, {"b": 1, "a": "x"})],
    [],
    [(20, {"a": "y"}), (0.0, None), (1, {"a": "x"}), (1.0, {"a": "x"})],
    [(0.1, {"a": "x"}), (3, {"flag": True, "n": 1.5})],
]


class Pair:
    """An SDK histogram and a LeanHistogram on two providers built alike."""

    def __init__(
        self,
        temporalities: Sequence[AggregationTemporality] = (CUMULATIVE,),
        views: Callable[[], list[View]] = list,
        advice: Sequence[float] | None = (0.1, 1, 10),
        **provider: Any,
    ) -> None:
        self.sdk_provider, self.sdk_readers, self.sdk = self._side(
            temporalities, views(), advice, provider
        )
        self.lean_provider, self.lean_readers, inner = self._side(
            temporalities, views(), advice, provider
        )
        self.lean = LeanHistogram(inner)

    @staticmethod
    def _side(
        temporalities: Sequence[AggregationTemporality],
        views: list[View],
        advice: Sequence[float] | None,
        provider: dict[str, Any],
    ) -> tuple[MeterProvider, list[InMemoryMetricReader], Any]:
        readers = [
            InMemoryMetricReader(preferred_temporality={Histogram: t}) for t in temporalities
        ]
        made = MeterProvider(
            metric_readers=readers, views=views, resource=Resource({"r": 1}), **provider
        )
        meter = made.get_meter("scope", "1.0")
        kwargs: dict[str, Any] = {"unit": "s", "description": "d"}
        if advice is not None:
            try:
                return (
                    made,
                    readers,
                    meter.create_histogram(
                        "h", explicit_bucket_boundaries_advisory=list(advice), **kwargs
                    ),
                )
            except TypeError:  # API 1.27
                pass
        return made, readers, meter.create_histogram("h", **kwargs)

    def record(self, amount: float, attributes: Any = None) -> None:
        self.sdk.record(amount, attributes)
        self.lean.record(amount, attributes)

    def collect(self) -> tuple[list[Any], list[Any]]:
        return [_points(r) for r in self.sdk_readers], [_points(r) for r in self.lean_readers]


def _points(reader: InMemoryMetricReader) -> list[tuple[Any, ...]]:
    """What a reader sees, timestamps left out (compared by their rules elsewhere)."""
    data = reader.get_metrics_data()
    seen = []
    for resource_metrics in data.resource_metrics if data else ():
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                for point in getattr(metric.data, "data_points", ()):
                    fields = {
                        k: v
                        for k, v in vars(point).items()
                        if k not in ("start_time_unix_nano", "time_unix_nano", "exemplars")
                    }
                    exemplars = [
                        (e.value, e.span_id, e.trace_id, e.filtered_attributes)
                        for e in getattr(point, "exemplars", ())
                    ]
                    seen.append(
                        (
                            dict(resource_metrics.resource.attributes),
                            scope_metrics.scope.name,
                            scope_metrics.scope.version,
                            metric.name,
                            metric.unit,
                            metric.description,
                            getattr(metric.data, "aggregation_temporality", None),
                            repr(sorted(fields.items(), key=str)),
                            exemplars,
                        )
                    )
    return sorted(seen, key=str)


def _run(pair: Pair, tracer: Any = None, steps: list[Step] = STEPS) -> None:
    for number, step in enumerate(steps):
        if tracer is None:
            for amount, attributes in step:
                pair.record(amount, attributes)
        else:
            with tracer.start_as_current_span(f"step {number}"):
                for amount, attributes in step:
                    pair.record(amount, attributes)
        sdk, lean = pair.collect()
        assert lean == sdk, f"step {number}"


@pytest.mark.parametrize("temporality", [CUMULATIVE, DELTA])
@pytest.mark.parametrize(
    "tracer", [None, SAMPLED, UNSAMPLED], ids=["no-span", "sampled", "unsampled"]
)
def test_same_points_as_the_sdk(temporality: AggregationTemporality, tracer: Any) -> None:
    pair = Pair((temporality,))
    _run(pair, tracer)
    assert type(pair.lean._lean).__name__ == "_LeanState"


def test_buckets_from_a_view_as_difytrace_installs_them() -> None:
    pair = Pair(
        views=lambda: [
            View(instrument_name="h", aggregation=ExplicitBucketHistogramAggregation([1.0, 2.0]))
        ]
    )
    _run(pair, SAMPLED)
    assert pair.lean._lean.boundaries == (1.0, 2.0)


def test_default_buckets_without_advice() -> None:
    pair = Pair(advice=None)
    _run(pair)
    assert pair.lean._lean.boundaries == lean_histogram.DEFAULT_BOUNDARIES


def test_two_readers_of_each_temporality() -> None:
    _run(Pair((CUMULATIVE, DELTA)), SAMPLED)


@pytest.mark.skipif(not HAS_EXEMPLARS, reason="exemplar filters arrived in SDK 1.28")
@pytest.mark.parametrize("name", ["AlwaysOnExemplarFilter", "AlwaysOffExemplarFilter"])
def test_exemplar_filters(name: str) -> None:
    for tracer in (None, SAMPLED, UNSAMPLED):
        exemplar_filter = getattr(sdk_metrics, name)()
        _run(Pair((CUMULATIVE, DELTA), exemplar_filter=exemplar_filter), tracer)


def test_values_that_are_not_hashable_are_cleaned_as_the_sdk_cleans_them() -> None:
    pair = Pair()
    try:
        pair.sdk.record(1, {"models": ["a"]})
    except TypeError:
        pytest.skip("SDK 1.27 refuses a list value (difytrace records it as a tuple)")
    pair.lean.record(1, {"models": ["a"]})
    _run(pair, steps=[[(1, {"models": ["a", "b"]}), (2, {"models": ("a", "b")})]])


def test_negative_and_infinite_amounts_are_refused_with_a_warning(caplog: Any) -> None:
    pair = Pair()
    with caplog.at_level(logging.WARNING):
        pair.lean.record(-1, {"a": "x"})
        pair.lean.record(float("inf"), {"a": "x"})
        pair.lean.record(float("nan"), {"a": "x"})
    assert [r.getMessage() for r in caplog.records if "Histogram h" in r.getMessage()] == [
        "Record amount must be non-negative on Histogram h.",
        "Record amount inf is not finite on Histogram h, ignoring measurement.",
        "Record amount nan is not finite on Histogram h, ignoring measurement.",
    ]
    assert pair.collect()[1] == [[]]


def test_start_times_follow_the_sdk_rules() -> None:
    cumulative = InMemoryMetricReader(preferred_temporality={Histogram: CUMULATIVE})
    delta = InMemoryMetricReader(preferred_temporality={Histogram: DELTA})
    meter = MeterProvider(metric_readers=[cumulative, delta]).get_meter("scope")
    histogram = LeanHistogram(meter.create_histogram("h"))
    histogram.record(1, {"a": "x"})

    def point(reader: InMemoryMetricReader) -> Any:
        data = reader.get_metrics_data()
        points = (
            [
                p
                for rm in data.resource_metrics
                for sm in rm.scope_metrics
                for m in sm.metrics
                for p in m.data.data_points
            ]
            if data
            else []
        )
        return points[0] if points else None

    first = point(cumulative)
    first_delta = point(delta)
    assert point(delta) is None  # nothing recorded in between: no delta point
    histogram.record(2, {"a": "x"})
    second = point(cumulative)
    second_delta = point(delta)
    # Cumulative: one start (the first measurement) for every point of the series.
    assert first.start_time_unix_nano == second.start_time_unix_nano < first.time_unix_nano
    assert second.count == 2
    # Delta: each point starts at the previous collection, even one without a point.
    assert first_delta.start_time_unix_nano < first_delta.time_unix_nano
    assert (
        first_delta.time_unix_nano < second_delta.start_time_unix_nano < second_delta.time_unix_nano
    )
    assert second_delta.count == 1


def test_points_join_the_scope_the_sdk_reports() -> None:
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader], resource=Resource({"r": 2})).get_meter(
        "shared", "2.0"
    )
    meter.create_counter("c").add(1)
    LeanHistogram(meter.create_histogram("h")).record(1)
    data = reader.get_metrics_data()
    [resource_metrics] = data.resource_metrics
    assert resource_metrics.resource.attributes["r"] == 2
    [scope_metrics] = resource_metrics.scope_metrics
    assert (scope_metrics.scope.name, scope_metrics.scope.version) == ("shared", "2.0")
    assert [m.name for m in scope_metrics.metrics] == ["c", "h"]


def test_points_alone_carry_the_provider_resource() -> None:
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader], resource=Resource({"r": 3})).get_meter("alone")
    LeanHistogram(meter.create_histogram("h")).record(1)
    [resource_metrics] = reader.get_metrics_data().resource_metrics
    assert resource_metrics.resource.attributes["r"] == 3
    assert [sm.scope.name for sm in resource_metrics.scope_metrics] == ["alone"]


@pytest.mark.parametrize(
    "setup",
    [
        pytest.param(
            {"views": lambda: [View(instrument_name="h", name="renamed")]}, id="renaming-view"
        ),
        pytest.param(
            {"views": lambda: [View(instrument_name="h", attribute_keys={"a"})]},
            id="attribute-keys-view",
        ),
        pytest.param(
            {
                "views": lambda: [
                    View(
                        instrument_name="*", aggregation=ExplicitBucketHistogramAggregation([1.0])
                    ),
                    View(instrument_name="h"),
                ]
            },
            id="two-views",
        ),
        pytest.param(
            {
                "views": lambda: [
                    View(instrument_name="h", aggregation=ExponentialBucketHistogramAggregation())
                ]
            },
            id="exponential-view",
        ),
    ],
)
def test_pipelines_it_does_not_reproduce_are_left_to_the_sdk(setup: dict[str, Any]) -> None:
    pair = Pair(**setup)
    _run(pair, SAMPLED)
    assert pair.lean._lean is None


def test_a_reader_aggregation_of_its_own_is_left_to_the_sdk() -> None:
    reader = InMemoryMetricReader(
        preferred_aggregation={Histogram: ExponentialBucketHistogramAggregation()}
    )
    meter = MeterProvider(metric_readers=[reader]).get_meter("scope")
    histogram = LeanHistogram(meter.create_histogram("h"))
    histogram.record(1.5)
    assert histogram._lean is None
    [point] = [
        p
        for rm in reader.get_metrics_data().resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        for p in m.data.data_points
    ]
    assert point.count == 1
    assert hasattr(point, "scale")


@pytest.mark.skipif(not HAS_EXEMPLARS, reason="exemplar filters arrived in SDK 1.28")
def test_an_exemplar_filter_of_its_own_is_left_to_the_sdk() -> None:
    class Odd(sdk_metrics.ExemplarFilter):  # type: ignore[misc]
        def should_sample(self, value: float, *args: Any) -> bool:
            return value % 2 == 1

    pair = Pair(exemplar_filter=Odd())
    _run(pair, SAMPLED)
    assert pair.lean._lean is None


def test_before_a_provider_exists_it_waits_for_one() -> None:
    proxy = _ProxyMeter("late", "1")
    histogram = LeanHistogram(proxy.create_histogram("h"))
    histogram.record(1, {"a": "x"})  # dropped, as by the SDK's proxy
    assert histogram._lean is lean_histogram._NOT_RESOLVED
    reader = InMemoryMetricReader()
    proxy.on_set_meter_provider(MeterProvider(metric_readers=[reader]))
    histogram.record(2, {"a": "x"})
    assert type(histogram._lean).__name__ == "_LeanState"
    [point] = [
        p
        for rm in reader.get_metrics_data().resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        for p in m.data.data_points
    ]
    assert (point.count, point.sum, dict(point.attributes)) == (1, 2, {"a": "x"})


def test_a_reader_added_later_sees_what_follows_as_the_sdk_shows_it() -> None:
    if not hasattr(MeterProvider, "add_metric_reader"):
        pytest.skip("readers are fixed at construction before SDK 1.3x")
    pair = Pair()
    pair.record(1, {"a": "x"})
    for readers, provider in (
        (pair.sdk_readers, pair.sdk_provider),
        (pair.lean_readers, pair.lean_provider),
    ):
        later = InMemoryMetricReader()
        provider.add_metric_reader(later)
        readers.append(later)
    pair.record(2, {"a": "x"})
    sdk, lean = pair.collect()
    assert lean == sdk


def test_no_limit_on_attribute_sets_as_in_the_sdk() -> None:
    pair = Pair()
    _run(pair, steps=[[(1, {"tenant": str(n)}) for n in range(2100)]])


def test_one_instrument_wrapped_twice_is_one_stream() -> None:
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("s")
    first = LeanHistogram(meter.create_histogram("h"))
    again = LeanHistogram(meter.create_histogram("h"))  # e.g. uninstrument, instrument again
    first.record(1, {"a": "x"})
    again.record(2, {"a": "x"})
    meter.create_histogram("h").record(3, {"a": "x"})  # the SDK instrument itself, by others
    [point] = _all_points(reader)
    assert (point.count, point.sum) == (3, 6)


class Color(enum.Enum):
    RED = "red"


def test_attributes_are_cleaned_as_the_sdk_cleans_them() -> None:
    _run(
        Pair(),
        steps=[
            [(1, {"color": Color.RED}), (2, {"price": decimal.Decimal("1.5")})],
            [(3, {"": "empty key", "a": "x"}), (4, {5: "int key"})],
        ],
    )


@pytest.mark.parametrize(
    "attributes",
    [{"nested": {"a": 1}}, {"items": [{"a": 1}]}, ["not", "a", "mapping"]],
    ids=["mapping-value", "list-of-mappings", "not-a-mapping"],
)
def test_odd_attributes_never_raise_into_the_app(attributes: Any) -> None:
    pair = Pair()
    try:
        pair.sdk.record(1, attributes)
    except (TypeError, AttributeError):
        pair.lean.record(1, attributes)  # SDK 1.27 raises; difytrace must not
        pair.lean.record(1, attributes)
        [point] = _all_points(pair.lean_readers[0])
        assert point.count == 2
        return
    pair.lean.record(1, attributes)
    _run(pair, steps=[[(2, attributes)]])


def test_integer_bucket_boundaries_stay_integers() -> None:
    # Prometheus labels buckets by the bound's text: le="4" and le="4.0" are two series.
    pair = Pair(
        views=lambda: [
            View(instrument_name="h", aggregation=ExplicitBucketHistogramAggregation([1, 4, 16]))
        ]
    )
    _run(pair)


def test_concurrent_first_records_make_one_stream() -> None:
    for _ in range(20):
        reader = InMemoryMetricReader()
        meter = MeterProvider(metric_readers=[reader]).get_meter("s")
        histograms = [LeanHistogram(meter.create_histogram(f"h{n % 2}")) for n in range(8)]
        start = threading.Barrier(8)
        threads = [threading.Thread(target=_record_together, args=(h, start)) for h in histograms]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        counts = sorted((m.name, p.count) for m, p in _metric_points(reader))
        assert counts == [("h0", 4), ("h1", 4)]


def _record_together(histogram: LeanHistogram, start: threading.Barrier) -> None:
    start.wait()
    histogram.record(1, {"a": "x"})


@pytest.mark.skipif(not hasattr(MeterProvider, "add_metric_reader"), reason="SDK 1.3x+")
def test_a_reader_removed_and_added_again_starts_afresh_as_in_the_sdk() -> None:
    pair = Pair()
    pair.record(1, {"a": "x"})
    for readers, provider in (
        (pair.sdk_readers, pair.sdk_provider),
        (pair.lean_readers, pair.lean_provider),
    ):
        provider.remove_metric_reader(readers[0])
        provider.add_metric_reader(readers[0])
    pair.record(2, {"a": "x"})
    sdk, lean = pair.collect()
    assert lean == sdk


def _freed_after_shutdown(lean: bool) -> bool:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    histogram = provider.get_meter("s").create_histogram("h")
    (LeanHistogram(histogram) if lean else histogram).record(1, {"a": "x"})
    provider.shutdown()
    gone = weakref.ref(reader)
    del reader, provider, histogram
    gc.collect()
    return gone() is None


def test_a_shut_down_provider_is_freed() -> None:
    if not _freed_after_shutdown(lean=False):
        pytest.skip("this SDK keeps its providers alive itself")
    assert _freed_after_shutdown(lean=True)


@pytest.mark.skipif(not HAS_EXEMPLARS, reason="exemplar filters arrived in SDK 1.28")
def test_an_invalid_span_that_is_not_the_singleton_is_a_span_for_exemplars() -> None:
    invalid = NonRecordingSpan(INVALID_SPAN_CONTEXT)
    pair = Pair(exemplar_filter=sdk_metrics.AlwaysOnExemplarFilter())
    with trace.use_span(invalid):
        pair.record(1, {"a": "x"})
    sdk, lean = pair.collect()
    assert lean == sdk


def _metric_points(reader: InMemoryMetricReader) -> list[tuple[Any, Any]]:
    data = reader.get_metrics_data()
    return [
        (m, p)
        for rm in (data.resource_metrics if data else ())
        for sm in rm.scope_metrics
        for m in sm.metrics
        for p in m.data.data_points
    ]


def _all_points(reader: InMemoryMetricReader) -> list[Any]:
    return [p for _, p in _metric_points(reader)]


def test_concurrent_records_are_all_counted() -> None:
    reader = InMemoryMetricReader()
    histogram = LeanHistogram(
        MeterProvider(metric_readers=[reader]).get_meter("s").create_histogram("h")
    )

    def work() -> None:
        for n in range(2000):
            histogram.record(n % 7, {"a": "x"})

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    [point] = [
        p
        for rm in reader.get_metrics_data().resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        for p in m.data.data_points
    ]
    assert point.count == sum(point.bucket_counts) == 16000


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
def test_a_forked_child_reports_only_its_own_measurements() -> None:
    reader = InMemoryMetricReader()
    histogram = LeanHistogram(
        MeterProvider(metric_readers=[reader]).get_meter("s").create_histogram("h")
    )
    histogram.record(1, {"a": "parent"})
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            histogram.record(2, {"a": "child"})
            data = reader.get_metrics_data()
            seen = sorted(
                f"{p.attributes['a']}={p.count}"
                for rm in data.resource_metrics
                for sm in rm.scope_metrics
                for m in sm.metrics
                for p in m.data.data_points
            )
            os.write(write_end, ",".join(seen).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    assert os.read(read_end, 1000).decode() == "child=1"
    os.close(read_end)
    [point] = [
        p
        for rm in reader.get_metrics_data().resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        for p in m.data.data_points
    ]
    assert dict(point.attributes) == {"a": "parent"}


def test_a_disabled_meter_records_nothing() -> None:
    pair = Pair()
    config = getattr(pair.lean._sdk, "_meter_config", None)
    if config is None or not hasattr(config, "update"):
        pytest.skip("meter configurators arrived in SDK 1.4x")
    pair.lean.record(1, {"a": "x"})
    config.update(type(config._config)(is_enabled=False))
    pair.lean.record(2, {"a": "x"})
    [point] = _all_points(pair.lean_readers[0])
    assert point.count == 1


def test_counter_and_histogram_of_the_plain_sdk_are_unaffected() -> None:
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("s")
    LeanHistogram(meter.create_histogram("lean")).record(1)
    meter.create_histogram("plain").record(1)
    assert isinstance(meter.create_counter("c"), Counter)
    names = sorted(
        m.name
        for rm in reader.get_metrics_data().resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    )
    assert names == ["lean", "plain"]


class SharedPair(Pair):
    """Records into the LeanHistogram through ``record_shared``, as difytrace's instrumentations
    do with their cached label sets."""

    def record(self, amount: float, attributes: Any = None) -> None:
        self.sdk.record(amount, attributes)
        self.lean.record_shared(amount, attributes)


@pytest.mark.parametrize("tracer", [None, SAMPLED], ids=["no-span", "sampled"])
def test_shared_label_sets_give_the_same_points(tracer: Any) -> None:
    api = {"route": "/chat", "status": 200}
    same_content = {"route": "/chat", "status": 200}
    colored = {"color": Color.RED}  # cleaned once, when first seen
    steps: list[Step] = [
        [(0.5, api), (2, api), (3, same_content)],
        [(1, colored), (0.2, api)],
        [(7, colored), (9, {"route": "/other"})],
    ]
    _run(SharedPair((CUMULATIVE, DELTA)), tracer, steps)


def test_shared_label_sets_past_the_bound_stay_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    # Sets dropped by their caller: once the bound clears the map, a new set may reuse a
    # freed one's id, and must not be taken for it.
    monkeypatch.setattr(lean_histogram, "_SHARED_MAX", 2)
    steps: list[Step] = [[(i, {"n": i % 3})] for i in range(12)]
    _run(SharedPair(), steps=steps)


def test_shared_records_reach_the_sdk_where_it_aggregates() -> None:
    pair = SharedPair(
        views=lambda: [
            View(instrument_name="h", aggregation=ExponentialBucketHistogramAggregation())
        ]
    )
    _run(pair, steps=[[(1, {"a": "x"}), (2, {"a": "x"})]])
    assert pair.lean._lean is None
