"""Records: validation with clear errors, versioning, round trip, deterministic ids."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

from difytrace.exceptions import RecordError
from difytrace.ops_trace import ids
from difytrace.ops_trace.records import (
    Cost,
    DatasetRetrievalRecord,
    NodeExecution,
    ParentRef,
    RecordBase,
    RetrievedDocument,
    ToolRecord,
    Usage,
    WorkflowRecord,
    parse_record,
    to_payload,
)
from difytrace.ops_trace.view import build_view
from tests.ops_trace.factories import COST, T0, at, message, other_kinds, workflow


def test_every_kind_round_trips_through_json() -> None:
    records = [
        workflow(),
        message(),
        ToolRecord(record_id="t1", tenant_id="a", tool_name="search", start_time=T0),
        DatasetRetrievalRecord(
            record_id="d1",
            tenant_id="a",
            start_time=T0,
            documents=(RetrievedDocument(content="doc", score=0.5),),
        ),
    ]
    for record in records:
        again = parse_record(record.model_dump_json())
        assert again == record
        assert json.loads(record.model_dump_json())["schema_version"] == 1


def test_the_outbox_payload_leaves_out_none_fields_and_reads_back_equal() -> None:
    base = workflow(nodes=9).model_dump()
    records: list[RecordBase] = [
        WorkflowRecord(**{**base, "metadata": {"kept": None}, "inputs": {"a": None, "b": [None]}}),
        message(cost=COST, usage=Usage(input_tokens=1, output_tokens=2, total_tokens=None)),
        *other_kinds(),
        ToolRecord(
            record_id="t1",
            tenant_id="a",
            start_time=T0,
            parent=ParentRef(record_id="m", start_time=T0),
            tool_config={"x": None},
        ),
        DatasetRetrievalRecord(
            record_id="d1",
            tenant_id="a",
            start_time=T0,
            documents=(RetrievedDocument(content="doc", score=None),),
        ),
    ]
    for record in records:
        payload = to_payload(record)
        assert parse_record(payload) == record
        assert len(payload) < len(record.model_dump_json())
        data = json.loads(payload)
        assert "trace_id" not in data
        assert data["kind"] == record.kind
        assert data["schema_version"] == 1
    first = json.loads(to_payload(records[0]))
    assert first["inputs"] == {"a": None, "b": [None]}  # the app's own nulls are kept
    assert first["metadata"] == {"kept": None}
    assert all("parent_id" not in n or n["parent_id"] for n in first["nodes"])


def test_every_field_that_takes_none_defaults_to_none() -> None:
    """What makes leaving None fields out of the payload safe (and keeps it safe)."""
    models = [
        *_all_subclasses(RecordBase),
        NodeExecution,
        Usage,
        Cost,
        ParentRef,
        RetrievedDocument,
    ]
    for model in models:
        for name, info in model.model_fields.items():
            if info.is_required() or info.get_default(call_default_factory=True) is None:
                continue
            try:
                TypeAdapter(info.annotation).validate_python(None)
            except ValidationError:
                continue
            raise AssertionError(f"{model.__name__}.{name} takes None but defaults otherwise")


def _all_subclasses(cls: type[BaseModel]) -> set[type[BaseModel]]:
    found = set(cls.__subclasses__())
    for sub in list(found):
        found |= _all_subclasses(sub)
    return found


def test_naive_timestamp_is_refused_with_the_field_named() -> None:
    data = json.loads(message().model_dump_json())
    data["start_time"] = "2026-01-02T03:04:05"
    with pytest.raises(RecordError, match="start_time: Input should have timezone info"):
        parse_record(data)


def test_nan_and_unknown_version_are_refused() -> None:
    data = json.loads(message().model_dump_json())
    data["usage"]["input_tokens"] = float("nan")
    with pytest.raises(RecordError, match=r"usage\.input_tokens"):
        parse_record(data)
    data = json.loads(message().model_dump_json())
    data["schema_version"] = 2
    with pytest.raises(RecordError, match="unsupported ops_trace schema_version 2"):
        parse_record(data)


def test_workflow_tree_is_checked() -> None:
    bad_parent = NodeExecution(id="x", parent_id="nope", start_time=T0)
    with pytest.raises(ValueError, match="unknown parent_id 'nope'"):
        WorkflowRecord(record_id="r", tenant_id="t", start_time=T0, nodes=(bad_parent,))
    loop = (
        NodeExecution(id="a", parent_id="b", start_time=T0),
        NodeExecution(id="b", parent_id="a", start_time=T0),
    )
    with pytest.raises(ValueError, match="cycle"):
        WorkflowRecord(record_id="r", tenant_id="t", start_time=T0, nodes=loop)


def test_ids_are_deterministic_and_tenant_scoped() -> None:
    a1, a2 = build_view(workflow()), build_view(workflow())
    assert [o.span_id for o in a1.observations] == [o.span_id for o in a2.observations]
    assert a1.trace_id == a2.trace_id
    other = build_view(workflow(tenant="tenant-b"))
    assert not {o.span_id for o in a1.observations} & {o.span_id for o in other.observations}
    assert len({o.span_id for o in a1.observations}) == len(a1.observations)


def test_live_trace_id_is_kept_for_linking() -> None:
    live = "0af7651916cd43dd8448eb211c80319c"
    view = build_view(message(trace_id=live.upper()))
    assert view.trace_id == live


def test_nodes_nest_by_parent_whatever_their_order() -> None:
    record = workflow()
    shuffled = record.model_copy(update={"nodes": tuple(reversed(record.nodes))})
    view = build_view(shuffled)
    by_key = {o.key: o for o in view.observations}
    root = view.observations[0]
    assert by_key["node:n-llm-0"].parent_span_id == by_key["node:n-iter"].span_id
    assert by_key["node:n-iter"].parent_span_id == root.span_id
    assert by_key["node:n-llm-0"].type == "generation"
    # parents come before children (LangSmith and readers of the batch rely on it)
    seen = set()
    for obs in view.observations:
        assert obs.parent_span_id is None or obs.parent_span_id in seen
        seen.add(obs.span_id)


def test_dotted_order_follows_the_tree() -> None:
    view = build_view(workflow())
    by_key = {o.key: o for o in view.observations}
    root, it, llm = view.observations[0], by_key["node:n-iter"], by_key["node:n-llm-0"]
    assert root.dotted_order == "20260102T030405678901Z" + str(root.run_id)
    assert llm.dotted_order == ".".join(
        [
            root.dotted_order,
            ids.dotted_segment(at(3), it.run_id),
            ids.dotted_segment(at(4), llm.run_id),
        ]
    )
    assert view.langsmith_trace_id == root.run_id


def test_child_record_lands_under_its_parent_before_the_parent_exists() -> None:
    parent = message(record_id="msg-9")
    child = ToolRecord(
        record_id="tool-1",
        tenant_id="tenant-a",
        tool_name="search",
        start_time=at(100),
        parent=ParentRef(record_id="msg-9", start_time=at(0)),
    )
    pv, cv = build_view(parent), build_view(child)
    assert cv.trace_id == pv.trace_id
    assert cv.observations[0].parent_span_id == pv.observations[0].span_id
    assert cv.observations[0].parent_run_id == pv.observations[0].run_id
    assert cv.observations[0].dotted_order.startswith(pv.observations[0].dotted_order + ".")
    assert not cv.is_trace_root


def test_a_child_joins_its_parents_live_trace_whatever_its_own() -> None:
    parent = message(record_id="msg-live", trace_id="ab" * 16)
    for own in (None, "cd" * 16):  # none of its own, or another trace's (a later task)
        child = ToolRecord(
            record_id=f"tool-{own}",
            tenant_id="tenant-a",
            tool_name="search",
            start_time=at(100),
            trace_id=own,
            parent=parent.as_parent(),
        )
        pv, cv = build_view(parent), build_view(child)
        assert cv.trace_id == pv.trace_id == "ab" * 16
        assert cv.observations[0].parent_span_id == pv.observations[0].span_id
        assert cv.observations[0].dotted_order.startswith(pv.observations[0].dotted_order + ".")
    assert parse_record(child.model_dump_json()) == child
