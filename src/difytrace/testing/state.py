"""Resetting difytrace's once-per-process setup between tests."""

from __future__ import annotations

import sys

from difytrace import bootstrap


def reset_configuration(*, uninstrument: bool = False) -> list[str]:
    """Forget that difytrace was configured, so ``configure()`` runs again.

    The global tracer and meter providers stay in place (OpenTelemetry sets them once per
    process). With ``uninstrument=True`` every difytrace instrumentor that is instrumented is
    uninstrumented too (modules not imported yet are left alone). Returns the names of the
    instrumentors undone. Example::

        def test_configure_with_sampling(span_capture):
            try:
                difytrace.configure(enabled=True, exporter="none", sampling_rate=0.5)
                ...
            finally:
                reset_configuration(uninstrument=True)
    """
    with bootstrap._LOCK:
        bootstrap._STATE.settings = None
        bootstrap._STATE.configured_by = None
        bootstrap._STATE.tracer_provider = None
        bootstrap._STATE.meter_provider = None
    return _uninstrument_all() if uninstrument else []


def _uninstrument_all() -> list[str]:
    from difytrace.instrumentation import INSTRUMENTORS

    undone: list[str] = []
    for name, (_library, target) in INSTRUMENTORS.items():
        module_name, _, class_name = target.partition(":")
        module = sys.modules.get(module_name)
        if module is None:
            continue
        instrumentor = getattr(module, class_name)()  # instrumentors are singletons
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()
            undone.append(name)
    return undone
