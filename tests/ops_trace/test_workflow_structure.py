"""Workflow structure: parallel branches nest under a branch observation, loop and iteration
rounds under their node; the same tree at Langfuse and LangSmith, cost included."""

from __future__ import annotations

import json
from typing import Any

from difytrace.ops_trace.records import NodeExecution, WorkflowRecord
from difytrace.ops_trace.view import Observation, TraceView, build_view
from tests.ops_trace.factories import COST, at
from tests.ops_trace.test_retries import _deliverer, _langfuse, _put


def _node(node_id: str, start: int, end: int, **extra: Any) -> NodeExecution:
    return NodeExecution(id=node_id, title=node_id, start_time=at(start), end_time=at(end), **extra)


def _llm(node_id: str, start: int, end: int, **extra: Any) -> NodeExecution:
    return _node(node_id, start, end, node_type="llm", model="gpt-4o", cost=COST, **extra)


def structured_workflow() -> WorkflowRecord:
    """start → two parallel branches → a loop of 3 rounds → an iteration of 2 rounds each
    with two parallel branches → end; node order in the record is scrambled on purpose."""
    nodes = [
        _node("start", 0, 1, node_type="start"),
        # parallel p1: branch a (two nodes) and branch b (one, failing), interleaved in time
        _llm("a1", 2, 10, parallel_id="p1", parallel_branch_id="a"),
        _llm("b1", 3, 12, parallel_id="p1", parallel_branch_id="b", status="error", error="429"),
        _node("a2", 11, 15, node_type="tool", parallel_id="p1", parallel_branch_id="a"),
        _node("loop", 16, 40, node_type="loop"),
        _node("end", 61, 62, node_type="end"),
        _node("iter", 41, 60, node_type="iteration"),
    ]
    for i in range(3):
        nodes.append(_llm(f"loop-llm-{i}", 17 + 8 * i, 20 + 8 * i, parent_id="loop", loop_index=i))
        nodes.append(
            _node(f"loop-code-{i}", 21 + 8 * i, 24 + 8 * i, parent_id="loop", loop_index=i)
        )
    for i in range(2):
        for branch in ("u", "v"):
            nodes.append(
                _llm(
                    f"it-{i}-{branch}",
                    42 + 9 * i,
                    49 + 9 * i,
                    parent_id="iter",
                    iteration_index=i,
                    parallel_id="p2",
                    parallel_branch_id=branch,
                )
            )
    return WorkflowRecord(
        record_id="wf-structure",
        tenant_id="tenant-a",
        name="structured",
        start_time=at(0),
        end_time=at(63),
        nodes=tuple(reversed(nodes)),
    )


def _children(view: TraceView, parent: Observation) -> list[Observation]:
    return [o for o in view.observations if o.parent_span_id == parent.span_id]


def _names(observations: list[Observation]) -> list[str]:
    return [o.name for o in observations]


def test_parallel_branches_nest_under_a_branch_observation() -> None:
    view = build_view(structured_workflow())
    root = view.observations[0]
    top = _children(view, root)
    assert _names(top) == [
        "start",
        "parallel branch: a1",
        "parallel branch: b1",
        "loop",
        "iter",
        "end",
    ]
    branch_a, branch_b = top[1], top[2]
    assert _names(_children(view, branch_a)) == ["a1", "a2"]
    assert (branch_a.start_time, branch_a.end_time) == (at(2), at(15))
    assert branch_a.type == "span"
    assert branch_a.metadata == {"parallel_id": "p1", "parallel_branch_id": "a"}
    assert _names(_children(view, branch_b)) == ["b1"]
    assert (branch_b.status, branch_b.error) == ("error", "b1: 429")


def test_loop_rounds_nest_under_the_loop_in_order_and_iteration_rounds_keep_branches_apart() -> (
    None
):
    view = build_view(structured_workflow())
    by_name = {o.name: o for o in view.observations}
    loop = _children(view, by_name["loop"])
    assert _names(loop) == [f"loop-{kind}-{i}" for i in range(3) for kind in ("llm", "code")]
    assert [o.metadata["loop_index"] for o in loop] == [0, 0, 1, 1, 2, 2]
    rounds = _children(view, by_name["iter"])
    assert _names(rounds) == [f"parallel branch: it-{i}-{b}" for i in range(2) for b in "uv"]
    assert [r.metadata["iteration_index"] for r in rounds] == [0, 0, 1, 1]
    assert [_names(_children(view, r)) for r in rounds] == [
        ["it-0-u"],
        ["it-0-v"],
        ["it-1-u"],
        ["it-1-v"],
    ]


def test_structure_ids_are_unique_parents_first_and_stable() -> None:
    view, again = build_view(structured_workflow()), build_view(structured_workflow())
    assert [o.span_id for o in view.observations] == [o.span_id for o in again.observations]
    assert len({o.span_id for o in view.observations}) == len(view.observations) == 24
    seen: dict[str, Observation] = {}
    for obs in view.observations:
        if obs.parent_span_id is not None:
            parent = seen[obs.parent_span_id]
            assert obs.dotted_order.startswith(parent.dotted_order + ".")
            assert obs.parent_run_id == parent.run_id
        seen[obs.span_id] = obs


def test_the_tree_and_the_cost_at_langfuse(ops_env, fake_langfuse) -> None:
    record = structured_workflow()
    d = _deliverer(ops_env, _langfuse(fake_langfuse))
    d.deliver(_put(d, [record]), None, 1)
    view = build_view(record)
    stored = {sid: w.entity for (_, sid), w in fake_langfuse.entities.items()}
    assert fake_langfuse.rejected == []
    assert {sid: e["parent"] for sid, e in stored.items()} == {
        o.span_id: o.parent_span_id for o in view.observations
    }
    a1 = next(o for o in view.observations if o.name == "a1")
    attrs = stored[a1.span_id]["attributes"]
    assert json.loads(attrs["langfuse.observation.cost_details"]) == {
        "input": 0.001,
        "output": 0.002,
        "total": 0.003,
    }
    branch_b = next(o for o in view.observations if o.name == "parallel branch: b1")
    assert stored[branch_b.span_id]["attributes"]["langfuse.observation.level"] == "ERROR"


def test_the_tree_and_the_cost_at_langsmith(ops_env, fake_langsmith) -> None:
    fake_langsmith.credentials["key"] = "t"
    record = structured_workflow()
    d = _deliverer(
        ops_env, {"kind": "langsmith", "endpoint": fake_langsmith.endpoint, "api_key": "key"}
    )
    d.deliver(_put(d, [record]), None, 1)
    view = build_view(record)
    runs = {w.entity["id"]: w.entity for w in fake_langsmith.entities.values()}
    # the fake refuses (422) any run whose dotted_order and parent_run_id disagree
    assert {rid: r["parent_run_id"] for rid, r in runs.items()} == {
        str(o.run_id): None if o.parent_run_id is None else str(o.parent_run_id)
        for o in view.observations
    }
    costs = [r["outputs"].get("usage_metadata", {}).get("total_cost") for r in runs.values()]
    assert sorted(c for c in costs if c is not None) == [0.003] * 9
