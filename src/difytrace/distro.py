"""Entry points for ``opentelemetry-instrument``: the distro and the configurator.

``opentelemetry-instrument`` runs, in this order and before the application is imported:
``DifytraceDistro.configure()`` → ``DifytraceConfigurator.configure()`` → every
``opentelemetry_instrumentor`` entry point. The distro is the earliest hook there is, so it is
where the gevent patch order is applied and where settings are validated (a bad setting stops
the process with one clear line instead of running it uninstrumented).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from opentelemetry.instrumentation.distro import (  # type: ignore[attr-defined]  # module is "type: ignore"d upstream
    BaseDistro,
)
from opentelemetry.sdk._configuration import _BaseConfigurator

from difytrace import bootstrap
from difytrace import gevent as gevent_order
from difytrace.exceptions import ConfigurationError
from difytrace.settings import load_settings


def keep_startup_offline() -> None:
    """Make libraries we instrument start without network (air-gapped deployments).

    litellm fetches its model price map from the internet at import unless told to use the
    copy it ships; an explicit ``LITELLM_LOCAL_MODEL_COST_MAP`` of the user's is kept.
    """
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


# The contrib instrumentors that difytrace replaces; loading both would instrument twice.
REPLACED_CONTRIB = ("flask", "celery", "openai")


class DifytraceDistro(BaseDistro):  # type: ignore[misc]
    """Validates settings, applies the gevent patch order, and disables replaced contrib
    instrumentors."""

    def _configure(self, **kwargs: Any) -> None:
        try:
            settings = load_settings()
        except ConfigurationError as exc:
            print(f"difytrace: {exc}", file=sys.stderr, flush=True)
            # This runs inside site's import of sitecustomize, where SystemExit is a fatal
            # interpreter error with a traceback; nothing has started yet, so leave at once.
            os._exit(2)
        if settings.gevent == "on" or (
            settings.gevent == "auto" and gevent_order.gevent_requested()
        ):
            gevent_order.apply_patch_order()
        gevent_order.warn_on_problems()
        keep_startup_offline()
        disabled = [
            n.strip()
            for n in os.environ.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "").split(",")
            if n.strip()
        ]
        os.environ["OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"] = ",".join(
            dict.fromkeys([*disabled, *REPLACED_CONTRIB])
        )
        bootstrap._STATE.settings = settings


class DifytraceConfigurator(_BaseConfigurator):  # type: ignore[misc]
    """Installs difytrace's tracer and meter providers (the wrapper is the opt-in)."""

    def _configure(self, **kwargs: Any) -> None:
        bootstrap.setup_providers(bootstrap.current_settings(), by="opentelemetry-instrument")
