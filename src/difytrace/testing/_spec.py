"""The expected-tree nodes of :func:`difytrace.testing.assert_tree`."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, eq=False)
class S:
    """An expected span: name, attribute subset, and expected children.

    ``name`` is a string or a compiled regular expression (full match); each ``attrs`` value
    is a value, a compiled regex, ``unittest.mock.ANY`` or a one-argument predicate; ``kind``
    and ``status`` are names such as ``"SERVER"`` and ``"ERROR"``. Example::

        S("POST /chat", kind="SERVER", attrs={"http.response.status_code": 200}, children=[
            S("send chat_task", children=[S("process chat_task")]),
            S.any_number(S(re.compile("chat .*"), attrs={"gen_ai.usage.input_tokens": ANY})),
        ])
    """

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
        """Any number of children (``min`` … ``max``) matching ``spec``.

        >>> S.any_number(S("chunk"), min=1)
        Repeat(spec=S(name='chunk', ...), min=1, max=None)
        """
        return Repeat(spec, min, max)


@dataclass(frozen=True, eq=False)
class Repeat:
    """``S.any_number(...)``: children matching one expected node, ``min`` to ``max`` times.

    Unordered, every child that matches (and is not taken by a plain expected child) counts,
    so ``max`` is a real upper bound; with ``ordered=True`` it bounds one run. Example::

        S("stream", children=[S.any_number(S("tool call"), max=3)])
    """

    spec: S
    min: int = 0
    max: int | None = None

    def has_room(self, count: int) -> bool:
        """Whether one more matching child stays within ``max``.

        >>> Repeat(S("llm"), max=2).has_room(1), Repeat(S("llm"), max=2).has_room(2)
        (True, False)
        """
        return self.max is None or count < self.max

    def allows(self, count: int) -> bool:
        """Whether ``count`` matching children are within ``min`` … ``max``.

        >>> [Repeat(S("llm"), min=1, max=2).allows(n) for n in (0, 1, 2, 3)]
        [False, True, True, False]
        """
        return count >= self.min and (self.max is None or count <= self.max)
