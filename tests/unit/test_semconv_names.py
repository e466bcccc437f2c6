"""Names from one place: GenAI names are spelled only in ``semconv_genai``; the catalogue,
the scrubber and the LLM telemetry take them from there (a literal elsewhere is a second
source that drifts)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import difytrace
from difytrace import semconv, semconv_genai

SRC = Path(difytrace.__file__).parent
#: Modules that must not spell a GenAI, vendor-mapping or difytrace.gen_ai name themselves.
USERS = (
    "semconv.py",
    "scrub.py",
    "instrumentation/llm/telemetry.py",
    "instrumentation/llm/rollup.py",
    "instrumentation/llm/chat.py",
    "instrumentation/llm/openai.py",
    "instrumentation/llm/litellm.py",
    "instrumentation/llm/manual.py",
)
PREFIXES = ("gen_ai.", "difytrace.gen_ai.", "langfuse.", "langsmith.", "openai.request.")


@pytest.mark.parametrize("module", USERS)
def test_no_genai_name_is_spelled_outside_semconv_genai(module: str) -> None:
    tree = ast.parse((SRC / module).read_text(encoding="utf-8"))
    literals = [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value.startswith(PREFIXES)
    ]
    assert literals == []


def test_catalogue_takes_the_genai_names_from_semconv_genai() -> None:
    assert {spec.name for spec in semconv.GENAI_METRICS} == {
        semconv_genai.METRIC_TOKEN_USAGE,
        semconv_genai.METRIC_OPERATION_DURATION,
        semconv_genai.METRIC_TIME_TO_FIRST_CHUNK,
        semconv_genai.METRIC_COST,
    }
    assert set(semconv.GENAI_METRICS) <= set(semconv.METRICS)
    assert semconv.GEN_AI_USAGE_ESTIMATED == semconv_genai.USAGE_ESTIMATED


def test_rollup_totals_do_not_share_a_per_call_name() -> None:
    per_call = {
        semconv_genai.USAGE_COST,
        semconv_genai.USAGE_INPUT_TOKENS,
        semconv_genai.USAGE_OUTPUT_TOKENS,
    }
    rollup = {
        semconv_genai.ROLLUP_CALLS,
        semconv_genai.ROLLUP_COST,
        semconv_genai.ROLLUP_INPUT_TOKENS,
        semconv_genai.ROLLUP_OUTPUT_TOKENS,
    }
    assert len(rollup) == 4
    assert not rollup & per_call
