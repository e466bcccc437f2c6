"""In-process capture: the global SDK providers the pytest plugin installs, and their reader.

The tracer provider gets a ``SimpleSpanProcessor`` into a :class:`SpanCapture` and the
switchable id generator of :mod:`difytrace.testing.ids`; the meter
provider reads with delta temporality so that :meth:`SpanCapture.clear` can start each test
from zero. Both are set through the public ``set_*_provider`` functions, which work the same
on opentelemetry 1.27 and 1.45 (set once per process); ``difytrace.configure()`` and
``opentelemetry-instrument`` keep an SDK provider they find installed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    MeterProvider,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased

from difytrace.testing import _metrics
from difytrace.testing._model import (
    CapturedSpan,
    HistogramTotals,
    MetricPoint,
    from_readable_span,
    points_from_metrics_data,
)
from difytrace.testing._store import SpanPredicate, SpanStore
from difytrace.testing.ids import ID_SWITCH

logger = logging.getLogger("difytrace")

_DELTA: dict[type, AggregationTemporality] = {
    kind: AggregationTemporality.DELTA
    for kind in (
        Counter,
        UpDownCounter,
        Histogram,
        ObservableCounter,
        ObservableUpDownCounter,
        ObservableGauge,
    )
}


class _Exporter(SpanExporter):
    def __init__(self, store: SpanStore) -> None:
        self._store = store

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self._store.add(from_readable_span(s) for s in spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


class SpanCapture:
    """Finished spans and metric points of this process (the ``span_capture`` fixture).

    Example::

        def test_chat(client, span_capture):
            client.post("/chat", json={"query": "hi"})
            assert [s.name for s in span_capture.spans()] == ["chat gpt-4o", "POST /chat"]
            assert span_capture.histogram("http.server.request.duration").count == 1
    """

    def __init__(self) -> None:
        self._store = SpanStore()
        self.exporter: SpanExporter = _Exporter(self._store)
        self.reader: InMemoryMetricReader | None = None
        self._points: list[MetricPoint] = []
        self._lock = threading.Lock()

    def spans(self) -> list[CapturedSpan]:
        """Finished spans, in the order they ended.

        >>> from opentelemetry import trace
        >>> capture = install_global_capture(); capture.clear()
        >>> tracer = trace.get_tracer("doc")
        >>> with tracer.start_as_current_span("parent"), tracer.start_as_current_span("child"):
        ...     pass
        >>> [s.name for s in capture.spans()]
        ['child', 'parent']
        """
        return self._store.spans()

    def wait_for(
        self,
        count: int | None = None,
        name: str | None = None,
        timeout: float = 10,
        predicate: SpanPredicate | None = None,
    ) -> list[CapturedSpan]:
        """Wait for ``count`` (default 1) matching spans to end (other threads, greenlets).

        >>> import threading
        >>> from opentelemetry import trace
        >>> capture = install_global_capture(); capture.clear()
        >>> job = lambda: trace.get_tracer("doc").start_span("background").end()
        >>> threading.Thread(target=job).start()
        >>> [s.name for s in capture.wait_for(name="background", timeout=5)]
        ['background']
        """
        return self._store.wait_for(count, name, timeout, predicate)

    def _collect(self) -> list[MetricPoint]:
        if self.reader is None:
            raise RuntimeError(
                "metrics are not captured: another SDK MeterProvider was "
                "installed before the difytrace plugin"
            )
        with self._lock:
            self._points.extend(
                p
                for p in points_from_metrics_data(self.reader.get_metrics_data())
                if not _empty_delta(p)
            )
            return list(self._points)

    def metrics(self) -> dict[str, list[MetricPoint]]:
        """``{name: one point per attribute set}`` recorded since the last :meth:`clear`.

        >>> from opentelemetry import metrics
        >>> capture = install_global_capture(); capture.clear()
        >>> jobs = metrics.get_meter("doc").create_counter("doc.runs")
        >>> jobs.add(1, {"q": "a"}); jobs.add(2, {"q": "a"}); jobs.add(5, {"q": "b"})
        >>> sorted((p.attributes["q"], p.value) for p in capture.metrics()["doc.runs"])
        [('a', 3), ('b', 5)]
        """
        return _metrics.merge_points(self._collect())

    def histogram(
        self,
        name: str,
        attributes: Mapping[str, Any] | None = None,
    ) -> HistogramTotals:
        """Count and sum of histogram ``name`` over points including ``attributes``.

        >>> from opentelemetry import metrics
        >>> capture = install_global_capture(); capture.clear()
        >>> waits = metrics.get_meter("doc").create_histogram("doc.wait", unit="s")
        >>> waits.record(0.2, {"queue": "a"}); waits.record(0.3, {"queue": "b"})
        >>> capture.histogram("doc.wait").count, capture.histogram("doc.wait", {"queue": "b"})
        (2, HistogramTotals(count=1, sum=0.3))
        """
        return _metrics.histogram_totals(self.metrics().get(name, []), attributes)

    def clear(self) -> None:
        """Forget the spans and metric points recorded so far.

        >>> from opentelemetry import trace
        >>> capture = install_global_capture()
        >>> trace.get_tracer("doc").start_span("old").end()
        >>> capture.clear(); capture.spans()
        []
        """
        self._store.clear()
        if self.reader is not None:
            self._collect()
        with self._lock:
            self._points.clear()


def _empty_delta(point: MetricPoint) -> bool:
    """A delta point that says nothing happened (an observable instrument reports one at every
    collection, also in tests that never touched it)."""
    return point.temporality == "delta" and not point.count and not point.value


_INSTALLED: SpanCapture | None = None
_INSTALL_LOCK = threading.Lock()


def install_global_capture() -> SpanCapture:
    """Install (once per process) the global providers feeding one :class:`SpanCapture`.

    The pytest plugin calls it at start; call it yourself outside pytest (a script, a REPL)
    before anything gets a tracer. Example:

    >>> capture = install_global_capture()
    >>> capture is install_global_capture()
    True
    """
    global _INSTALLED  # noqa: PLW0603 - one capture per process, like the providers
    with _INSTALL_LOCK:
        if _INSTALLED is not None:
            return _INSTALLED
        capture = SpanCapture()
        resource = Resource.create({"service.name": "pytest"})
        current = trace.get_tracer_provider()
        if isinstance(current, TracerProvider):
            # Tracers handed out before this keep the provider's own generator.
            ID_SWITCH.default = current.id_generator
            # The SDK annotates the attribute by its default class; any IdGenerator is valid.
            current.id_generator = ID_SWITCH  # type: ignore[assignment]
            current.add_span_processor(SimpleSpanProcessor(capture.exporter))
        else:
            provider = TracerProvider(
                resource=resource, sampler=ParentBased(ALWAYS_ON), id_generator=ID_SWITCH
            )
            provider.add_span_processor(SimpleSpanProcessor(capture.exporter))
            trace.set_tracer_provider(provider)
        if isinstance(metrics.get_meter_provider(), MeterProvider):
            logger.warning(
                "difytrace.testing: an SDK MeterProvider is already installed; "
                "span_capture.metrics() is unavailable"
            )
        else:
            capture.reader = InMemoryMetricReader(preferred_temporality=_DELTA)
            metrics.set_meter_provider(
                MeterProvider(resource=resource, metric_readers=[capture.reader])
            )
        _INSTALLED = capture
        return capture
