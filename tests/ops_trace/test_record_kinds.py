"""Moderation, suggested questions, conversation name and prompt generation at every destination.

Each record kind is delivered to Langfuse (OTLP and the ingestion API), LangSmith (runs API)
and a generic OTLP endpoint, and checked as the vendor stored it: observation / run type,
input and output, model, usage and cost.
"""

from __future__ import annotations

import json

import pytest

from difytrace.ops_trace.view import build_view
from tests.ops_trace.factories import other_kinds
from tests.ops_trace.test_retries import _deliverer, _langfuse, _put

COST = {"input": 0.001, "output": 0.002, "total": 0.003}
TYPES = {
    "moderation": "guardrail",
    "suggested_questions": "generation",
    "generate_name": "generation",
    "prompt_generation": "generation",
}


def _deliver_all(ops_env, destination: dict) -> list:
    records = other_kinds()
    d = _deliverer(ops_env, destination)
    d.deliver(_put(d, records), None, 1)
    assert d.runtime.store.counts() == {"pending": 0, "retries": 0}
    return records


@pytest.mark.parametrize("api", ["otlp", "ingestion"])
def test_langfuse(ops_env, fake_langfuse, api) -> None:
    records = _deliver_all(ops_env, {**_langfuse(fake_langfuse), "api": api})
    stored = {sid: w.entity for (_, sid), w in fake_langfuse.entities.items()}
    assert fake_langfuse.rejected == []
    for record in records:
        view = build_view(record)
        entity = stored[view.observations[0].span_id]
        if api == "otlp":
            attrs = entity["attributes"]
            assert entity["trace_id"] == view.trace_id
            assert attrs["langfuse.observation.type"] == TYPES[record.kind]
            assert attrs["langfuse.trace.name"] == record.kind
            if record.kind == "moderation":
                assert attrs["langfuse.observation.metadata.flagged"] == "true"
                assert json.loads(attrs["langfuse.observation.input"])["text"].startswith("how")
                continue
            assert attrs["langfuse.observation.model.name"] == "gpt-4o-mini"
            assert json.loads(attrs["langfuse.observation.usage_details"]) == {
                "input": 20,
                "output": 8,
                "total": 28,
            }
            assert json.loads(attrs["langfuse.observation.cost_details"]) == COST
            assert attrs["langfuse.observation.output"] == json.dumps(
                view.observations[0].outputs, separators=(",", ":")
            )
        else:
            assert stored["trace:" + view.trace_id]["name"] == record.kind
            if record.kind == "moderation":
                assert entity["type"] == "span-create"
                assert entity["metadata"]["type"] == "guardrail"
                assert entity["metadata"]["flagged"] is True
                continue
            assert entity["type"] == "generation-create"
            assert entity["costDetails"] == COST
            assert entity["usageDetails"] == {"input": 20, "output": 8, "total": 28}
            assert entity["output"] == view.observations[0].outputs


def test_langsmith(ops_env, fake_langsmith) -> None:
    fake_langsmith.credentials["key"] = "t"
    records = _deliver_all(
        ops_env, {"kind": "langsmith", "endpoint": fake_langsmith.endpoint, "api_key": "key"}
    )
    stored = {w.entity["id"]: w.entity for w in fake_langsmith.entities.values()}
    for record in records:
        run = stored[str(build_view(record).observations[0].run_id)]
        if record.kind == "moderation":
            assert run["run_type"] == "chain"
            assert run["extra"]["metadata"]["flagged"] is True
            continue
        assert run["run_type"] == "llm"
        usage = run["outputs"]["usage_metadata"]
        assert usage == {
            "input_tokens": 20,
            "output_tokens": 8,
            "total_tokens": 28,
            "input_cost": 0.001,
            "output_cost": 0.002,
            "total_cost": 0.003,
        }
        assert run["extra"]["metadata"]["ls_model_name"] == "gpt-4o-mini"
    questions = stored[str(build_view(records[1]).observations[0].run_id)]["outputs"]
    assert questions["output"] == ["What else?", "Why?"]


def test_generic_otlp(ops_env, otlp_receiver) -> None:
    records = _deliver_all(
        ops_env, {"kind": "otlp", "endpoint": otlp_receiver.endpoint + "/v1/traces"}
    )
    spans = {s.span_id: s for s in otlp_receiver.spans()}
    for record in records:
        view = build_view(record)
        span = spans[view.observations[0].span_id]
        assert span.trace_id == view.trace_id
        assert span.attributes["difytrace.ops_trace.record_type"] == record.kind
        assert span.attributes["difytrace.ops_trace.observation_type"] == TYPES[record.kind]
        if record.kind != "moderation":
            assert span.attributes["gen_ai.operation.name"] == "chat"
            assert span.attributes["gen_ai.request.model"] == "gpt-4o-mini"
            assert span.attributes["gen_ai.usage.output_tokens"] == 8
