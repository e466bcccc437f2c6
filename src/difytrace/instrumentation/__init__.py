"""difytrace's instrumentors, one module each; loaded by entry point or by ``configure()``."""

from __future__ import annotations

import importlib
import importlib.util
import logging
from collections.abc import Iterable

logger = logging.getLogger("difytrace")

#: entry-point name → (instrumented library, "module:Class"); mirrors pyproject's
#: ``opentelemetry_instrumentor`` entry points (a test keeps them equal).
INSTRUMENTORS: dict[str, tuple[str, str]] = {
    "difytrace_flask": ("flask", "difytrace.instrumentation.flask:FlaskInstrumentor"),
    "difytrace_celery": ("celery", "difytrace.instrumentation.celery:CeleryInstrumentor"),
    "difytrace_openai": ("openai", "difytrace.instrumentation.llm.openai:OpenAIInstrumentor"),
    "difytrace_litellm": (
        "litellm",
        "difytrace.instrumentation.llm.litellm:LiteLLMInstrumentor",
    ),
}


def instrument_all(disabled: Iterable[str] = ()) -> list[str]:
    """Instrument every installed library not named in ``disabled``; return the names done."""
    skip = set(disabled)
    done: list[str] = []
    for name, (library, target) in INSTRUMENTORS.items():
        if name in skip or library in skip or importlib.util.find_spec(library) is None:
            continue
        module_name, _, class_name = target.partition(":")
        instrumentor = getattr(importlib.import_module(module_name), class_name)()
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument()
        done.append(name)
    return done
