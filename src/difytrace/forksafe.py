"""Telemetry pieces that are safe across ``fork`` and under gevent.

A gunicorn ``--preload`` master and a Celery prefork parent fork their workers after difytrace
is set up. Three rules keep the children healthy:

- exporters are built at their first export in each process, so no connection is shared;
- no thread starts before a process makes its first span: a thread started in a parent, or
  restarted by an at-fork hook before gevent re-initialises its hub in the child, dies with a
  ``KeyError`` traceback at worker exit (seen with the SDK's own at-fork restarts);
- a child forgets its parent's span processor and queue, which belong to the parent;
- every process reports its metrics under its own ``service.instance.id``: forked workers share
  their parent's resource, and two processes' cumulative series under one identity corrupt
  each other (rates go negative in Prometheus).
"""

from __future__ import annotations

import collections
import logging
import math
import os
import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
    ResourceMetrics,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from difytrace.export_health import HEALTH, batch_queue

logger = logging.getLogger("difytrace")


def after_fork_in_child(callback: Callable[[], object]) -> None:
    """Run ``callback`` in every child forked from now on (where the OS can fork)."""
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=callback)


class LazySpanExporter(SpanExporter):
    """Builds the real exporter on the first export in each process (fork-safe)."""

    def __init__(self, factory: Callable[[], SpanExporter]) -> None:
        self._factory = factory
        self._pid = -1
        self._delegate: SpanExporter | None = None
        self._lock = threading.Lock()

    def _get(self) -> SpanExporter:
        with self._lock:
            if self._delegate is None or self._pid != os.getpid():
                self._delegate = self._factory()
                self._pid = os.getpid()
            return self._delegate

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self._get().export(spans)
        except Exception as exc:
            HEALTH.failed("traces", type(exc).__qualname__)
            HEALTH.dropped("export_failed", len(spans))
            raise
        if result is SpanExportResult.SUCCESS:
            HEALTH.exported(len(spans))
        else:
            HEALTH.failed("traces", "export_failed")
            HEALTH.dropped("export_failed", len(spans))
        return result

    def shutdown(self) -> None:
        if self._delegate is not None and self._pid == os.getpid():
            self._delegate.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class LazyMetricExporter(MetricExporter):
    """Metric twin of :class:`LazySpanExporter`."""

    def __init__(self, factory: Callable[[], MetricExporter]) -> None:
        super().__init__()
        self._factory = factory
        self._pid = -1
        self._delegate: MetricExporter | None = None
        self._lock = threading.Lock()

    def _get(self) -> MetricExporter:
        with self._lock:
            if self._delegate is None or self._pid != os.getpid():
                self._delegate = self._factory()
                self._pid = os.getpid()
            return self._delegate

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        try:
            result = self._get().export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        except Exception as exc:
            HEALTH.failed("metrics", type(exc).__qualname__)
            raise
        if result is not MetricExportResult.SUCCESS:
            HEALTH.failed("metrics", "export_failed")
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        if self._delegate is not None and self._pid == os.getpid():
            self._delegate.shutdown(timeout_millis=timeout_millis, **kwargs)


class DeferredSpanProcessor(SpanProcessor):
    """Builds its delegate (and its thread) at the first span of each process.

    Nothing starts a thread in a gunicorn master or a Celery prefork parent: threads started
    before gevent re-initialises its hub after fork end with tracebacks at worker exit, and a
    thread inherited through fork is dead anyway. ``on_first_span`` starts the rest of the
    process's telemetry (the metric reader) at the same moment.
    """

    def __init__(
        self, factory: Callable[[], SpanProcessor], on_first_span: Callable[[], None]
    ) -> None:
        self._factory = factory
        self._on_first_span = on_first_span
        self._delegate: SpanProcessor | None = None
        self._queue: collections.deque[Any] | None = None
        self._lock = threading.Lock()
        after_fork_in_child(self._forget)

    def _forget(self) -> None:
        # The parent's processor and its queue belong to the parent.
        self._delegate = None
        self._queue = None
        self._lock = threading.Lock()

    def _build(self) -> SpanProcessor:
        with self._lock:
            if self._delegate is None:
                self._delegate = self._factory()
                self._queue = batch_queue(self._delegate)
                self._on_first_span()
            return self._delegate

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        (self._delegate or self._build()).on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        delegate = self._delegate or self._build()
        queue = self._queue
        if queue is not None and len(queue) >= queue.maxlen:  # type: ignore[operator]
            HEALTH.dropped("queue_full", 1)
        delegate.on_end(span)

    def shutdown(self) -> None:
        if self._delegate is not None:
            self._delegate.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True if self._delegate is None else self._delegate.force_flush(timeout_millis)


SERVICE_INSTANCE_ID = "service.instance.id"


class ProcessIdentity:
    """Stamps metrics with a ``service.instance.id`` of this process, made anew after fork."""

    def __init__(self) -> None:
        self._reset()
        after_fork_in_child(self._reset)

    def _reset(self) -> None:
        self.instance_id = str(uuid.uuid4())
        self._stamped: dict[int, Resource] = {}

    def stamp(self, data: MetricsData) -> MetricsData:
        """``data`` with this process's instance id on every resource."""
        return MetricsData(
            resource_metrics=[
                ResourceMetrics(
                    resource=self._resource(rm.resource),
                    scope_metrics=rm.scope_metrics,
                    schema_url=rm.schema_url,
                )
                for rm in data.resource_metrics
            ]
        )

    def _resource(self, resource: Resource) -> Resource:
        stamped = self._stamped.get(id(resource))
        if stamped is None:
            stamped = resource.merge(Resource({SERVICE_INSTANCE_ID: self.instance_id}))
            self._stamped[id(resource)] = stamped
        return stamped


class ProcessLocalMetricReader(PeriodicExportingMetricReader):
    """The SDK's periodic reader, with its thread started by :meth:`start` in each process.

    The base class is built with an infinite interval, which makes it start no thread and
    register no at-fork restart; this class runs the same collect loop on a thread of its own,
    started at the process's first span and forgotten in a forked child.
    """

    def __init__(
        self,
        exporter: MetricExporter,
        *,
        interval_millis: float,
        timeout_millis: float,
        identity: ProcessIdentity | None = None,
    ) -> None:
        super().__init__(
            exporter, export_interval_millis=math.inf, export_timeout_millis=timeout_millis
        )
        self._interval_s = interval_millis / 1000
        self._timeout_millis = timeout_millis
        self._process_thread: threading.Thread | None = None
        self._identity = identity
        after_fork_in_child(self._forget)

    def _forget(self) -> None:
        self._process_thread = None

    def start(self) -> None:
        """Start this process's collect thread (no-op when running or shut down)."""
        if self._process_thread is None and not self._shutdown_event.is_set():
            self._process_thread = threading.Thread(
                target=self._tick, name="difytrace-metrics", daemon=True
            )
            self._process_thread.start()

    def _tick(self) -> None:
        while not self._shutdown_event.wait(self._interval_s):
            self._collect_quietly()

    def _collect_quietly(self) -> None:
        try:
            self.collect(timeout_millis=self._timeout_millis)
        except Exception:  # a failed collection must not end the loop
            logger.warning("difytrace: metric collection failed", exc_info=True)

    def _receive_metrics(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> None:
        if self._identity is not None and metrics_data is not None:
            metrics_data = self._identity.stamp(metrics_data)
        super()._receive_metrics(metrics_data, timeout_millis, **kwargs)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._shutdown_event.set()
        if (
            self._process_thread is not None
            and self._process_thread is not threading.current_thread()
        ):
            self._process_thread.join(timeout_millis / 1000)
        self._collect_quietly()  # the last points of this process
        super().shutdown(timeout_millis=timeout_millis, **kwargs)
