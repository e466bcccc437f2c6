"""Record builders for the ops_trace tests (fixed clock, so ids and shapes are stable)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from difytrace.ops_trace.records import (
    Cost,
    GenerateNameRecord,
    MessageRecord,
    ModerationRecord,
    NodeExecution,
    PromptGenerationRecord,
    RecordBase,
    SuggestedQuestionsRecord,
    Usage,
    WorkflowRecord,
)

T0 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def at(ms: int) -> datetime:
    """T0 plus ``ms`` milliseconds."""
    return T0 + timedelta(milliseconds=ms)


def workflow(
    record_id: str = "run-1",
    tenant: str = "tenant-a",
    *,
    app: str = "app-1",
    nodes: int = 9,
    **extra: Any,
) -> WorkflowRecord:
    """A workflow run: start → an iteration holding LLM nodes → end (``nodes`` in total)."""
    items = [
        NodeExecution(
            id="n-start",
            node_type="start",
            title="Start",
            start_time=at(1),
            end_time=at(2),
            inputs={"q": "hi"},
        ),
        NodeExecution(
            id="n-iter", node_type="iteration", title="Loop", start_time=at(3), end_time=at(50)
        ),
    ]
    for i in range(max(nodes - 3, 0)):
        items.append(
            NodeExecution(
                id=f"n-llm-{i}",
                node_type="llm",
                title=f"LLM {i}",
                parent_id="n-iter",
                iteration_index=i,
                start_time=at(4 + i),
                end_time=at(5 + i),
                model="gpt-4o",
                model_provider="openai",
                usage=Usage(input_tokens=10, output_tokens=5),
                inputs={"prompt": f"p{i}"},
                outputs={"text": f"answer {i}"},
            )
        )
    items.append(
        NodeExecution(
            id="n-end",
            node_type="end",
            title="End",
            start_time=at(51),
            end_time=at(52),
            outputs={"answer": "done"},
        )
    )
    return WorkflowRecord(
        record_id=record_id,
        tenant_id=tenant,
        app_id=app,
        user_id="u-1",
        session_id="conv-1",
        name="my workflow",
        start_time=at(0),
        end_time=at(60),
        inputs={"q": "hi"},
        outputs={"answer": "done"},
        nodes=tuple(items),
        version="3",
        **extra,
    )


def message(
    record_id: str = "msg-1", tenant: str = "tenant-a", *, app: str = "app-1", **extra: Any
) -> MessageRecord:
    """A chat message with usage; keywords override any field."""
    fields: dict[str, Any] = {
        "record_id": record_id,
        "tenant_id": tenant,
        "app_id": app,
        "user_id": "u-1",
        "session_id": "conv-1",
        "conversation_id": "conv-1",
        "name": "chat",
        "start_time": at(0),
        "end_time": at(900),
        "inputs": {"query": "hello"},
        "outputs": {"answer": "world"},
        "model": "gpt-4o-mini",
        "model_provider": "openai",
        "usage": Usage(input_tokens=12, output_tokens=3),
        "completion_start_time": at(300),
    }
    return MessageRecord(**{**fields, **extra})


COST = Cost(input=0.001, output=0.002, total=0.003)


def other_kinds(tenant: str = "tenant-a", app: str = "app-1") -> list[RecordBase]:
    """Moderation, suggested questions, conversation name and prompt generation records."""
    common: dict[str, Any] = {"tenant_id": tenant, "app_id": app, "user_id": "u-1"}
    model: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "model_provider": "openai",
        "usage": Usage(input_tokens=20, output_tokens=8),
        "cost": COST,
    }
    return [
        ModerationRecord(
            record_id="mod-1",
            start_time=at(0),
            end_time=at(5),
            inputs={"text": "how do I pick a lock"},
            flagged=True,
            action="direct_output",
            preset_response="I can't help with that.",
            **common,
        ),
        SuggestedQuestionsRecord(
            record_id="sq-1",
            start_time=at(10),
            end_time=at(400),
            questions=("What else?", "Why?"),
            **common,
            **model,
        ),
        GenerateNameRecord(
            record_id="name-1",
            conversation_id="conv-1",
            start_time=at(20),
            end_time=at(300),
            inputs={"query": "hello"},
            outputs={"name": "Greeting"},
            **common,
            **model,
        ),
        PromptGenerationRecord(
            record_id="pg-1",
            start_time=at(30),
            end_time=at(900),
            inputs={"instruction": "a support bot"},
            outputs={"prompt": "You are a support bot."},
            **common,
            **model,
        ),
    ]
