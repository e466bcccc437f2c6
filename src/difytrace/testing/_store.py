"""A thread-safe list of captured spans that tests can wait on (no sleeps: a condition)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from difytrace.testing._model import CapturedSpan

SpanPredicate = Callable[[CapturedSpan], bool]
_MAX_LINES = 100  # of the drawing of what arrived, in a timeout message


class SpanStore:
    """Spans in arrival order; :meth:`wait_for` blocks until enough have arrived."""

    def __init__(self) -> None:
        self._spans: list[CapturedSpan] = []
        self._changed = threading.Condition()

    def add(self, spans: Iterable[CapturedSpan]) -> None:
        with self._changed:
            self._spans.extend(spans)
            self._changed.notify_all()

    def spans(self) -> list[CapturedSpan]:
        with self._changed:
            return list(self._spans)

    def clear(self) -> None:
        with self._changed:
            self._spans.clear()

    def wait_for(
        self,
        count: int | None = None,
        name: str | None = None,
        timeout: float = 10,
        predicate: SpanPredicate | None = None,
    ) -> list[CapturedSpan]:
        """Wait until at least ``count`` (default 1) spans match; return the matching spans.

        Raises AssertionError after ``timeout`` seconds, showing every span that did arrive.
        """
        __tracebackhide__ = True
        wanted = 1 if count is None else count

        def selected() -> list[CapturedSpan]:
            return [
                s
                for s in self._spans
                if (name is None or s.name == name) and (predicate is None or predicate(s))
            ]

        deadline = time.monotonic() + timeout
        with self._changed:
            while len(found := selected()) < wanted:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        self._timeout_message(wanted, name, predicate, timeout, found)
                    )
                self._changed.wait(left)
            return found

    def _timeout_message(
        self,
        wanted: int,
        name: str | None,
        predicate: SpanPredicate | None,
        timeout: float,
        found: list[CapturedSpan],
    ) -> str:
        from difytrace.testing._render import render_spans

        what = (
            f"{wanted} span(s)"
            + (f" named {name!r}" if name else "")
            + (" matching the predicate" if predicate else "")
        )
        arrived = render_spans(self._spans, max_lines=_MAX_LINES) if self._spans else "  (nothing)"
        return (
            f"timed out after {timeout}s waiting for {what}; {len(found)} matched.\n"
            f"Arrived ({len(self._spans)} span(s)):\n{arrived}"
        )
