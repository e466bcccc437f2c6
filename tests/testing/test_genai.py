"""GenAI semconv validation from the registry shipped in the package: the mode, a readable
failure, nothing-to-check, and a clear error without PyYAML."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from opentelemetry import metrics, trace

from difytrace import llm_call
from difytrace.testing import SpanCapture, assert_genai_valid, genai_registry
from difytrace.testing.genai import REGISTRY_DIR
from difytrace.testing.genai_validation import Registry

tracer = trace.get_tracer("tests.genai")
GOOD = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o",
}


def test_registry_ships_inside_the_package() -> None:
    assert REGISTRY_DIR.parent.name == "testing"
    assert REGISTRY_DIR.is_relative_to(REGISTRY_DIR.parents[2])  # src/difytrace/testing/…
    for mode in ("v1.41", "genai"):
        assert (REGISTRY_DIR / mode / "gen-ai" / "registry.yaml").is_file()
    assert "Apache License" in (REGISTRY_DIR / "LICENSE").read_text()
    assert "OpenTelemetry Authors" in (REGISTRY_DIR / "SOURCE.txt").read_text()


def test_mode_follows_the_opt_in_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_SEMCONV_STABILITY_OPT_IN", raising=False)
    assert genai_registry() is genai_registry("v1.41")
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "http, gen_ai_latest_experimental")
    assert genai_registry() is genai_registry("latest")
    assert genai_registry("latest") is not genai_registry("v1.41")
    # A name only the latest conventions define.
    assert "gen_ai.response.status" not in genai_registry("v1.41").attributes
    assert "gen_ai.response.status" in genai_registry("latest").attributes


def test_unknown_mode_is_named() -> None:
    with pytest.raises(ValueError, match=r"mode 'v2' is unknown: expected 'v1.41' or 'latest'"):
        genai_registry("v2")  # type: ignore[arg-type]


def test_spans_and_metrics_of_llm_call_are_valid(span_capture: SpanCapture) -> None:
    with llm_call(
        provider="openai", model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
    ) as call:
        call.chunk("hello")
        call.usage(input_tokens=12, output_tokens=3)
    assert assert_genai_valid(span_capture, mode="v1.41") == 1
    assert "gen_ai.client.token.usage" in span_capture.metrics()


def test_violations_are_listed_readably(span_capture: SpanCapture) -> None:
    with tracer.start_as_current_span(
        "chat gpt-4o",
        kind=trace.SpanKind.CLIENT,
        attributes={**GOOD, "gen_ai.request.temprature": 0.2, "gen_ai.operation.name": "chat"},
    ):
        pass
    with tracer.start_as_current_span(
        "embeddings",
        kind=trace.SpanKind.INTERNAL,
        attributes={**GOOD, "gen_ai.operation.name": "embeddings"},
    ):
        pass
    tokens = metrics.get_meter("tests.genai").create_histogram(
        "gen_ai.client.token.usage", unit="s"
    )
    tokens.record(3, {**GOOD, "gen_ai.token.type": "input"})
    with pytest.raises(AssertionError) as info:
        assert_genai_valid(span_capture, mode="v1.41")
    assert str(info.value).splitlines() == [
        "3 GenAI semantic-convention violation(s), mode 'v1.41' (semantic-conventions v1.41.0), "
        "in 2 GenAI span(s) and 1 gen_ai.* metric(s):",
        "  - span 'chat gpt-4o': gen_ai.request.temprature is not in the registry",
        "  - span 'embeddings': kind INTERNAL but the conventions say client",
        "  - metric gen_ai.client.token.usage {'gen_ai.operation.name': 'chat', "
        "'gen_ai.provider.name': 'openai', 'gen_ai.request.model': 'gpt-4o', "
        "'gen_ai.token.type': 'input'}: unit 's', expected '{token}'",
    ]


def test_nothing_to_check_fails_unless_allowed(span_capture: SpanCapture) -> None:
    with tracer.start_as_current_span("POST /chat"):
        pass
    with pytest.raises(AssertionError, match=r"no GenAI span .* among 1 span\(s\)"):
        assert_genai_valid(span_capture)
    assert assert_genai_valid(span_capture.spans(), allow_empty=True) == 0


def test_without_pyyaml_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "yaml", None)  # what an environment without PyYAML gives
    with pytest.raises(
        ImportError, match=r"PyYAML, which is not installed: pip install 'difytrace\[ops_trace\]'"
    ):
        Registry.load(REGISTRY_DIR / "v1.41")


def test_a_directory_without_yaml_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no registry"):
        Registry.load(str(tmp_path))
