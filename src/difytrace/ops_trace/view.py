"""The one place that turns a record into observations; every destination maps these.

A :class:`TraceView` is a flat, parents-first list of :class:`Observation` with their
deterministic ids already computed (span ids, LangSmith run ids, dotted orders), so the
destinations only translate fields into their wire format.

Workflow nodes nest by ``parent_id`` (iteration, loop, agent); the rounds of an iteration or
loop run one after another, so in time order they read as rounds, with the index in the
metadata. Parallel branches run at the same time: in time order their nodes interleave, and
Langfuse / LangSmith show no metadata in the tree, so the nodes of one branch (same
``parallel_id`` / ``parallel_branch_id`` under the same parent and round) are nested under a
``parallel branch`` observation spanning them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from difytrace.ops_trace import ids
from difytrace.ops_trace.records import (
    Cost,
    DatasetRetrievalRecord,
    ModerationRecord,
    NodeExecution,
    Record,
    SuggestedQuestionsRecord,
    ToolRecord,
    Usage,
    WorkflowRecord,
)

# Record kind → observation type (Langfuse's names); LangSmith run types follow from these.
_KIND_TYPE = {
    "workflow": "chain",
    "message": "generation",
    "moderation": "guardrail",
    "suggested_questions": "generation",
    "dataset_retrieval": "retriever",
    "tool": "tool",
    "generate_name": "generation",
    "prompt_generation": "generation",
}
_NODE_TYPE = {
    "llm": "generation",
    "tool": "tool",
    "knowledge-retrieval": "retriever",
    "agent": "agent",
    "iteration": "chain",
    "loop": "chain",
}
_RUN_TYPE = {"generation": "llm", "retriever": "retriever", "tool": "tool"}


@dataclass(frozen=True)
class Observation:
    """One span / observation / run, with every id it needs at every destination."""

    key: str
    name: str
    type: str
    span_id: str
    parent_span_id: str | None
    run_id: uuid.UUID
    parent_run_id: uuid.UUID | None
    dotted_order: str
    start_time: datetime
    end_time: datetime | None
    status: str
    error: str | None
    inputs: Any
    outputs: Any
    metadata: dict[str, Any]
    model: str | None = None
    model_provider: str | None = None
    model_parameters: dict[str, Any] = field(default_factory=dict)
    usage: Usage | None = None
    cost: Cost | None = None
    completion_start_time: datetime | None = None

    @property
    def run_type(self) -> str:
        """LangSmith's run_type for this observation."""
        return _RUN_TYPE.get(self.type, "chain")


@dataclass(frozen=True)
class TraceView:
    """A record as observations: ``observations[0]`` is the record's own root."""

    record: Record
    trace_id: str
    langsmith_trace_id: uuid.UUID
    observations: tuple[Observation, ...]

    @property
    def is_trace_root(self) -> bool:
        """True when the record starts its trace (it has no parent record)."""
        return self.record.parent is None


def _model_fields(source: Any) -> dict[str, Any]:
    return {
        name: getattr(source, name, None)
        for name in ("model", "model_provider", "usage", "cost", "completion_start_time")
    } | {"model_parameters": dict(getattr(source, "model_parameters", None) or {})}


def _root_outputs(record: Record) -> Any:
    if record.outputs is not None:
        return record.outputs
    if isinstance(record, SuggestedQuestionsRecord):
        return list(record.questions)
    if isinstance(record, DatasetRetrievalRecord):
        return [doc.model_dump(mode="json") for doc in record.documents]
    return None


def _root_metadata(record: Record) -> dict[str, Any]:
    meta: dict[str, Any] = dict(record.metadata)
    meta["difytrace.record.kind"] = record.kind
    meta["difytrace.record.id"] = record.record_id
    if isinstance(record, ModerationRecord):
        meta.update(flagged=record.flagged, action=record.action)
    elif isinstance(record, ToolRecord):
        meta.update(tool_name=record.tool_name, tool_config=dict(record.tool_config))
    elif isinstance(record, WorkflowRecord) and record.workflow_id:
        meta["workflow_id"] = record.workflow_id
    return meta


def build_view(record: Record) -> TraceView:
    """Turn a record into its observations, ids computed, parents before children."""
    tenant = record.tenant_id
    root_record_id = record.parent.record_id if record.parent else record.record_id
    trace_id = ids.trace_id_hex(tenant, root_record_id, record.trace_id)
    ls_trace = ids.run_id(tenant, root_record_id)
    root_run = ids.run_id(tenant, record.record_id)
    parent_span = parent_run = None
    dotted = ids.dotted_segment(record.start_time, root_run)
    if record.parent is not None:
        parent_span = ids.span_id_hex(tenant, record.parent.record_id)
        parent_run = ids.run_id(tenant, record.parent.record_id)
        dotted = ids.dotted_segment(record.parent.start_time, parent_run) + "." + dotted
    root = Observation(
        key="",
        name=record.name or record.kind,
        type=_KIND_TYPE[record.kind],
        span_id=ids.span_id_hex(tenant, record.record_id),
        parent_span_id=parent_span,
        run_id=root_run,
        parent_run_id=parent_run,
        dotted_order=dotted,
        start_time=record.start_time,
        end_time=record.end_time,
        status=record.status,
        error=record.error,
        inputs=record.inputs,
        outputs=_root_outputs(record),
        metadata=_root_metadata(record),
        **_model_fields(record),
    )
    nodes = _node_observations(record, root) if isinstance(record, WorkflowRecord) else []
    return TraceView(
        record=record, trace_id=trace_id, langsmith_trace_id=ls_trace, observations=(root, *nodes)
    )


@dataclass(frozen=True)
class _Branch:
    """The nodes of one parallel branch under one parent (and one iteration / loop round)."""

    parallel_id: str | None
    branch_id: str
    round: tuple[int | None, int | None]
    nodes: tuple[NodeExecution, ...]

    @property
    def start_time(self) -> datetime:
        return self.nodes[0].start_time


_Entry = NodeExecution | _Branch


def _node_observations(record: WorkflowRecord, root: Observation) -> list[Observation]:
    children: dict[str | None, list[NodeExecution]] = {}
    for node in record.nodes:
        children.setdefault(node.parent_id, []).append(node)
    out: list[Observation] = []
    stack: list[tuple[_Entry, Observation]] = [
        (e, root) for e in reversed(_entries(children.get(None, [])))
    ]
    while stack:
        entry, parent = stack.pop()
        if isinstance(entry, _Branch):
            obs = _branch_observation(record, entry, parent)
            stack.extend((n, obs) for n in reversed(entry.nodes))
        else:
            obs = _node_observation(record, entry, parent)
            stack.extend((e, obs) for e in reversed(_entries(children.get(entry.id, []))))
        out.append(obs)
    return out


def _ordered(nodes: list[NodeExecution]) -> list[NodeExecution]:
    return sorted(nodes, key=_order)


def _order(entry: _Entry) -> tuple[datetime, int, str]:
    """Time order; ties broken by index and id so the record's node order never matters."""
    node = entry.nodes[0] if isinstance(entry, _Branch) else entry
    tie = entry.branch_id if isinstance(entry, _Branch) else node.id
    return node.start_time, node.index if node.index is not None else 0, tie


def _entries(nodes: list[NodeExecution]) -> list[_Entry]:
    """Siblings in time order, the nodes of each parallel branch grouped into one entry."""
    entries: list[_Entry] = []
    branches: dict[tuple[Any, ...], list[NodeExecution]] = {}
    for node in _ordered(nodes):
        if node.parallel_branch_id is None:
            entries.append(node)
            continue
        group = (node.parallel_id, node.parallel_branch_id, node.iteration_index, node.loop_index)
        branches.setdefault(group, []).append(node)
    entries += [
        _Branch(pid, bid, (it, loop), tuple(members))
        for (pid, bid, it, loop), members in branches.items()
    ]
    return sorted(entries, key=_order)


def _branch_observation(
    record: WorkflowRecord, branch: _Branch, parent: Observation
) -> Observation:
    first = branch.nodes[0]
    key = f"branch:{parent.key}:{branch.parallel_id}:{branch.branch_id}:{branch.round}"
    run = ids.run_id(record.tenant_id, record.record_id, key)
    ends = [n.end_time for n in branch.nodes if n.end_time is not None]
    failed = next((n for n in branch.nodes if n.status == "error"), None)
    meta = {
        k: v
        for k, v in (
            ("parallel_id", branch.parallel_id),
            ("parallel_branch_id", branch.branch_id),
            ("iteration_index", branch.round[0]),
            ("loop_index", branch.round[1]),
        )
        if v is not None
    }
    return Observation(
        key=key,
        name=f"parallel branch: {first.title or first.node_type}",
        type="span",
        span_id=ids.span_id_hex(record.tenant_id, record.record_id, key),
        parent_span_id=parent.span_id,
        run_id=run,
        parent_run_id=parent.run_id,
        dotted_order=parent.dotted_order + "." + ids.dotted_segment(branch.start_time, run),
        start_time=branch.start_time,
        end_time=max(ends) if len(ends) == len(branch.nodes) else None,
        status="error" if failed else "success",
        error=f"{failed.title or failed.node_type}: {failed.error or 'error'}" if failed else None,
        inputs=None,
        outputs=None,
        metadata=meta,
    )


def _node_observation(
    record: WorkflowRecord, node: NodeExecution, parent: Observation
) -> Observation:
    key = "node:" + node.id
    run = ids.run_id(record.tenant_id, record.record_id, key)
    node_type = "generation" if node.model else _NODE_TYPE.get(node.node_type, "span")
    meta: dict[str, Any] = dict(node.metadata)
    meta.update(
        {
            k: v
            for k, v in (
                ("node_id", node.node_id),
                ("node_type", node.node_type),
                ("index", node.index),
                ("iteration_index", node.iteration_index),
                ("loop_index", node.loop_index),
                ("parallel_id", node.parallel_id),
                ("parallel_branch_id", node.parallel_branch_id),
            )
            if v not in (None, "")
        }
    )
    return Observation(
        key=key,
        name=node.title or node.node_type,
        type=node_type,
        span_id=ids.span_id_hex(record.tenant_id, record.record_id, key),
        parent_span_id=parent.span_id,
        run_id=run,
        parent_run_id=parent.run_id,
        dotted_order=parent.dotted_order + "." + ids.dotted_segment(node.start_time, run),
        start_time=node.start_time,
        end_time=node.end_time,
        status=node.status,
        error=node.error,
        inputs=node.inputs,
        outputs=node.outputs,
        metadata=meta,
        **_model_fields(node),
    )
