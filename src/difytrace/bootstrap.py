"""Builds the resource, sampler, providers, processors and exporters; runs once per process.

Providers are installed at once, so instruments and tracers bind; everything that holds a
thread or a connection is built or started at the first span of each process (see
:mod:`difytrace.forksafe`), so gunicorn ``--preload`` masters and Celery prefork parents hand
nothing live to their children.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from types import FrameType

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
)
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)

from difytrace import semconv
from difytrace.forksafe import (
    SERVICE_INSTANCE_ID,
    DeferredSpanProcessor,
    LazyMetricExporter,
    LazySpanExporter,
    ProcessIdentity,
    ProcessLocalMetricReader,
)
from difytrace.scrub import ScrubbingSpanExporter, scrubber_from_settings
from difytrace.settings import Settings

logger = logging.getLogger("difytrace")

try:
    __version__ = version("difytrace")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"


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
    headers = settings.export_headers("metrics")
    if settings.metrics_protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
            OTLPMetricExporter as GrpcMetricExporter,
        )

        return GrpcMetricExporter(
            endpoint=settings.metrics_endpoint, headers=headers, timeout=timeout
        )
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    return OTLPMetricExporter(endpoint=settings.metrics_endpoint, headers=headers, timeout=timeout)


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

    The span processor and exporters are built, and the metric thread started, at the first
    span of each process (see :mod:`difytrace.forksafe`); gunicorn workers flush before they
    exit (see :mod:`difytrace.instrumentation.gunicorn_exit`).
    """
    with _LOCK:
        if _STATE.configured_by is not None:
            logger.debug("difytrace already configured by %s; %s ignored", _STATE.configured_by, by)
            return False
        _STATE.settings = settings
        _STATE.configured_by = by
        from difytrace.instrumentation.gunicorn_exit import flush_when_workers_exit  # imports us

        flush_when_workers_exit()
        if _has_sdk_provider(trace.get_tracer_provider()):
            return True
        resource = build_resource(settings)
        reader = _install_meter_provider(settings, resource)
        provider = TracerProvider(resource=resource, sampler=build_sampler(settings))
        provider.add_span_processor(
            DeferredSpanProcessor(
                lambda: _batch_processor(settings),
                lambda: _start_metric_thread(reader),
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
            LazySpanExporter(lambda: _span_exporter(settings)),
            scrubber_from_settings(settings),
        ),
        max_queue_size=settings.bsp_max_queue_size,
        schedule_delay_millis=settings.bsp_schedule_delay_ms,
        max_export_batch_size=min(settings.bsp_max_export_batch_size, settings.bsp_max_queue_size),
        export_timeout_millis=settings.bsp_export_timeout_ms,
    )


def _install_meter_provider(
    settings: Settings, resource: Resource
) -> ProcessLocalMetricReader | None:
    """Install the meter provider, unless metrics are off or the host installed one."""
    if not settings.metrics_enabled or settings.metrics_exporter == "none":
        return None
    if hasattr(metrics.get_meter_provider(), "force_flush"):
        return None
    reader = ProcessLocalMetricReader(
        LazyMetricExporter(lambda: _metric_exporter(settings)),
        interval_millis=settings.metric_export_interval_ms,
        timeout_millis=settings.metric_export_timeout_ms,
        # A service.instance.id the user set is theirs; otherwise one per process.
        identity=None if _user_set_instance_id() else ProcessIdentity(),
    )
    meter_provider = MeterProvider(
        resource=resource, metric_readers=[reader], views=_histogram_views()
    )
    metrics.set_meter_provider(meter_provider)
    _STATE.meter_provider = meter_provider
    return reader


def _imported_by_gunicorn_master() -> bool:
    """Whether this module is imported in a gunicorn master, not while a worker boots.

    Without ``--preload`` the app (and so difytrace) is first imported in each worker, inside
    gunicorn's ``Worker.init_process``; a master imports it before any worker exists (the
    ``opentelemetry-instrument`` wrapper, or ``--preload``).
    """
    if "gunicorn" not in os.path.basename(sys.argv[0] if sys.argv else ""):
        return False
    frame: FrameType | None = sys._getframe()
    while frame is not None:
        code = frame.f_code
        if code.co_name == "init_process" and "gunicorn" in code.co_filename:
            return False
        frame = frame.f_back
    return True


_SETUP_PID = os.getpid()
_SETUP_IN_GUNICORN_MASTER = _imported_by_gunicorn_master()


def _start_metric_thread(reader: ProcessLocalMetricReader | None) -> None:
    """Start this process's metric thread, except in a gunicorn master.

    A master forks its workers later, and under gevent its thread's greenlet is inherited by
    every worker, where it dies with a KeyError traceback at exit. The master's few points are
    still exported by the collection at shutdown.
    """
    if reader is None:
        return
    if os.getpid() == _SETUP_PID and _SETUP_IN_GUNICORN_MASTER:
        return
    reader.start()


def _user_set_instance_id() -> bool:
    return SERVICE_INSTANCE_ID in os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "")


def _histogram_views() -> list[View]:
    """Explicit buckets for difytrace's histograms (SDK 1.27 ignores instrument advice)."""
    return [
        View(instrument_name=name, aggregation=ExplicitBucketHistogramAggregation(list(bounds)))
        for name, bounds in semconv.histogram_buckets().items()
    ]


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
