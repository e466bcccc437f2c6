"""Resetting difytrace's once-per-process setup between tests."""

from __future__ import annotations

from difytrace import bootstrap


def reset_configuration() -> None:
    """Forget that difytrace was configured, so ``configure()`` runs again.

    The global tracer and meter providers are left in place (OpenTelemetry sets them once
    per process); instrumentors stay as they are (uninstrument them through their own API).
    """
    with bootstrap._LOCK:
        bootstrap._STATE.settings = None
        bootstrap._STATE.configured_by = None
        bootstrap._STATE.tracer_provider = None
        bootstrap._STATE.meter_provider = None
