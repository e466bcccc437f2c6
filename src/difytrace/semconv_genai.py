"""Every GenAI name difytrace emits, in one module.

Names come from the pinned ``opentelemetry-semantic-conventions`` package where it has them;
the 0.48b0 package Dify pins predates most of them, so each constant falls back to the literal
string of the conventions. Two modes, chosen once per process:

* default: the names of semantic conventions **v1.41**;
* ``OTEL_SEMCONV_STABILITY_OPT_IN`` containing ``gen_ai_latest_experimental``: the names of the
  latest GenAI conventions (semantic-conventions-genai), a superset here.

The difference between the modes lives in :data:`LATEST_ONLY` and nowhere else: callers set
attributes freely and :func:`allowed` drops the names the active mode does not know.
Attributes that no convention defines (cost, estimate flag, vendor mapping) are difytrace's or
the vendor's own and are outside the ``gen_ai.*`` namespace on purpose.

This module is the only place GenAI names are spelled; :mod:`difytrace.semconv` takes its GenAI
aliases and metric catalogue entries from here, and the general names (``server.*``,
``error.type``, ids) live there.
"""

from __future__ import annotations

import os
from types import ModuleType

_attrs: ModuleType | None
_metrics: ModuleType | None
try:
    from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as _attrs
except ImportError:  # pragma: no cover - very old package
    _attrs = None
try:
    from opentelemetry.semconv._incubating.metrics import gen_ai_metrics as _metrics
except ImportError:  # pragma: no cover - very old package
    _metrics = None


def _a(const: str, literal: str) -> str:
    value = getattr(_attrs, const, None)
    return value if isinstance(value, str) else literal


def _m(const: str, literal: str) -> str:
    value = getattr(_metrics, const, None)
    return value if isinstance(value, str) else literal


# --- span attributes -------------------------------------------------------------------
OPERATION_NAME = _a("GEN_AI_OPERATION_NAME", "gen_ai.operation.name")
PROVIDER_NAME = _a("GEN_AI_PROVIDER_NAME", "gen_ai.provider.name")
REQUEST_MODEL = _a("GEN_AI_REQUEST_MODEL", "gen_ai.request.model")
REQUEST_MAX_TOKENS = _a("GEN_AI_REQUEST_MAX_TOKENS", "gen_ai.request.max_tokens")
REQUEST_CHOICE_COUNT = _a("GEN_AI_REQUEST_CHOICE_COUNT", "gen_ai.request.choice.count")
REQUEST_TEMPERATURE = _a("GEN_AI_REQUEST_TEMPERATURE", "gen_ai.request.temperature")
REQUEST_TOP_P = _a("GEN_AI_REQUEST_TOP_P", "gen_ai.request.top_p")
REQUEST_TOP_K = _a("GEN_AI_REQUEST_TOP_K", "gen_ai.request.top_k")
REQUEST_STOP_SEQUENCES = _a("GEN_AI_REQUEST_STOP_SEQUENCES", "gen_ai.request.stop_sequences")
REQUEST_FREQUENCY_PENALTY = _a(
    "GEN_AI_REQUEST_FREQUENCY_PENALTY", "gen_ai.request.frequency_penalty"
)
REQUEST_PRESENCE_PENALTY = _a("GEN_AI_REQUEST_PRESENCE_PENALTY", "gen_ai.request.presence_penalty")
REQUEST_SEED = _a("GEN_AI_REQUEST_SEED", "gen_ai.request.seed")
REQUEST_STREAM = _a("GEN_AI_REQUEST_STREAM", "gen_ai.request.stream")
REQUEST_ENCODING_FORMATS = _a("GEN_AI_REQUEST_ENCODING_FORMATS", "gen_ai.request.encoding_formats")
REQUEST_REASONING_LEVEL = "gen_ai.request.reasoning.level"
REQUEST_PREVIOUS_RESPONSE_ID = "gen_ai.request.previous_response.id"
OUTPUT_TYPE = _a("GEN_AI_OUTPUT_TYPE", "gen_ai.output.type")
RESPONSE_ID = _a("GEN_AI_RESPONSE_ID", "gen_ai.response.id")
RESPONSE_MODEL = _a("GEN_AI_RESPONSE_MODEL", "gen_ai.response.model")
RESPONSE_FINISH_REASONS = _a("GEN_AI_RESPONSE_FINISH_REASONS", "gen_ai.response.finish_reasons")
RESPONSE_TIME_TO_FIRST_CHUNK = _a(
    "GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK", "gen_ai.response.time_to_first_chunk"
)
RESPONSE_STATUS = "gen_ai.response.status"
USAGE_INPUT_TOKENS = _a("GEN_AI_USAGE_INPUT_TOKENS", "gen_ai.usage.input_tokens")
USAGE_OUTPUT_TOKENS = _a("GEN_AI_USAGE_OUTPUT_TOKENS", "gen_ai.usage.output_tokens")
USAGE_CACHE_READ_INPUT_TOKENS = _a(
    "GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS", "gen_ai.usage.cache_read.input_tokens"
)
USAGE_CACHE_CREATION_INPUT_TOKENS = _a(
    "GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS", "gen_ai.usage.cache_creation.input_tokens"
)
USAGE_REASONING_OUTPUT_TOKENS = _a(
    "GEN_AI_USAGE_REASONING_OUTPUT_TOKENS", "gen_ai.usage.reasoning.output_tokens"
)
EMBEDDINGS_DIMENSION_COUNT = _a(
    "GEN_AI_EMBEDDINGS_DIMENSION_COUNT", "gen_ai.embeddings.dimension.count"
)
TOKEN_TYPE = _a("GEN_AI_TOKEN_TYPE", "gen_ai.token.type")
INPUT_MESSAGES = _a("GEN_AI_INPUT_MESSAGES", "gen_ai.input.messages")
OUTPUT_MESSAGES = _a("GEN_AI_OUTPUT_MESSAGES", "gen_ai.output.messages")
SYSTEM_INSTRUCTIONS = _a("GEN_AI_SYSTEM_INSTRUCTIONS", "gen_ai.system_instructions")
TOOL_DEFINITIONS = _a("GEN_AI_TOOL_DEFINITIONS", "gen_ai.tool.definitions")
CONVERSATION_ID = _a("GEN_AI_CONVERSATION_ID", "gen_ai.conversation.id")
OPENAI_REQUEST_SERVICE_TIER = "openai.request.service_tier"
OPENAI_RESPONSE_SERVICE_TIER = "openai.response.service_tier"
OPENAI_RESPONSE_SYSTEM_FINGERPRINT = "openai.response.system_fingerprint"

# --- difytrace's own (no convention defines them) ---------------------------------------
USAGE_COST = "difytrace.gen_ai.usage.cost"  # USD
USAGE_ESTIMATED = "difytrace.gen_ai.usage.estimated"  # tokens counted offline, not reported
# Totals of every LLM call under a request or task span, on that span only. A namespace of
# their own: summing a per-call name over a trace (cost, tokens) must not count them again.
ROLLUP_CALLS = "difytrace.gen_ai.rollup.calls"
ROLLUP_INPUT_TOKENS = "difytrace.gen_ai.rollup.input_tokens"
ROLLUP_OUTPUT_TOKENS = "difytrace.gen_ai.rollup.output_tokens"
ROLLUP_COST = "difytrace.gen_ai.rollup.cost"  # USD
FIRST_CHUNK_EVENT = "difytrace.gen_ai.first_chunk"

# --- vendor mapping (Langfuse, LangSmith OTLP endpoints) ---------------------------------
LANGFUSE_OBSERVATION_TYPE = "langfuse.observation.type"
LANGFUSE_COMPLETION_START_TIME = "langfuse.observation.completion_start_time"
LANGFUSE_USAGE_DETAILS = "langfuse.observation.usage_details"
LANGFUSE_COST_DETAILS = "langfuse.observation.cost_details"
LANGFUSE_MODEL_NAME = "langfuse.observation.model.name"
LANGSMITH_SPAN_KIND = "langsmith.span.kind"

# --- values ------------------------------------------------------------------------------
OP_CHAT = "chat"
OP_TEXT_COMPLETION = "text_completion"
OP_EMBEDDINGS = "embeddings"
OP_GENERATE_CONTENT = "generate_content"
TOKEN_TYPE_INPUT = "input"
TOKEN_TYPE_OUTPUT = "output"

# --- metrics -----------------------------------------------------------------------------
METRIC_TOKEN_USAGE = _m("GEN_AI_CLIENT_TOKEN_USAGE", "gen_ai.client.token.usage")
METRIC_OPERATION_DURATION = _m(
    "GEN_AI_CLIENT_OPERATION_DURATION", "gen_ai.client.operation.duration"
)
METRIC_TIME_TO_FIRST_CHUNK = _m(
    "GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK", "gen_ai.client.operation.time_to_first_chunk"
)
METRIC_COST = "difytrace.gen_ai.client.cost"

#: Attributes only the latest GenAI conventions define; dropped in the v1.41 default mode.
LATEST_ONLY: frozenset[str] = frozenset(
    {
        RESPONSE_STATUS,
        REQUEST_REASONING_LEVEL,
        REQUEST_PREVIOUS_RESPONSE_ID,
    }
)

OPT_IN_ENV = "OTEL_SEMCONV_STABILITY_OPT_IN"
LATEST_EXPERIMENTAL = "gen_ai_latest_experimental"


def latest_experimental(environ: dict[str, str] | None = None) -> bool:
    """Whether ``OTEL_SEMCONV_STABILITY_OPT_IN`` asks for the latest GenAI conventions."""
    raw = (os.environ if environ is None else environ).get(OPT_IN_ENV, "")
    return LATEST_EXPERIMENTAL in {part.strip() for part in raw.split(",")}


def allowed(name: str, *, latest: bool) -> bool:
    """Whether attribute ``name`` belongs to the conventions of the active mode."""
    return latest or name not in LATEST_ONLY
