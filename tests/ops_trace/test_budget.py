"""The size budget fits every record that can fit: many cut fields, escapes in previews."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from difytrace.exceptions import RecordError
from difytrace.ops_trace.budget import MARKER_KEY, fit


def _workflow(nodes: int, field: object) -> dict:
    return {
        "record_id": "run-1",
        "metadata": {},
        "nodes": [{"id": f"node-{i}", "inputs": {"x": field}} for i in range(nodes)],
    }


@pytest.mark.parametrize(
    ("doc", "budget"),
    [
        (_workflow(300, "a" * 8_000), 1_000_000),  # hundreds of cut paths to list
        (_workflow(200, ["b" * 100] * 100), 1_000_000),
        ({"record_id": "r", "outputs": "\x01" * 200_000}, 100_000),  # 6 bytes per char written
        ({"record_id": "r", "outputs": '"' * 200_000}, 100_000),  # 2 bytes per char written
    ],
    ids=["300-nodes", "200-nodes-lists", "control-chars", "quotes"],
)
def test_a_record_that_can_fit_is_fitted_not_refused(doc: dict, budget: int) -> None:
    payload = fit(doc, budget)
    assert len(payload) <= budget
    data = json.loads(payload)
    assert data["metadata"]["difytrace.truncated"]


@settings(max_examples=60, deadline=None)
@given(
    nodes=st.integers(min_value=1, max_value=60),
    text=st.text(min_size=1, max_size=40),
    repeat=st.integers(min_value=1, max_value=400),
)
def test_fit_is_within_budget_or_refuses_by_name(nodes: int, text: str, repeat: int) -> None:
    doc = _workflow(nodes, text * repeat)
    budget = 2_000 + 60 * nodes  # room for the nodes themselves, not for their inputs
    try:
        payload = fit(doc, budget)
    except RecordError as exc:
        refused = str(exc)
    else:
        refused = ""
    if refused:
        assert "the budget is" in refused
        return
    assert len(payload) <= budget
    for node in json.loads(payload)["nodes"]:
        inputs = node["inputs"]
        assert inputs == {"x": text * repeat} or inputs[MARKER_KEY] is True
