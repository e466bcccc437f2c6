"""Deterministic trace and span ids for spans started in this process (``deterministic_ids``).

Instrumentors keep the tracers they got once (``CeleryHooks`` holds its tracer for the life of
the process), and a tracer keeps the id generator of its provider, so swapping a provider's
generator after the fact would not reach them. :func:`install_global_capture` therefore builds
its ``TracerProvider`` with one switchable generator, :data:`ID_SWITCH`, that every tracer
shares; :func:`use_sequential_ids` points it at a fresh :class:`SequentialIdGenerator` and
back. Spans started in other processes (gunicorn, celery workers) keep random ids.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator


class SequentialIdGenerator(IdGenerator):
    """Trace ids 1, 2, 3 … and span ids 1, 2, 3 … (thread-safe), as hex ``0…01``.

    Example:

    >>> ids = SequentialIdGenerator()
    >>> ids.generate_trace_id(), ids.generate_span_id(), ids.generate_span_id()
    (1, 1, 2)
    >>> format(ids.generate_trace_id(), "032x")
    '00000000000000000000000000000002'
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._trace = 0
        self._span = 0

    def generate_trace_id(self) -> int:
        """The next trace id.

        >>> SequentialIdGenerator().generate_trace_id()
        1
        """
        with self._lock:
            self._trace += 1
            return self._trace

    def generate_span_id(self) -> int:
        """The next span id.

        >>> SequentialIdGenerator().generate_span_id()
        1
        """
        with self._lock:
            self._span += 1
            return self._span

    def is_trace_id_random(self) -> bool:
        """False: these ids carry no randomness (no W3C ``random-trace-id`` flag).

        >>> SequentialIdGenerator().is_trace_id_random()
        False
        """
        return False


class _SwitchableIdGenerator(IdGenerator):
    """Delegates to the generator in use: the provider's own one unless a test switched it."""

    def __init__(self, default: IdGenerator | None = None) -> None:
        self.default: IdGenerator = default or RandomIdGenerator()
        self.current: IdGenerator | None = None

    def _target(self) -> IdGenerator:
        return self.current or self.default

    def generate_trace_id(self) -> int:
        return self._target().generate_trace_id()

    def generate_span_id(self) -> int:
        return self._target().generate_span_id()

    def is_trace_id_random(self) -> bool:
        method = getattr(self._target(), "is_trace_id_random", None)  # absent in SDK 1.27
        return bool(method()) if callable(method) else False


#: The generator of the provider :func:`install_global_capture` installs.
ID_SWITCH = _SwitchableIdGenerator()


@contextmanager
def use_sequential_ids() -> Iterator[SequentialIdGenerator]:
    """Within the block, spans started in this process get sequential ids (from 1 again).

    The capturing provider is installed first if it is not yet. Example:

    >>> from opentelemetry import trace
    >>> with use_sequential_ids():
    ...     with trace.get_tracer("doc").start_as_current_span("a") as span:
    ...         format(span.get_span_context().span_id, "016x")
    '0000000000000001'
    """
    from opentelemetry import trace

    from difytrace.testing.capture import install_global_capture

    install_global_capture()
    provider = trace.get_tracer_provider()
    if getattr(provider, "id_generator", None) is not ID_SWITCH:
        raise RuntimeError(
            "deterministic ids need the TracerProvider of difytrace.testing; the global one is "
            f"{type(provider).__name__}, installed before the difytrace plugin"
        )
    generator = SequentialIdGenerator()
    previous, ID_SWITCH.current = ID_SWITCH.current, generator
    try:
        yield generator
    finally:
        ID_SWITCH.current = previous
