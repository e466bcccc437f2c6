"""The registry validator catches what it claims to, and difytrace covers what the official
instrumentation (genai-openai) emits."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import openai
import pytest

from difytrace.testing import SpanCapture, assert_genai_valid
from difytrace.testing._model import MetricPoint
from difytrace.testing.genai import REGISTRY_DIR as PACKAGED_REGISTRY
from difytrace.testing.genai_validation import Finding
from difytrace.testing.openai_server import OpenAIServer, Reply

from .conftest import REGISTRY_DIR, LLMSetup, registry

CONTENT = {
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.tool.definitions",
    "gen_ai.system_instructions",
}


@dataclass
class FakeSpan:
    attributes: dict[str, Any]
    name: str = "chat m"
    kind: str = "CLIENT"
    events: list[Any] = field(default_factory=list)
    status_code: str = "UNSET"
    start_time_ns: int = 0


GOOD = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "m",
    "server.address": "h",
    "server.port": 1,
}


@pytest.mark.parametrize("mode", ["v1.41", "latest"])
@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({}, None),
        ({"gen_ai.usage.input_tokens": "12"}, "is not of type int"),
        ({"gen_ai.operation.name": "chatting"}, "no span definition for operation 'chatting'"),
        ({"gen_ai.request.temprature": 0.1}, "is not in the registry"),
        ({"gen_ai.usage.prompt_tokens": 3}, "deprecated"),
        ({"gen_ai.provider.name": None}, "required gen_ai.provider.name missing"),
        ({"server.port": None}, "server.port missing"),
        ({"langfuse.observation.type": "generation", "difytrace.x": 1}, None),
    ],
)
def test_span_checks(mode: str, change: dict[str, Any], expected: str | None) -> None:
    if mode == "latest" and "prompt_tokens" in str(change):
        pytest.skip("the genai snapshot has no deprecated registry of its own")
    attrs = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    problems = registry(mode).check_spans([FakeSpan(attrs)])
    if expected is None:
        assert problems == []
    else:
        assert any(expected in p for p in problems), problems


def test_metric_checks() -> None:
    attrs = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.token.type": "input",
    }
    good = MetricPoint(
        name="gen_ai.client.token.usage", kind="histogram", attributes=attrs, unit="{token}"
    )
    bad_unit = MetricPoint(
        name="gen_ai.client.token.usage", kind="sum", attributes=attrs, unit="tokens"
    )
    missing = MetricPoint(
        name="gen_ai.client.token.usage",
        kind="histogram",
        attributes={"gen_ai.operation.name": "chat"},
        unit="{token}",
    )
    reg = registry("v1.41")
    assert reg.check_metrics({"gen_ai.client.token.usage": [good]}) == []
    problems = reg.check_metrics(
        {"gen_ai.client.token.usage": [bad_unit, missing], "gen_ai.client.tokens": [good]}
    )
    text = "\n".join(problems)
    assert "the conventions say histogram" in text
    assert "expected '{token}'" in text
    assert "required gen_ai.provider.name missing" in text
    assert "gen_ai.client.tokens: not in the registry" in text


def test_covers_every_attribute_the_official_instrumentation_emits(
    llm: LLMSetup, openai_server: OpenAIServer, span_capture: SpanCapture
) -> None:
    upstream = json.loads((REGISTRY_DIR / "upstream-genai-openai.data.json").read_text())
    client = openai.OpenAI(
        base_url=openai_server.base_url, api_key=openai_server.api_key, max_retries=0
    )
    client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=10,
        temperature=0.1,
        top_p=0.9,
        seed=1,
        stop=["x"],
        frequency_penalty=0.1,
        presence_penalty=0.1,
        response_format={"type": "json_object"},
    )
    client.embeddings.create(model="text-embedding-3-small", input="x", encoding_format="float")
    client.close()
    chat, embeddings = (s for s in span_capture.spans() if "gen_ai.operation.name" in s.attributes)
    assert set(upstream["spans"]["gen_ai.inference.client"]) - CONTENT <= set(chat.attributes)
    assert set(upstream["spans"]["gen_ai.embeddings.client"]) <= set(embeddings.attributes)
    metrics = span_capture.metrics()
    for name, wanted in upstream["metrics"].items():
        seen = set().union(*(p.attributes for p in metrics[name]))
        assert set(wanted) <= seen, (name, set(wanted) - seen)


def test_registry_files_are_vendored() -> None:
    assert (PACKAGED_REGISTRY / "v1.41" / "gen-ai" / "registry.yaml").exists()
    assert (PACKAGED_REGISTRY / "genai" / "gen-ai" / "registry.yaml").exists()


# --- provider refinements (definition/2 span_refinements / metric_refinements) --------------
def point(name: str, attributes: dict[str, Any], unit: str = "s") -> MetricPoint:
    return MetricPoint(name=name, kind="histogram", attributes=attributes, unit=unit)


TOKENS = {**GOOD, "gen_ai.token.type": "input"}


def test_openai_metric_refinement_admits_the_openai_attributes_for_openai_only() -> None:
    tier = {"openai.response.service_tier": "default", "openai.response.system_fingerprint": "fp"}
    usage = "gen_ai.client.token.usage"
    latest = registry("latest")
    assert latest.metric_group(usage, "openai") == "metric.openai.client.token.usage"
    assert latest.check_metrics({usage: [point(usage, {**TOKENS, **tier}, "{token}")]}) == []
    other = {**TOKENS, **tier, "gen_ai.provider.name": "dify"}
    assert latest.check_metrics({usage: [point(usage, other, "{token}")]}) == [
        f"metric {usage} {other}: openai.response.service_tier is not an attribute of this metric",
        f"metric {usage} {other}: openai.response.system_fingerprint is not an attribute of "
        "this metric",
    ]
    # v1.41 has no metric refinement: the attributes do not belong to its metrics at all.
    assert len(registry("v1.41").check_metrics({usage: [point(usage, {**TOKENS, **tier})]})) == 3


def test_openai_span_refinement_is_layered_on_the_inference_span() -> None:
    latest = registry("latest")
    assert latest.span_group("chat", "openai") == "span.openai.inference.client"
    assert latest.span_group("chat", "azure.ai.inference") == "span.azure.ai.inference.client"
    no_model = {k: v for k, v in GOOD.items() if k != "gen_ai.request.model"}
    # The refinement makes the model required; the inference span only "if available".
    assert latest.check_spans([FakeSpan(no_model)]) == [
        "span 'chat m': required gen_ai.request.model missing"
    ]
    assert latest.check_spans([FakeSpan({**no_model, "gen_ai.provider.name": "dify"})]) == []
    # The base definition still applies under the refinement (kind, required provider, port).
    refined = latest.resolved("span.openai.inference.client")
    assert refined["gen_ai.operation.name"].kind == "required"
    assert refined["server.port"].condition == "If `server.address` is set."
    assert refined["openai.response.system_fingerprint"].kind == "recommended"


def test_a_reference_without_a_level_keeps_the_inherited_one() -> None:
    # span.gen_ai.inference.client re-lists operation.name and server.port (sampling_relevant)
    # without a level: they stay required / conditionally required, not recommended.
    for mode in ("v1.41", "latest"):
        levels = registry(mode).resolved("span.gen_ai.inference.client")
        assert levels["gen_ai.operation.name"].kind == "required"
        assert levels["server.port"].kind == "conditionally_required"


# --- conditionally required attributes ----------------------------------------------------
FAILED = {**GOOD, "gen_ai.provider.name": "openai"}


@pytest.mark.parametrize("mode", ["v1.41", "latest"])
@pytest.mark.parametrize(
    ("attributes", "status", "request_body", "expected"),
    [
        (GOOD, "ERROR", None, "error.type missing although the span status is ERROR"),
        ({**GOOD, "error.type": "500"}, "ERROR", None, None),
        (GOOD, "OK", None, None),
        (
            {**GOOD, "gen_ai.response.time_to_first_chunk": 0.1},
            "UNSET",
            None,
            "gen_ai.request.stream missing although a first chunk was received",
        ),
        (
            {**GOOD, "gen_ai.response.time_to_first_chunk": 0.1, "gen_ai.request.stream": True},
            "UNSET",
            None,
            None,
        ),
        (
            GOOD,
            "UNSET",
            {"stream": True},
            "gen_ai.request.stream missing although the request set stream=true",
        ),
        (
            {**GOOD, "gen_ai.request.stream": True},
            "UNSET",
            {"model": "m"},
            "gen_ai.request.stream=True although the request is not streaming",
        ),
        (
            GOOD,
            "UNSET",
            {"n": 2},
            "gen_ai.request.choice.count missing although the request set n=2",
        ),
        ({**GOOD, "gen_ai.request.choice.count": 2}, "UNSET", {"n": 2}, None),
        (GOOD, "UNSET", {"n": 1}, None),
        (GOOD, "UNSET", {"seed": 7}, "gen_ai.request.seed missing although the request set seed=7"),
        ({**GOOD, "gen_ai.request.seed": 7}, "UNSET", {"seed": 7}, None),
        (
            GOOD,
            "UNSET",
            {"response_format": {"type": "json_object"}},
            "gen_ai.output.type missing although the request set an output format",
        ),
        (
            GOOD,
            "UNSET",
            {"text": {"format": {"type": "json_schema"}}},
            "gen_ai.output.type missing although the request set an output format",
        ),
        ({**GOOD, "gen_ai.output.type": "json"}, "UNSET", {"response_format": {}}, None),
        (
            GOOD,
            "UNSET",
            {"service_tier": "flex"},
            "openai.request.service_tier missing although the request set service_tier='flex'",
        ),
        (GOOD, "UNSET", {"service_tier": "auto"}, None),
        ({k: v for k, v in GOOD.items() if k != "server.port"}, "UNSET", None, "server.port"),
    ],
)
def test_conditionally_required(
    mode: str,
    attributes: dict[str, Any],
    status: str,
    request_body: dict[str, Any] | None,
    expected: str | None,
) -> None:
    span = FakeSpan(attributes, status_code=status)
    requests = None if request_body is None else [request_body]
    problems = registry(mode).check_spans([span], requests=requests)
    if expected == "server.port":
        assert problems == ["span 'chat m': server.port missing although server.address is set"]
    elif expected is None:
        assert problems == []
    else:
        assert problems == [f"span 'chat m': {expected}"]


def test_without_the_request_its_conditions_are_not_judged() -> None:
    # A seed may have been sent or not: nothing to say without the request.
    assert registry("latest").check_spans([FakeSpan(GOOD)]) == []


def test_requests_must_pair_with_the_genai_spans() -> None:
    with pytest.raises(ValueError, match=r"requests: 2 given for 1 GenAI span\(s\); pass one per"):
        registry("latest").check_spans([FakeSpan(GOOD)], requests=[{}, {}])


DURATION = "gen_ai.client.operation.duration"


@pytest.mark.parametrize("mode", ["v1.41", "latest"])
def test_a_failed_call_needs_its_error_type_on_the_duration_metric(mode: str) -> None:
    failed = FakeSpan({**GOOD, "error.type": "500"}, status_code="ERROR")
    metric_attrs = {k: v for k, v in GOOD.items()}
    reg = registry(mode)
    without = {DURATION: [point(DURATION, metric_attrs)]}
    assert reg.check_metrics(without, spans=[failed]) == [
        f"metric {DURATION}: no point with error.type for the failed span 'chat m' "
        "(error.type='500')"
    ]
    assert reg.check_metrics(without) == []  # alone, a point cannot tell it failed
    other = {DURATION: [point(DURATION, {**metric_attrs, "error.type": "timeout"})]}
    assert len(reg.check_metrics(other, spans=[failed])) == 1
    good = {DURATION: [point(DURATION, {**metric_attrs, "error.type": "500"})]}
    assert reg.check_metrics(good, spans=[failed]) == []


def test_every_condition_of_the_client_spans_and_metrics_is_decided_or_explained() -> None:
    from difytrace.testing import genai_conditions as conditions

    for mode in ("v1.41", "latest"):
        reg = registry(mode)
        groups = {reg.span_group(op, p) for op in ("chat", "embeddings") for p in PROVIDERS}
        groups |= {reg.metric_group(m, p) for m in reg.metrics for p in PROVIDERS}
        unexplained = {
            (name, level.condition)
            for gid in groups
            for name, level in reg.resolved(gid or "").items()
            if level.kind == "conditionally_required"
            and not any(c.matches(name, level.condition) for c in conditions.CONDITIONS)
            and conditions.undecidable_reason(name, level.condition) is None
            and not name.startswith(("gen_ai.agent.", "gen_ai.workflow.", "gen_ai.tool."))
        }
        assert unexplained == set(), mode


PROVIDERS = ("openai", "azure.ai.inference", "anthropic", "aws.bedrock", "dify")


# --- open enums ----------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["v1.41", "latest"])
def test_an_undocumented_enum_value_is_information_not_a_violation(mode: str) -> None:
    span = FakeSpan({**GOOD, "openai.request.service_tier": "flex"})
    reg = registry(mode)
    assert reg.check_spans([span]) == []
    assert reg.span_findings([span]) == [
        Finding(
            "information",
            "span 'chat m': openai.request.service_tier='flex' is not a documented value "
            "['auto', 'default'] (enums are open: not a violation)",
        )
    ]
    documented = FakeSpan({**GOOD, "openai.request.service_tier": "default"})
    assert reg.span_findings([documented]) == []


def test_assert_genai_valid_passes_with_information_and_lists_it_under_a_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    flex = FakeSpan({**GOOD, "openai.request.service_tier": "flex"})
    assert assert_genai_valid([flex], mode="latest") == 1  # type: ignore[list-item]
    assert "openai.request.service_tier='flex' is not a documented value" in caplog.text
    broken = FakeSpan({**GOOD, "openai.request.service_tier": "flex"}, status_code="ERROR")
    with pytest.raises(AssertionError) as info:
        assert_genai_valid([broken], mode="latest")  # type: ignore[list-item]
    lines = str(info.value).splitlines()
    assert lines[1:] == [
        "  - span 'chat m': error.type missing although the span status is ERROR",
        "  (information) span 'chat m': openai.request.service_tier='flex' is not a documented "
        "value ['auto', 'default'] (enums are open: not a violation)",
    ]


# --- difytrace's real spans, with the requests that made them ------------------------------
def test_openai_calls_with_request_parameters_satisfy_their_conditions(
    llm: LLMSetup, openai_server: OpenAIServer, span_capture: SpanCapture
) -> None:
    client = openai.OpenAI(
        base_url=openai_server.base_url, api_key=openai_server.api_key, max_retries=0
    )
    messages = [{"role": "user", "content": "hi"}]
    client.chat.completions.create(
        model="gpt-4o-mini",
        messages=messages,  # type: ignore[arg-type]
        n=2,
        seed=3,
        response_format={"type": "json_object"},
        service_tier="flex",
    )
    for _chunk in client.chat.completions.create(
        model="gpt-4o-mini",
        messages=messages,  # type: ignore[arg-type]
        stream=True,
        service_tier="auto",
    ):
        pass
    client.responses.create(
        model="gpt-4o-mini", input="hi", text={"format": {"type": "json_object"}}
    )
    openai_server.script(Reply(status=500))
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="gpt-4o-mini", messages=messages)  # type: ignore[arg-type]
    client.close()
    mode = "latest" if llm.mode == "latest" else "v1.41"
    checked = assert_genai_valid(span_capture, mode=mode, requests=openai_server.requests)  # type: ignore[arg-type]
    assert checked == 4
