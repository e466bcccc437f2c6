"""Telemetry set-up shared by the demo's processes (the API process and the Celery worker)."""

from __future__ import annotations

import importlib
import logging

import difytrace
from difytrace.instrumentation import INSTRUMENTORS

logger = logging.getLogger("difytrace.demo")


def available_instrumentors() -> list[str]:
    """difytrace instrumentors that import in this installation; a broken one is left out
    (and logged), so that configure() still sets up the others."""
    found = []
    for name, (_library, target) in INSTRUMENTORS.items():
        if name == "difytrace_litellm":  # unused by the demo, and seconds to import
            continue
        try:
            importlib.import_module(target.partition(":")[0])
        except Exception as exc:
            logger.info("difytrace demo: %s unavailable (%s)", name, exc)
            continue
        found.append(name)
    return found


def setup(service_name: str, endpoint: str | None = None) -> list[str]:
    """Configure difytrace for a demo process; return the instrumentors in use.

    ``endpoint`` (an OTLP/HTTP base URL) overrides the environment so that the demo never
    sends its spans anywhere but its own receiver.
    """
    active = available_instrumentors()
    missing = [name for name in INSTRUMENTORS if name not in active]
    base = endpoint.rstrip("/") if endpoint else None
    difytrace.configure(
        enabled=True,
        service_name=service_name,
        exporter="otlp",
        traces_endpoint=f"{base}/v1/traces" if base else None,
        metrics_endpoint=f"{base}/v1/metrics" if base else None,
        disabled_instrumentations=missing,
    )
    return active
