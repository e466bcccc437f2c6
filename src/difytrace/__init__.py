"""difytrace: OpenTelemetry for Dify-style Flask + Celery + LLM backends.

Zero-code: run the app under ``opentelemetry-instrument``. From code::

    import difytrace
    difytrace.configure(enabled=True, service_name="api")
"""

from __future__ import annotations

from collections.abc import Sequence

from difytrace import bootstrap
from difytrace.bootstrap import __version__, force_flush, shutdown
from difytrace.exceptions import ConfigurationError, DifytraceError, RecordError
from difytrace.instrumentation.identity import set_identity, set_identity_extractor
from difytrace.instrumentation.llm.manual import current_llm_call, llm_call
from difytrace.settings import Settings, load_settings

__all__ = [
    "ConfigurationError",
    "DifytraceError",
    "RecordError",
    "Settings",
    "__version__",
    "configure",
    "current_llm_call",
    "force_flush",
    "llm_call",
    "load_settings",
    "set_identity",
    "set_identity_extractor",
    "shutdown",
]


def configure(
    *,
    enabled: bool | None = None,
    service_name: str | None = None,
    exporter: str | None = None,
    traces_endpoint: str | None = None,
    metrics_endpoint: str | None = None,
    sampling_rate: float | None = None,
    metrics_enabled: bool | None = None,
    baggage_keys: Sequence[str] | None = None,
    disabled_instrumentations: Sequence[str] | None = None,
) -> bool:
    """Set up tracing, metrics and instrumentation for this process, once.

    Arguments override the environment (see the README's configuration table). Without
    ``enabled=True``, ``DIFYTRACE_ENABLED`` or Dify's ``ENABLE_OTEL`` decides, as in Dify.
    Returns True when difytrace is active in this process (set up now, or earlier by
    ``opentelemetry-instrument``), False when disabled. Calling it again, or under the
    wrapper, never instruments twice. Raises :class:`ConfigurationError` for a bad setting.
    """
    from difytrace import gevent as gevent_order
    from difytrace.distro import keep_startup_offline
    from difytrace.instrumentation import instrument_all

    if bootstrap.configured_by() is not None:
        return True
    settings = load_settings(
        enabled=enabled,
        service_name=service_name,
        exporter=exporter,
        traces_endpoint=traces_endpoint,
        metrics_endpoint=metrics_endpoint,
        sampling_rate=sampling_rate,
        metrics_enabled=metrics_enabled,
        baggage_keys=tuple(baggage_keys) if baggage_keys is not None else None,
        disabled_instrumentations=(
            tuple(disabled_instrumentations) if disabled_instrumentations is not None else None
        ),
    )
    if not settings.enabled:
        return False
    if settings.gevent == "on":
        gevent_order.apply_patch_order()
    gevent_order.warn_on_problems()
    keep_startup_offline()
    bootstrap.setup_providers(settings, by="configure()")
    instrument_all(settings.disabled_instrumentations)
    return True
