"""Matching spans against expected nodes: one node, then its children (either order)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from difytrace.testing._model import CapturedSpan
from difytrace.testing._render import children_index
from difytrace.testing._spec import Repeat, S

Entry = S | Repeat


def value_ok(expected: Any, actual: Any) -> bool:
    """One expected attribute value: a regex, a sequence, a predicate, or a plain value."""
    if isinstance(expected, re.Pattern):
        return isinstance(actual, str) and expected.fullmatch(actual) is not None
    if isinstance(expected, list | tuple):
        return isinstance(actual, list | tuple) and tuple(expected) == tuple(actual)
    if callable(expected) and not isinstance(expected, type):
        return bool(expected(actual))
    return bool(expected == actual)


def name_ok(expected: str | re.Pattern[str], actual: str) -> bool:
    """A name given as text (equal) or a compiled regex (full match)."""
    if isinstance(expected, re.Pattern):
        return expected.fullmatch(actual) is not None
    return expected == actual


def explain_node(span: CapturedSpan, spec: S) -> str | None:
    """Why ``span`` itself (not its children) does not match ``spec``; None when it does."""
    if not name_ok(spec.name, span.name):
        return f"name {span.name!r} is not {spec.name!r}"
    if spec.kind is not None and span.kind != spec.kind.upper():
        return f"{span.name!r}: kind {span.kind} is not {spec.kind.upper()}"
    if spec.status is not None and span.status_code != spec.status.upper():
        return f"{span.name!r}: status {span.status_code} is not {spec.status.upper()}"
    for key, expected in spec.attrs.items():
        if key not in span.attributes:
            return f"{span.name!r}: attribute {key!r} is missing"
        if not value_ok(expected, span.attributes[key]):
            actual = span.attributes[key]
            return f"{span.name!r}: attribute {key!r} is {actual!r}, expected {expected!r}"
    return None


class Matcher:
    """Matches expected trees against one set of spans (results memoised per span/node)."""

    def __init__(self, spans: Sequence[CapturedSpan], ordered: bool, exact: bool) -> None:
        self.index = children_index(spans)
        self.ordered = ordered
        self.exact = exact
        self._memo: dict[tuple[str, str, int], bool] = {}

    def node(self, span: CapturedSpan, spec: S) -> bool:
        """Whether ``span`` and its subtree match ``spec``."""
        key = (span.trace_id, span.span_id, id(spec))
        if key not in self._memo:
            self._memo[key] = explain_node(span, spec) is None and self._children(span, spec)
        return self._memo[key]

    def fits(self, span: CapturedSpan, entry: Entry) -> bool:
        """Whether ``span`` matches the node of an expected child entry."""
        return self.node(span, entry.spec if isinstance(entry, Repeat) else entry)

    def _children(self, span: CapturedSpan, spec: S) -> bool:
        kids = self.index.get(span.span_id, [])
        ordered = self.ordered if spec.ordered is None else spec.ordered
        exact = self.exact if spec.exact is None else spec.exact
        entries = list(spec.children)
        if not entries:
            return not (exact and kids)
        fits = [[self.fits(kid, e) for e in entries] for kid in kids]
        if ordered:
            return _ordered(fits, entries, exact)
        return _unordered(fits, entries, exact)


def _ordered(fits: list[list[bool]], entries: list[Entry], exact: bool) -> bool:
    # Iterative NFA over the children (no recursion depth limit): a state is
    # (expected entry index, children in the current run of a Repeat).
    states = _close({(0, 0)}, entries)
    for row in fits:
        moved: set[tuple[int, int]] = set()
        for j, run in states:
            if j == len(entries):
                if not exact:
                    moved.add((j, run))
                continue
            entry = entries[j]
            if row[j]:
                if not isinstance(entry, Repeat):
                    moved.add((j + 1, 0))
                elif entry.has_room(run):
                    moved.add((j, run + 1))
            if not exact:
                moved.add((j, run))
        states = _close(moved, entries)
        if not states:
            return False
    return any(j == len(entries) for j, _ in states)


def _close(states: set[tuple[int, int]], entries: list[Entry]) -> set[tuple[int, int]]:
    """Add the states reached by ending a Repeat run that has reached its minimum."""
    todo = list(states)
    while todo:
        j, run = todo.pop()
        entry = entries[j] if j < len(entries) else None
        if isinstance(entry, Repeat) and run >= entry.min and (j + 1, 0) not in states:
            states.add((j + 1, 0))
            todo.append((j + 1, 0))
    return states


def _unordered(fits: list[list[bool]], entries: list[Entry], exact: bool) -> bool:
    # Children with the same row of fits are interchangeable, so the search runs over
    # counts per group of them, breadth first: no recursion, polynomial in the children.
    groups = Counter(tuple(row) for row in fits)
    rows = list(groups)
    states = {tuple(groups[row] for row in rows)}  # children left per group
    for j, entry in enumerate(entries):
        if isinstance(entry, Repeat):
            continue
        states = {
            (*left[:g], left[g] - 1, *left[g + 1 :])
            for left in states
            for g, row in enumerate(rows)
            if row[j] and left[g]
        }
        if not states:
            return False
    return any(_repeats_ok(rows, left, entries, exact) for left in states)


def _repeats_ok(
    rows: list[tuple[bool, ...]], left: tuple[int, ...], entries: list[Entry], exact: bool
) -> bool:
    """Every child not taken by a plain entry counts for a Repeat it matches."""
    repeats = {j: e for j, e in enumerate(entries) if isinstance(e, Repeat)}
    counts = dict.fromkeys(repeats, 0)
    for row, n in zip(rows, left, strict=True):
        options = [j for j in repeats if row[j]]
        if not n or not options:
            if n and exact:
                return False
            continue
        for _ in range(n):
            # A child matching several repeats goes where a minimum is still unmet, else
            # where there is room (greedy: enough for the trees tests describe).
            best = max(
                options, key=lambda j: (repeats[j].min - counts[j], repeats[j].has_room(counts[j]))
            )
            counts[best] += 1
    return all(repeats[j].allows(c) for j, c in counts.items())
