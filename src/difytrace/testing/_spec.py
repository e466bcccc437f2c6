"""The expected-tree nodes of :func:`difytrace.testing.assert_tree`."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, eq=False)
class S:
    """An expected span: name, attribute subset, and expected children."""

    name: str | re.Pattern[str]
    attrs: Mapping[str, Any] = field(default_factory=dict)
    children: Sequence[S | Repeat] = ()
    kind: str | None = None
    status: str | None = None
    #: Match children in start-time order (``None``: the ``assert_tree`` default).
    ordered: bool | None = None
    #: Fail on children that no expected child accounts for (``None``: the default).
    exact: bool | None = None

    @staticmethod
    def any_number(spec: S, *, min: int = 0, max: int | None = None) -> Repeat:
        """Any number of children (``min`` … ``max``) matching ``spec``."""
        return Repeat(spec, min, max)


@dataclass(frozen=True, eq=False)
class Repeat:
    """``S.any_number(...)``: children matching one expected node, ``min`` to ``max`` times.

    Unordered, every child that matches (and is not taken by a plain expected child) counts,
    so ``max`` is a real upper bound; with ``ordered=True`` it bounds one run.
    """

    spec: S
    min: int = 0
    max: int | None = None

    def has_room(self, count: int) -> bool:
        """Whether one more matching child stays within ``max``."""
        return self.max is None or count < self.max

    def allows(self, count: int) -> bool:
        """Whether ``count`` matching children are within ``min`` … ``max``."""
        return count >= self.min and (self.max is None or count <= self.max)
