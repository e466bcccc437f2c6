"""LLM calls as GenAI spans and metrics: OpenAI SDK, litellm, and a manual API.

Every path fills one :class:`~difytrace.instrumentation.llm.invocation.Invocation`; the
instrumentors only know their library's shapes. :func:`build_telemetry` is the one place that
reads the settings that matter here (content capture, conventions mode, price overrides).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from difytrace.instrumentation.llm.telemetry import Telemetry

logger = logging.getLogger("difytrace")


def when_imported(name: str, patch: Callable[[Any], None]) -> Callable[[], None]:
    """Run ``patch(module)`` once ``name`` is imported (now, if it already is); the returned
    function cancels a patch still pending. Instrumenting never imports the library itself:
    importing openai or litellm costs seconds, and litellm may fetch data at import."""
    import wrapt

    from difytrace._guard import internal_errors

    active = [True]

    def hook(module: Any) -> None:
        if active[0]:
            active[0] = False
            with internal_errors(f"instrument {name}"):
                patch(module)

    wrapt.register_post_import_hook(hook, name)

    def cancel() -> None:
        active[0] = False

    return cancel


def build_telemetry(kwargs: dict[str, Any], *, library: str) -> Telemetry:
    """Telemetry for one instrumentor from ``instrument(**kwargs)``: ``tracer_provider``,
    ``meter_provider`` and ``settings`` (default: the process's settings)."""
    from difytrace import semconv_genai
    from difytrace.bootstrap import current_settings
    from difytrace.instrumentation.llm import pricing, rollup

    settings = kwargs.get("settings") or current_settings()
    opt_in = getattr(settings, "semconv_opt_in", ())
    latest = semconv_genai.LATEST_EXPERIMENTAL in opt_in
    prices_file = getattr(settings, "llm_prices_file", "")
    try:
        prices = pricing.PriceBook.from_file(prices_file)
    except (OSError, ValueError) as exc:
        logger.warning("difytrace: price overrides %s not loaded: %s", prices_file, exc)
        prices = pricing.PriceBook()
    pricing.warm()
    tracer_provider = kwargs.get("tracer_provider")
    return Telemetry(
        tracer_provider=tracer_provider,
        meter_provider=kwargs.get("meter_provider"),
        capture_content=bool(getattr(settings, "genai_capture_content", False)),
        latest=latest,
        prices=prices,
        rollup=rollup.install(tracer_provider),
        library=library,
    )
