"""The agent's scrub rules, tested as regexes against sample attributes.

The patterns are read out of the configs (OTTL ``delete_matching_keys`` and the redaction
processor's ``blocked_values``), so what is tested is what the collector runs. They use the
subset of syntax RE2 (Go) and Python's ``re`` agree on.
"""

from __future__ import annotations

import re

import pytest
import yaml
from collector_support import load_profile

from difytrace import semconv

# The GenAI registry YAML shipped with difytrace.testing (copied from the semconv registries).
from difytrace.testing.genai import REGISTRY_DIR as REGISTRY

#: GenAI attributes that carry content (messages, prompts, tool I/O, retrieved text), from the
#: semconv GenAI registry, plus the legacy and vendor copies instrumentations write.
CONTENT_KEYS = (
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
    "gen_ai.tool.definitions",
    "gen_ai.tool.call.arguments",
    "gen_ai.tool.call.result",
    "gen_ai.retrieval.documents",
    "gen_ai.retrieval.query.text",
    "gen_ai.memory.query.text",
    "gen_ai.memory.records",
    "gen_ai.prompt.variable",
    "gen_ai.prompt.variable.city",
    "gen_ai.prompt",
    "gen_ai.completion",
    "gen_ai.prompt.0.content",
    "gen_ai.prompt.0.role",
    "gen_ai.completion.1.content",
    "langfuse.observation.input",
    "langfuse.observation.output",
    "langfuse.trace.input",
    "langfuse.trace.output",
    "input.value",
    "output.value",
    "llm.input_messages.0.message.content",
    "llm.output_messages",
    *semconv.OPS_TRACE_CONTENT,  # an ops_trace OTLP destination pointed at the collector
)
#: Attributes the dashboards, sampling and vendors need: never deleted.
KEPT_KEYS = (
    "gen_ai.operation.name",
    "gen_ai.provider.name",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "gen_ai.response.finish_reasons",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.prompt.name",
    "gen_ai.prompt.version",
    "gen_ai.tool.name",
    "gen_ai.tool.call.id",
    "gen_ai.response.time_to_first_chunk",
    "difytrace.gen_ai.usage.cost",
    "difytrace.gen_ai.usage.estimated",
    "langfuse.observation.type",
    "langfuse.observation.model.name",
    "langfuse.observation.usage_details",
    "langfuse.observation.cost_details",
    "langfuse.observation.completion_start_time",
    "langsmith.span.kind",
    "http.route",
    "input.mime_type",
)
SECRET_VALUES = (
    "Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig",
    "authorization: bearer abcdefgh12345678",
    "Basic cGstbGYtMTIzOnNrLWxmLTQ1Ng==",
    "sk-proj-AbCdEfGhIjKlMnOpQrStUv",
    "pk-lf-1234abcd-5678",
    "sk-lf-1234abcd-5678",
    "lsv2_pt_0123456789abcdef0123456789abcdef_0123456789",
    "AKIAIOSFODNN7EXAMPLE",
    "https://api.example.test/v1?api_key=s3cr3t&x=1",
    "redis://:hunter2pass@redis:6379/0",
    "postgresql://dify:difyai123456@db:5432/dify",
    "password=hunter2",
)
PLAIN_VALUES = (
    "GET /v1/chat-messages",
    "gpt-4o-mini",
    "https://api.openai.com/v1/chat/completions",
    "redis://redis:6379/0",
    "task-runner",
    "Basic",
    "The weather in Paris is sunny.",
)


def _delete_patterns(profile: str) -> dict[str, list[re.Pattern[str]]]:
    transform = load_profile(profile)["processors"]["transform/genai_content"]
    out: dict[str, list[re.Pattern[str]]] = {}
    for group in transform["trace_statements"]:
        patterns = []
        for statement in group["statements"]:
            match = re.fullmatch(r'delete_matching_keys\(attributes, "([^"\\]+)"\)', statement)
            assert match, f"unexpected statement {statement!r}"
            patterns.append(re.compile(match.group(1)))
        out[group["context"]] = patterns
    return out


def _blocked_values(profile: str) -> list[re.Pattern[str]]:
    redaction = load_profile(profile)["processors"]["redaction/secrets"]
    assert redaction["allow_all_keys"] is True  # masks values; never drops unknown keys
    return [re.compile(p) for p in redaction["blocked_values"]]


@pytest.fixture(params=["agent", "single-node"])
def scrubbing_profile(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.parametrize("key", CONTENT_KEYS)
def test_content_keys_are_deleted(scrubbing_profile: str, key: str) -> None:
    for context, patterns in _delete_patterns(scrubbing_profile).items():
        assert any(p.search(key) for p in patterns), f"{context}: {key} survives"


@pytest.mark.parametrize("key", KEPT_KEYS)
def test_useful_keys_are_kept(scrubbing_profile: str, key: str) -> None:
    for context, patterns in _delete_patterns(scrubbing_profile).items():
        assert not any(p.search(key) for p in patterns), f"{context}: {key} deleted"


@pytest.mark.parametrize("value", SECRET_VALUES)
def test_secret_values_are_masked(scrubbing_profile: str, value: str) -> None:
    assert any(p.search(value) for p in _blocked_values(scrubbing_profile)), value


@pytest.mark.parametrize("value", PLAIN_VALUES)
def test_plain_values_are_left_alone(scrubbing_profile: str, value: str) -> None:
    assert not any(p.search(value) for p in _blocked_values(scrubbing_profile)), value


def _registry_keys() -> set[str]:
    keys: set[str] = set()
    for path in REGISTRY.glob("*/gen-ai/*.yaml"):
        keys |= set(re.findall(r"key: (gen_ai\.[a-z_.]+)", path.read_text()))
    return keys


def test_registry_content_keys_are_exactly_the_deleted_ones() -> None:
    """Of the GenAI registry's attributes, the rules delete the content ones and nothing else;
    a new content attribute in the registry must be added to CONTENT_KEYS and to the rules."""
    keys = _registry_keys()
    if not keys:
        pytest.skip(f"GenAI semconv registry not found under {REGISTRY}")
    patterns = _delete_patterns("agent")["span"]
    deleted = {k for k in keys if any(p.search(k) for p in patterns)}
    assert deleted == {k for k in CONTENT_KEYS if k in keys}


def test_config_patterns_compile_as_yaml_strings() -> None:
    # No backslash escapes in OTTL strings: what YAML hands over is the regex itself.
    for profile in ("agent", "single-node"):
        text = yaml.safe_dump(load_profile(profile)["processors"]["transform/genai_content"])
        assert "\\" not in text
