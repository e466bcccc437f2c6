"""Fixtures of the LLM tests: the fake OpenAI server, instrumentation per mode, and a check
that every GenAI span and metric a test produced validates against the registry."""

from __future__ import annotations

import os

# litellm fetches its model cost map at import unless told not to; tests never touch the net.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from difytrace.instrumentation.llm import manual
from difytrace.instrumentation.llm.litellm import LiteLLMInstrumentor
from difytrace.instrumentation.llm.openai import OpenAIInstrumentor
from difytrace.settings import load_settings
from difytrace.testing import genai_registry, install_global_capture
from difytrace.testing.genai_validation import Registry
from difytrace.testing.openai_fixtures import openai_server  # noqa: F401 - fixture

REGISTRY_DIR = Path(__file__).parent / "registry"  # upstream-genai-openai.data.json


def registry(mode: str) -> Registry:
    """The registry of ``mode``: "v1.41" (default) or "latest" (gen_ai_latest_experimental)."""
    return genai_registry(mode)  # type: ignore[arg-type]


@dataclass
class LLMSetup:
    """What the ``llm`` fixture instrumented, and in which conventions mode."""

    mode: str
    capture_content: bool

    def instrument(self, **extra: str) -> None:
        """(Re-)instrument OpenAI, litellm and the manual API with these settings."""
        uninstrument_all()
        env = dict(extra)
        if self.mode == "latest":
            env["OTEL_SEMCONV_STABILITY_OPT_IN"] = "gen_ai_latest_experimental"
        if self.capture_content:
            env["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] = "true"
        settings = load_settings(env)
        OpenAIInstrumentor().instrument(settings=settings)
        LiteLLMInstrumentor().instrument(settings=settings)
        from difytrace.instrumentation.llm import build_telemetry

        manual.reset_telemetry(build_telemetry({"settings": settings}, library="manual"))


def uninstrument_all() -> None:
    """Undo every LLM instrumentation (safe when none is active)."""
    for instrumentor in (OpenAIInstrumentor(), LiteLLMInstrumentor()):
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()
    manual.reset_telemetry()


_LAST_MODE: list[str] = []


def _make(mode: str, capture_content: bool) -> Iterator[LLMSetup]:
    setup = LLMSetup(mode=mode, capture_content=capture_content)
    setup.instrument()
    _LAST_MODE.append(mode)
    try:
        yield setup
    finally:
        uninstrument_all()


@pytest.fixture(params=["v1.41", "latest"])
def llm(request: pytest.FixtureRequest) -> Iterator[LLMSetup]:
    """OpenAI + litellm + manual instrumentation, once per conventions mode; content off."""
    yield from _make(request.param, capture_content=False)


@pytest.fixture
def llm_content() -> Iterator[LLMSetup]:
    """Instrumentation with content capture on (default conventions)."""
    yield from _make("v1.41", capture_content=True)


@pytest.fixture(autouse=True)
def _genai_conformance() -> Iterator[None]:
    """After each test that instrumented LLM calls: every GenAI span and metric it produced
    has no registry violation, in the conventions mode the test ran in."""
    _LAST_MODE.clear()
    yield
    if not _LAST_MODE:
        return
    capture = install_global_capture()
    reg = registry(_LAST_MODE[-1])
    spans = capture.spans()
    problems = reg.check_spans(spans) + reg.check_metrics(capture.metrics(), spans=spans)
    assert problems == [], "\n".join(problems)
