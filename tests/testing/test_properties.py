"""Properties of the tree matcher and the snapshot, over generated span trees."""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

from hypothesis import given, settings
from hypothesis import strategies as st

from difytrace.testing import CapturedSpan, S, find_tree, normalize_trace


@dataclass
class Node:
    name: str
    children: list[Node] = field(default_factory=list)


names = st.sampled_from(["a", "b", "c"])
trees = st.recursive(
    names.map(Node), lambda kids: st.builds(Node, names, st.lists(kids, max_size=4)), max_leaves=12
)


def _spans(root: Node, seed: int) -> list[CapturedSpan]:
    """The tree as finished spans with random ids and clock offset (start order = DFS)."""
    rng = random.Random(seed)
    trace_id = f"{rng.getrandbits(128):032x}"
    clock = [rng.randrange(10**18)]
    out: list[CapturedSpan] = []

    def emit(node: Node, parent: str | None) -> None:
        span_id = f"{rng.getrandbits(64) | 1:016x}"
        start = clock[0] = clock[0] + 1
        for child in node.children:
            emit(child, span_id)
        clock[0] += 1
        out.append(
            CapturedSpan(
                name=node.name,
                trace_id=trace_id,
                span_id=span_id,
                parent_span_id=parent,
                kind="INTERNAL",
                attributes={"depth": 0 if parent is None else 1},
                events=[],
                status_code="UNSET",
                status_description=None,
                start_time_ns=start,
                end_time_ns=clock[0],
                resource={},
                scope_name="p",
            )
        )

    emit(root, None)
    rng.shuffle(out)
    return out


def _spec(node: Node) -> S:
    return S(node.name, children=[_spec(c) for c in node.children])


def _drop_one_leaf(node: Node) -> Node | None:
    """A copy without the first leaf found below the root, or None if the root is a leaf."""
    for i, child in enumerate(node.children):
        if not child.children:
            return replace(node, children=node.children[:i] + node.children[i + 1 :])
        smaller = _drop_one_leaf(child)
        if smaller is not None:
            return replace(node, children=[*node.children[:i], smaller, *node.children[i + 1 :]])
    return None


@settings(max_examples=60, deadline=None)
@given(trees, st.integers(0, 2**32))
def test_a_tree_matches_its_own_description(tree: Node, seed: int) -> None:
    spans = _spans(tree, seed)
    for ordered in (False, True):
        found = find_tree(spans, _spec(tree), ordered=ordered, exact=True)
        assert found is not None
        assert found.parent_span_id is None


@settings(max_examples=60, deadline=None)
@given(trees, st.integers(0, 2**32))
def test_a_missing_child_is_caught_only_with_exact(tree: Node, seed: int) -> None:
    smaller = _drop_one_leaf(tree)
    if smaller is None:
        return
    spans = _spans(tree, seed)
    assert find_tree(spans, _spec(smaller), ordered=True) is not None
    # With exact=True the root no longer matches (a smaller subtree deeper down still may).
    exact = find_tree(spans, _spec(smaller), exact=True)
    assert exact is None or exact.parent_span_id is not None


@settings(max_examples=60, deadline=None)
@given(trees, st.integers(0, 2**32), st.integers(0, 2**32))
def test_snapshot_ignores_ids_clock_and_arrival_order(tree: Node, one: int, two: int) -> None:
    assert normalize_trace(_spans(tree, one)) == normalize_trace(_spans(tree, two))
