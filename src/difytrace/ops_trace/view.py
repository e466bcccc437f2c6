"""The one place that turns a record into observations; every destination maps these.

A :class:`TraceView` is a flat, parents-first list of :class:`Observation` with their
deterministic ids (span ids computed, LangSmith run ids and dotted orders on first use), so
the destinations only translate fields into their wire format.

Workflow nodes nest by ``parent_id`` (iteration, loop, agent); the rounds of an iteration or
loop run one after another, so in time order they read as rounds, with the index in the
metadata. Parallel branches run at the same time: in time order their nodes interleave, and
Langfuse / LangSmith show no metadata in the tree, so the nodes of one branch (same
``parallel_id`` / ``parallel_branch_id`` under the same parent and round) are nested under a
``parallel branch`` observation spanning them.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any, NamedTuple

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


class RunIds:
    """Where an observation sits among LangSmith runs, computed on first use.

    Only a LangSmith destination reads run ids and dotted orders (a UUID, a digest and a
    ``strftime`` per observation): every other destination never pays for them.
    """

    __slots__ = ("_dotted", "_run_id", "key", "parent", "record_id", "start_time", "tenant_id")

    def __init__(
        self,
        tenant_id: str,
        record_id: str,
        key: str,
        start_time: datetime,
        parent: RunIds | None,
    ) -> None:
        self.tenant_id = tenant_id
        self.record_id = record_id
        self.key = key
        self.start_time = start_time
        self.parent = parent
        self._run_id: uuid.UUID | None = None
        self._dotted: str | None = None

    @property
    def run_id(self) -> uuid.UUID:
        """The run id (see :func:`ids.run_id`)."""
        if self._run_id is None:
            self._run_id = ids.run_id(self.tenant_id, self.record_id, self.key)
        return self._run_id

    @property
    def dotted_order(self) -> str:
        """The ancestors' dotted order, then this run's segment."""
        if self._dotted is None:
            own = ids.dotted_segment(self.start_time, self.run_id)
            self._dotted = own if self.parent is None else f"{self.parent.dotted_order}.{own}"
        return self._dotted


class Observation(NamedTuple):
    """One span / observation / run, with every id it needs at every destination.

    A named tuple: immutable like the record it comes from, and built several times faster
    than a frozen dataclass (one per node of every record a worker delivers).
    """

    key: str
    name: str
    type: str
    span_id: str
    parent_span_id: str | None
    runs: RunIds
    start_time: datetime
    end_time: datetime | None
    status: str
    error: str | None
    inputs: Any
    outputs: Any
    metadata: dict[str, Any]
    model_parameters: dict[str, Any]
    model: str | None = None
    model_provider: str | None = None
    usage: Usage | None = None
    cost: Cost | None = None
    completion_start_time: datetime | None = None

    @property
    def run_id(self) -> uuid.UUID:
        """LangSmith's run id of this observation."""
        return self.runs.run_id

    @property
    def parent_run_id(self) -> uuid.UUID | None:
        """LangSmith's run id of the parent (None for a trace's root run)."""
        parent = self.runs.parent
        return None if parent is None else parent.run_id

    @property
    def dotted_order(self) -> str:
        """LangSmith's ``dotted_order`` of this run."""
        return self.runs.dotted_order

    @property
    def run_type(self) -> str:
        """LangSmith's run_type for this observation."""
        return _RUN_TYPE.get(self.type, "chain")


@dataclass(frozen=True)
class TraceView:
    """A record as observations: ``observations[0]`` is the record's own root."""

    record: Record
    trace_id: str
    observations: tuple[Observation, ...]

    @property
    def is_trace_root(self) -> bool:
        """True when the record starts its trace (it has no parent record)."""
        return self.record.parent is None

    @cached_property
    def langsmith_trace_id(self) -> uuid.UUID:
        """LangSmith's trace id: the run id of the trace's root record."""
        record = self.record
        root_record_id = record.parent.record_id if record.parent else record.record_id
        return ids.run_id(record.tenant_id, root_record_id)


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
    parent = record.parent
    root_record_id = parent.record_id if parent else record.record_id
    live_trace_id = parent.trace_id if parent is not None and parent.trace_id else record.trace_id
    trace_id = ids.trace_id_hex(tenant, root_record_id, live_trace_id)
    parent_span = parent_runs = None
    if parent is not None:
        parent_span = ids.span_id_hex(tenant, parent.record_id)
        parent_runs = RunIds(tenant, parent.record_id, "", parent.start_time, None)
    root = Observation(
        key="",
        name=record.name or record.kind,
        type=_KIND_TYPE[record.kind],
        span_id=ids.span_id_hex(tenant, record.record_id),
        parent_span_id=parent_span,
        runs=RunIds(tenant, record.record_id, "", record.start_time, parent_runs),
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
    return TraceView(record=record, trace_id=trace_id, observations=(root, *nodes))


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
            below = children.get(entry.id)
            if below:
                stack.extend((e, obs) for e in reversed(_entries(below)))
        out.append(obs)
    return out


def _node_order(node: NodeExecution) -> tuple[datetime, int, str]:
    """Time order; ties broken by index and id so the record's node order never matters."""
    return node.start_time, node.index if node.index is not None else 0, node.id


def _order(entry: _Entry) -> tuple[datetime, int, str]:
    """:func:`_node_order`, a branch ordered by its first node and its branch id."""
    if isinstance(entry, _Branch):
        first = entry.nodes[0]
        return first.start_time, first.index if first.index is not None else 0, entry.branch_id
    return _node_order(entry)


def _entries(nodes: list[NodeExecution]) -> Sequence[_Entry]:
    """Siblings in time order, the nodes of each parallel branch grouped into one entry."""
    for node in nodes:
        if node.parallel_branch_id is not None:
            break
    else:  # no parallel branch among them (the common case): one sort
        return sorted(nodes, key=_node_order)
    entries: list[_Entry] = []
    branches: dict[tuple[Any, ...], list[NodeExecution]] = {}
    for node in sorted(nodes, key=_node_order):
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
        runs=RunIds(record.tenant_id, record.record_id, key, branch.start_time, parent.runs),
        start_time=branch.start_time,
        end_time=max(ends) if len(ends) == len(branch.nodes) else None,
        status="error" if failed else "success",
        error=f"{failed.title or failed.node_type}: {failed.error or 'error'}" if failed else None,
        inputs=None,
        outputs=None,
        metadata=meta,
        model_parameters={},
    )


def _node_metadata(node: NodeExecution) -> dict[str, Any]:
    meta: dict[str, Any] = dict(node.metadata)
    if node.node_id:
        meta["node_id"] = node.node_id
    if node.node_type:
        meta["node_type"] = node.node_type
    for name, value in (
        ("index", node.index),
        ("iteration_index", node.iteration_index),
        ("loop_index", node.loop_index),
    ):
        if value is not None:
            meta[name] = value
    if node.parallel_id:
        meta["parallel_id"] = node.parallel_id
    if node.parallel_branch_id:
        meta["parallel_branch_id"] = node.parallel_branch_id
    return meta


def _node_observation(
    record: WorkflowRecord, node: NodeExecution, parent: Observation
) -> Observation:
    key = "node:" + node.id
    model = node.model
    return Observation(
        key=key,
        name=node.title or node.node_type,
        type="generation" if model else _NODE_TYPE.get(node.node_type, "span"),
        span_id=ids.span_id_hex(record.tenant_id, record.record_id, key),
        parent_span_id=parent.span_id,
        runs=RunIds(record.tenant_id, record.record_id, key, node.start_time, parent.runs),
        start_time=node.start_time,
        end_time=node.end_time,
        status=node.status,
        error=node.error,
        inputs=node.inputs,
        outputs=node.outputs,
        metadata=_node_metadata(node),
        model_parameters=dict(node.model_parameters),
        model=model,
        model_provider=node.model_provider,
        usage=node.usage,
        cost=node.cost,
        completion_start_time=node.completion_start_time,
    )
