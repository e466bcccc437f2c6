"""Celery instrumentation: publish and run spans, queue wait, baggage, flush at process exit.

difytrace's own instrumentor rather than a wrapper of ``opentelemetry-instrumentation-celery``:
contrib costs ≈ 95 µs per publish and ≈ 126 µs per task (it attaches contexts, walks every
request field into attributes and keeps spans in a per-task registry) and loses the spans of a
prefork child at exit. This one connects a handful of Celery signals to the small hooks of
:mod:`~difytrace.instrumentation.celery_hooks` and flushes through
:mod:`~difytrace.instrumentation.celery_lifecycle`; ``benchmarks/bench_celery.py`` measures both.

Signals are connected strongly (``weak=False``) with a ``dispatch_uid``, so connecting twice is a
no-op and :meth:`CeleryInstrumentor.uninstrument` disconnects exactly what was connected.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

import wrapt
from opentelemetry import metrics, trace
from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)
from opentelemetry.instrumentation.utils import unwrap

from difytrace import gevent as gevent_order
from difytrace.bootstrap import __version__, current_settings
from difytrace.instrumentation import celery_lifecycle
from difytrace.instrumentation.celery_hooks import CeleryHooks

_SCOPE = "difytrace.instrumentation.celery"


def _connections(hooks: CeleryHooks) -> list[tuple[str, Callable[..., None]]]:
    """(signal name in ``celery.signals``, handler) for every hook difytrace installs."""
    return [
        ("before_task_publish", hooks.before_publish),
        ("task_prerun", hooks.prerun),
        ("task_failure", hooks.failure),
        ("task_retry", hooks.retry),
        ("task_postrun", hooks.postrun),
        ("worker_process_shutdown", celery_lifecycle.flush_on_process_shutdown),
        ("worker_shutdown", celery_lifecycle.flush_on_worker_shutdown),
    ]


class CeleryInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Traces Celery publishes (PRODUCER) and task runs (CONSUMER) and records the Celery
    metrics of :data:`difytrace.semconv.METRICS`.

    ``instrument(tracer_provider=..., meter_provider=...)`` overrides the global providers.
    """

    _connected: list[str] = []

    def instrumentation_dependencies(self) -> Collection[str]:
        """The Celery versions this instrumentor supports."""
        return ("celery >= 5.4",)

    def _instrument(self, **kwargs: Any) -> None:
        from celery import signals

        settings = current_settings()
        tracer = trace.get_tracer(
            _SCOPE, __version__, tracer_provider=kwargs.get("tracer_provider")
        )
        meter = None
        if settings.metrics_enabled:
            meter = metrics.get_meter(
                _SCOPE, __version__, meter_provider=kwargs.get("meter_provider")
            )
        hooks = CeleryHooks(tracer=tracer, meter=meter, baggage_keys=settings.baggage_keys)
        connected: list[str] = []
        for name, handler in _connections(hooks):
            getattr(signals, name).connect(handler, weak=False, dispatch_uid=_uid(name))
            connected.append(name)
        type(self)._connected = connected
        wrapt.wrap_function_wrapper("celery.app.base", "Celery.send_task", hooks.send_task)
        gevent_order.use_gevent_threading()

    def _uninstrument(self, **kwargs: Any) -> None:
        from celery import Celery, signals

        for name in type(self)._connected:
            getattr(signals, name).disconnect(dispatch_uid=_uid(name))
        type(self)._connected = []
        unwrap(Celery, "send_task")


def _uid(signal_name: str) -> str:
    return f"difytrace.celery.{signal_name}"
