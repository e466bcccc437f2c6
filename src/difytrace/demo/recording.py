"""The demo app's ops_trace records: what Dify hands over when a run or a message finishes."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace

from difytrace.demo.llm import MODEL, Answer

TENANT = "tenant-demo"
CHAT_APP = "app-chat"
WORKFLOW_APP = "app-research"
USER = "user-42"

_tracer = trace.get_tracer("difytrace.demo.workflow")


def enabled() -> bool:
    """Whether this run delivers ops_trace records (it needs a Redis)."""
    return os.environ.get("DIFYTRACE_DEMO_OPS_TRACE") == "1"


def _now() -> datetime:
    return datetime.now(UTC)


def trace_id() -> str | None:
    """The live trace's id, so that both paths share it."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def _model_fields(answer: Answer) -> dict[str, Any]:
    return {
        "model": MODEL,
        "model_provider": "openai",
        "usage": {"input_tokens": answer.input_tokens, "output_tokens": answer.output_tokens},
        "cost": {"total": answer.cost_usd, "currency": "USD"},
        "completion_start_time": answer.first_token,
    }


def submit(record: dict[str, Any]) -> None:
    """Hand a finished record to difytrace, as Dify does when a run or message ends."""
    if not enabled():
        return
    from difytrace import ops_trace

    ops_trace.submit(record)  # returns at once; the outbox thread queues it


def message_record(
    query: str, answer: Answer, ended: datetime, live_trace: str | None
) -> dict[str, Any]:
    """The chat message, as Dify's MessageTraceInfo."""
    return {
        "kind": "message",
        "record_id": str(uuid.uuid4()),
        "tenant_id": TENANT,
        "app_id": CHAT_APP,
        "user_id": USER,
        "session_id": "conversation-1",
        "name": "message",
        "trace_id": live_trace,
        "start_time": answer.started,
        "end_time": ended,
        "inputs": {"query": query},
        "outputs": {"answer": answer.text},
        **_model_fields(answer),
    }


@dataclass
class Node:
    """A node execution being recorded; set ``outputs``/``answer``/``error`` inside the block."""

    id: str
    node_type: str
    title: str
    parent_id: str | None
    iteration_index: int | None
    start_time: datetime = field(default_factory=_now)
    inputs: Any = None
    outputs: Any = None
    answer: Answer | None = None
    error: str | None = None

    def as_dict(self, end_time: datetime) -> dict[str, Any]:
        """The NodeExecution of the record."""
        data: dict[str, Any] = {
            "id": self.id,
            "node_id": f"{self.node_type}-{self.title}".lower().replace(" ", "-"),
            "node_type": self.node_type,
            "title": self.title,
            "parent_id": self.parent_id,
            "iteration_index": self.iteration_index,
            "start_time": self.start_time,
            "end_time": end_time,
            "status": "error" if self.error else "success",
            "error": self.error,
            "inputs": self.inputs,
            "outputs": self.outputs,
        }
        if self.answer is not None:
            data.update(_model_fields(self.answer))
        return data


@dataclass
class WorkflowRun:
    """Records node executions (each also a live span) and builds the workflow record."""

    name: str
    inputs: dict[str, Any]
    nodes: list[dict[str, Any]] = field(default_factory=list)
    started: datetime = field(default_factory=_now)

    @contextmanager
    def node(
        self,
        node_type: str,
        title: str,
        *,
        parent: Node | None = None,
        iteration_index: int | None = None,
    ) -> Iterator[Node]:
        """Run one node: a live span ``node <title>`` and a NodeExecution."""
        node = Node(
            str(uuid.uuid4()), node_type, title, parent.id if parent else None, iteration_index
        )
        attributes: dict[str, Any] = {"dify.node.type": node_type, "dify.node.title": title}
        if iteration_index is not None:
            attributes["dify.iteration.index"] = iteration_index
        with _tracer.start_as_current_span(f"node {title}", attributes=attributes) as span:
            yield node
            if node.error:
                span.set_status(trace.StatusCode.ERROR, node.error)
        self.nodes.append(node.as_dict(_now()))

    def record(self, outputs: Any, live_trace: str | None) -> dict[str, Any]:
        """The finished run, as Dify's WorkflowTraceInfo."""
        return {
            "kind": "workflow",
            "record_id": str(uuid.uuid4()),
            "tenant_id": TENANT,
            "app_id": WORKFLOW_APP,
            "user_id": USER,
            "name": self.name,
            "workflow_id": "wf-research",
            "trace_id": live_trace,
            "start_time": self.started,
            "end_time": _now(),
            "inputs": self.inputs,
            "outputs": outputs,
            "nodes": self.nodes,
        }
