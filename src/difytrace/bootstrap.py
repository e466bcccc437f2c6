"""Builds the resource, sampler, providers, processors and exporters; runs once per process.

Exporters are built lazily, on their first export in each process, so that a gunicorn
``--preload`` master or a Celery prefork parent never hands a live connection to its children.
The SDK's batch processor and periodic metric reader restart their threads after ``fork`` on
their own (``os.register_at_fork``).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)

from difytrace.scrub import ScrubbingSpanExporter, scrubber_from_settings
from difytrace.settings import Settings

logger = logging.getLogger("difytrace")

try:
    __version__ = version("difytrace")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"


class _LazySpanExporter(SpanExporter):
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
        return self._get().export(spans)

    def shutdown(self) -> None:
        if self._delegate is not None and self._pid == os.getpid():
            self._delegate.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class _LazyMetricExporter(MetricExporter):
    """Metric twin of :class:`_LazySpanExporter`."""

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
        return self._get().export(metrics_data, timeout_millis=timeout_millis, **kwargs)

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        if self._delegate is not None and self._pid == os.getpid():
            self._delegate.shutdown(timeout_millis=timeout_millis, **kwargs)


def build_sampler(settings: Settings) -> Sampler:
    """The sampler the settings ask for (Dify's OTEL_SAMPLING_RATE → parent-based ratio)."""
    name = settings.sampler or (
        "parentbased_traceidratio"
        if settings.sampling_rate is not None
        else "parentbased_always_on"
    )
    rate = 1.0 if settings.sampling_rate is None else settings.sampling_rate
    root: Sampler = {
        "always_on": ALWAYS_ON,
        "always_off": ALWAYS_OFF,
        "traceidratio": TraceIdRatioBased(rate),
    }.get(name.removeprefix("parentbased_"), ALWAYS_ON)
    return ParentBased(root) if name.startswith("parentbased_") else root


def build_resource(settings: Settings) -> Resource:
    """OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME, plus difytrace's distro attributes."""
    attributes: dict[str, str] = {
        "telemetry.distro.name": "difytrace",
        "telemetry.distro.version": __version__,
    }
    if settings.service_name:
        attributes["service.name"] = settings.service_name
    return Resource.create(attributes)


def _span_exporter(settings: Settings) -> SpanExporter:
    if settings.exporter == "console":
        return ConsoleSpanExporter()
    timeout = settings.bsp_export_timeout_ms / 1000
    if settings.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcSpanExporter,
        )

        return GrpcSpanExporter(
            endpoint=settings.traces_endpoint, headers=settings.export_headers(), timeout=timeout
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(
        endpoint=settings.traces_endpoint, headers=settings.export_headers(), timeout=timeout
    )


def _metric_exporter(settings: Settings) -> MetricExporter:
    if settings.metrics_exporter == "console":
        return ConsoleMetricExporter()
    timeout = settings.metric_export_timeout_ms / 1000
    if settings.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
            OTLPMetricExporter as GrpcMetricExporter,
        )

        return GrpcMetricExporter(
            endpoint=settings.metrics_endpoint, headers=settings.export_headers(), timeout=timeout
        )
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    return OTLPMetricExporter(
        endpoint=settings.metrics_endpoint, headers=settings.export_headers(), timeout=timeout
    )


class _DeferredSpanProcessor(SpanProcessor):
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
        self._lock = threading.Lock()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        # The parent's processor and its queue belong to the parent.
        self._delegate = None
        self._lock = threading.Lock()

    def _build(self) -> SpanProcessor:
        with self._lock:
            if self._delegate is None:
                self._delegate = self._factory()
                self._on_first_span()
            return self._delegate

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        (self._delegate or self._build()).on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        (self._delegate or self._build()).on_end(span)

    def shutdown(self) -> None:
        if self._delegate is not None:
            self._delegate.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True if self._delegate is None else self._delegate.force_flush(timeout_millis)


@dataclass
class _State:
    settings: Settings | None = None
    configured_by: str | None = None
    tracer_provider: TracerProvider | None = None
    meter_provider: MeterProvider | None = None


_STATE = _State()
_LOCK = threading.Lock()


def current_settings() -> Settings:
    """The settings in force: those of the last setup, else resolved from the environment."""
    if _STATE.settings is None:
        from difytrace.settings import load_settings

        _STATE.settings = load_settings()
    return _STATE.settings


def configured_by() -> str | None:
    """Who set difytrace up in this process: "opentelemetry-instrument", "configure()" or None."""
    return _STATE.configured_by


def setup_providers(settings: Settings, *, by: str) -> bool:
    """Install the tracer provider once per process; False when already done.

    The span processor, the exporters and the meter provider are built at the first span of
    each process (see :class:`_DeferredSpanProcessor`); instruments created before that bind
    through the API's proxy meter provider.
    """
    with _LOCK:
        if _STATE.configured_by is not None:
            logger.debug("difytrace already configured by %s; %s ignored", _STATE.configured_by, by)
            return False
        _STATE.settings = settings
        _STATE.configured_by = by
        if _has_sdk_provider(trace.get_tracer_provider()):
            return True
        resource = build_resource(settings)
        provider = TracerProvider(resource=resource, sampler=build_sampler(settings))
        provider.add_span_processor(
            _DeferredSpanProcessor(
                lambda: _batch_processor(settings),
                lambda: _start_metrics(settings, resource),
            )
        )
        trace.set_tracer_provider(provider)
        _STATE.tracer_provider = provider
        return True


def _batch_processor(settings: Settings) -> SpanProcessor:
    if settings.exporter == "none":
        return SpanProcessor()
    return BatchSpanProcessor(
        # Every span is scrubbed (secrets, PII, byte budgets) on the export thread.
        ScrubbingSpanExporter(
            _LazySpanExporter(lambda: _span_exporter(settings)),
            scrubber_from_settings(settings),
        ),
        max_queue_size=settings.bsp_max_queue_size,
        schedule_delay_millis=settings.bsp_schedule_delay_ms,
        max_export_batch_size=min(settings.bsp_max_export_batch_size, settings.bsp_max_queue_size),
        export_timeout_millis=settings.bsp_export_timeout_ms,
    )


def _start_metrics(settings: Settings, resource: Resource) -> None:
    """Install this process's meter provider, unless metrics are off or one exists."""
    if not settings.metrics_enabled or settings.metrics_exporter == "none":
        return
    if hasattr(metrics.get_meter_provider(), "force_flush"):
        return
    reader = PeriodicExportingMetricReader(
        _LazyMetricExporter(lambda: _metric_exporter(settings)),
        export_interval_millis=settings.metric_export_interval_ms,
        export_timeout_millis=settings.metric_export_timeout_ms,
    )
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
    metrics.set_meter_provider(meter_provider)
    _STATE.meter_provider = meter_provider


def _has_sdk_provider(provider: object) -> bool:
    # A provider installed by the host app or by the test plugin is kept: we only instrument.
    return hasattr(provider, "add_span_processor")


def force_flush(timeout_millis: int = 10_000) -> None:
    """Export everything buffered in this process (spans, then metrics)."""
    tracer_provider = trace.get_tracer_provider()
    if hasattr(tracer_provider, "force_flush"):
        tracer_provider.force_flush(timeout_millis)
    meter_provider = metrics.get_meter_provider()
    if hasattr(meter_provider, "force_flush"):
        meter_provider.force_flush(timeout_millis)


def shutdown() -> None:
    """Flush and shut down the providers difytrace built; later spans are dropped."""
    if _STATE.tracer_provider is not None:
        _STATE.tracer_provider.shutdown()
    if _STATE.meter_provider is not None:
        _STATE.meter_provider.shutdown()
