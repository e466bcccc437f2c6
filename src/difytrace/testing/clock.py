"""A controllable clock for span timestamps (``fixed_clock``).

opentelemetry-sdk stamps spans with the ``time_ns`` it imports into ``opentelemetry.sdk.trace``
(``from time import time_ns``, the same in 1.27.0 and 1.45): span start and end, span events
and recorded exceptions, and the deadline of ``force_flush`` over several span processors.
:func:`use_clock` replaces that name, and the same name in difytrace's Flask instrumentation
(which stamps its server spans and first byte itself), and puts the originals back after.

Not affected: spans of other processes; spans started or ended with an explicit time;
metric timestamps; durations difytrace measures with ``perf_counter`` / ``monotonic``
(Celery task duration, LLM time to first token; ``langfuse.observation.completion_start_time``
is the fake span start plus a real delay). Flask's ``http.server.request.duration`` follows
the fake clock, as its span does.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

#: Modules whose ``time_ns`` stamps spans: the SDK, then difytrace's own explicit stamps.
_STAMPING_MODULES = (
    "opentelemetry.sdk.trace",
    "difytrace.instrumentation.flask",
    "difytrace.instrumentation.wsgi_stream",
)
DEFAULT_START = datetime(2025, 1, 1, tzinfo=UTC)


class FakeClock:
    """Nanoseconds since the epoch from ``start``, advancing by ``step`` seconds per reading.

    Example:

    >>> clock = FakeClock(step=0.5)
    >>> clock(), clock()
    (1735689600000000000, 1735689600500000000)
    >>> clock.advance(60)
    >>> clock.now_ns
    1735689661000000000
    """

    def __init__(self, start: datetime | float = DEFAULT_START, step: float = 0.001) -> None:
        if isinstance(start, datetime):
            if start.tzinfo is None:
                raise ValueError(f"FakeClock start {start!r} needs a timezone (e.g. tzinfo=UTC)")
            start = start.timestamp()
        if step < 0:
            raise ValueError(f"FakeClock step must be >= 0 seconds, got {step!r}")
        self._now = round(start * 1e9)
        self._step = round(step * 1e9)
        self._lock = threading.Lock()

    def __call__(self) -> int:
        """The current time in ns; the clock then moves on by one step.

        >>> FakeClock(start=10)()
        10000000000
        """
        with self._lock:
            now = self._now
            self._now += self._step
            return now

    @property
    def now_ns(self) -> int:
        """The time the next reading returns, without reading it.

        >>> FakeClock(start=1.5).now_ns
        1500000000
        """
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward (a span started before ends ``seconds`` later).

        >>> clock = FakeClock(start=0, step=0)
        >>> clock.advance(2.5)
        >>> clock()
        2500000000
        """
        if seconds < 0:
            raise ValueError(f"FakeClock only moves forward, got advance({seconds!r})")
        with self._lock:
            self._now += round(seconds * 1e9)


@contextmanager
def use_clock(clock: FakeClock | None = None) -> Iterator[FakeClock]:
    """Within the block, spans of this process are stamped by ``clock`` (a new one if None).

    Example:

    >>> from opentelemetry import trace
    >>> with use_clock(FakeClock(start=0, step=1)) as clock:
    ...     with trace.get_tracer("doc").start_as_current_span("a") as span:
    ...         clock.advance(41)
    >>> span.start_time, span.end_time
    (0, 42000000000)
    """
    clock = FakeClock() if clock is None else clock
    modules = [importlib.import_module(name) for name in _STAMPING_MODULES]
    missing = [m.__name__ for m in modules if not callable(getattr(m, "time_ns", None))]
    if missing:
        raise RuntimeError(
            f"fixed clock: {', '.join(missing)} no longer read the time through a module-level "
            "time_ns; this version of opentelemetry-sdk / difytrace is not supported"
        )
    originals = [(m, m.time_ns) for m in modules]
    try:
        for module, _ in originals:
            module.time_ns = clock  # type: ignore[attr-defined]
        yield clock
    finally:
        for module, original in originals:
            module.time_ns = original  # type: ignore[attr-defined]
