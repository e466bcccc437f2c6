"""The publish and run hooks of the Celery instrumentation: spans, propagation, metrics.

One :class:`CeleryHooks` object holds everything a hook needs (tracer, instruments, the
baggage allow-list), so that each hook is a bound method connected to one Celery signal and
does no lookup at call time. Each hook runs its own code under the internal-error guard: a
difytrace bug is reported, never raised into Celery (whose signal dispatch would only log it).

Publish: ``before_task_publish`` starts the PRODUCER span and writes the W3C headers and the
publish time into the message headers; :meth:`CeleryHooks.send_task`, a wrapper of
``Celery.send_task`` (the one caller of Celery's message sender), ends it when the send
returns, or with the error when it raises (Celery sends no signal then). Ending it there
rather than in ``after_task_publish`` leaves that signal without a receiver, which Celery's
dispatch skips (~12k of ~150k instructions a publish). The span is not made current: a
publish that raises would otherwise leave it attached to the caller's context.

When ``opentelemetry-instrumentation-celery`` is instrumented in the process too (Dify's
``ext_otel`` calls it), it makes the spans and these hooks stand aside, as the Flask
instrumentation does: two sets of spans would double every trace and, since contrib injects
its headers last, hang difytrace's run spans under contrib's publish spans.

Run: ``task_prerun`` extracts the producer's context from the request, keeps only allow-listed
baggage, starts the CONSUMER span and makes it current; ``task_failure`` / ``task_retry`` record
the outcome while the span is current; ``task_postrun`` ends it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar, Token
from datetime import datetime
from types import MappingProxyType
from typing import Any, NamedTuple, TypeVar

from celery.exceptions import Retry
from opentelemetry import baggage, context, propagate, trace
from opentelemetry.metrics import Meter
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from difytrace import semconv
from difytrace._guard import report_internal_error
from difytrace.context_keys import BAGGAGE_KEY, instrumentation_suppressed
from difytrace.lean_histogram import LeanHistogram, histogram
from difytrace.lean_span import LeanTracer
from difytrace.observed_sums import ObservedSums
from difytrace.propagation import extract_from, inject_into

# Metric attribute dicts are reused per (task, destination); task names are few, but a cap
# keeps a misbehaving producer (dynamic task names) from growing the cache without bound.
_ATTR_CACHE_MAX = 1024


class _Pending(NamedTuple):
    span: Span
    count_key: tuple[str, str]
    count_attributes: Mapping[str, str]


class _Shape(NamedTuple):
    """What every span of one operation on one task and queue shares (built once)."""

    name: str
    attributes: Mapping[str, Any]
    #: The metric attributes of that task and queue (one object per shape: histogram
    #: records find their label set by identity).
    metric_attributes: Mapping[str, str]


#: Messages published per (task, destination), observed: see :mod:`difytrace.observed_sums`.
_PUBLISHED = ObservedSums()


class _Run:
    """One task execution in progress: the current run of its context, from prerun to
    postrun (Celery sends prerun, failure/retry and postrun from the thread or greenlet that
    runs the task; an eager task inside another restores the outer run when it ends)."""

    __slots__ = (
        "destination",
        "errored",
        "outer",
        "span",
        "started",
        "task_id",
        "task_name",
        "token",
    )

    def __init__(
        self, span: Span, token: object, task_id: str, task_name: str, destination: str
    ) -> None:
        self.span = span
        self.token = token
        self.task_id = task_id
        self.started = time.perf_counter()
        self.task_name = task_name
        self.destination = destination
        self.errored = False
        self.outer: Token[_Run | None] | None = None


class _RequestGetter(Getter[Any]):
    """Reads propagation headers from a task request (Celery puts message headers there)."""

    def get(self, carrier: Any, key: str) -> list[str] | None:
        value = getattr(carrier, key, None)
        if value is None:
            return None
        return [value] if isinstance(value, str) else [str(v) for v in value]

    def keys(self, carrier: Any) -> list[str]:
        return list(vars(carrier))


_GETTER = _RequestGetter()
_NO_ENTRIES: Mapping[str, object] = MappingProxyType({})
_T = TypeVar("_T")
_pending: ContextVar[_Pending | None] = ContextVar("difytrace_celery_publish", default=None)
_running: ContextVar[_Run | None] = ContextVar("difytrace_celery_run", default=None)


def _current_run(task_id: object) -> _Run | None:
    """The run in progress in this context, if it is ``task_id``'s."""
    run = _running.get()
    return run if run is not None and run.task_id == task_id else None


def span_name(operation: str, task_name: str) -> str:
    """``send {task}`` / ``process {task}`` (why: the comment above ``semconv.CELERY_SYSTEM``)."""
    return f"{operation} {task_name}"


class CeleryHooks:
    """The signal handlers, built by ``CeleryInstrumentor``; one bound method per signal."""

    def __init__(self, *, tracer: Tracer, meter: Meter | None, baggage_keys: Iterable[str]) -> None:
        self._tracer = LeanTracer(tracer)
        self._allowed = frozenset(baggage_keys)
        self._fields = tuple(propagate.get_global_textmap().fields)
        self._queue_wait: LeanHistogram | None = None
        self._duration: LeanHistogram | None = None
        if meter is not None:
            spec = semconv.CELERY_TASK_PUBLISHED
            meter.create_observable_counter(
                spec.name, [_PUBLISHED.observe], unit=spec.unit, description=spec.description
            )
            self._queue_wait = histogram(
                meter, semconv.CELERY_QUEUE_WAIT_DURATION, semconv.DURATION_BUCKETS_S
            )
            self._duration = histogram(
                meter, semconv.CELERY_TASK_DURATION, semconv.DURATION_BUCKETS_S
            )
        self._attr_cache: dict[tuple[Any, ...], Any] = {}

    # --- publish ---------------------------------------------------------------------------

    def send_task(
        self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """Wraps ``Celery.send_task``: ends the PRODUCER span of this send (with the error when
        it raises) and counts the message."""
        # A before_task_publish receiver may itself publish: each send ends its own span and
        # hands the slot back to the send around it.
        outer = _pending.get()
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            self._end_publish(outer, exc)
            raise
        self._end_publish(outer, None)
        return result

    def _end_publish(self, outer: _Pending | None, error: BaseException | None) -> None:
        pending = _pending.get()
        if pending is None or pending is outer:
            return  # no span started by this send (not instrumented, or suppressed)
        _pending.set(outer)
        try:
            if error is not None:
                _fail_span(pending.span, error)
            pending.span.end()
            if error is None:
                _PUBLISHED.add(1, pending.count_key, pending.count_attributes)
        except Exception as exc:
            report_internal_error("celery.send_task", exc)

    def before_publish(
        self,
        sender: Any = None,
        headers: dict[str, Any] | None = None,
        routing_key: str | None = None,
        exchange: str | None = None,
        **_: Any,
    ) -> None:
        """``before_task_publish``: PRODUCER span, context and publish time into the headers."""
        try:
            ctx = context.get_current()  # read once: span, baggage and suppression come from it
            if instrumentation_suppressed(ctx):
                return  # inside suppress_instrumentation() (e.g. the ops_trace outbox)
            if contrib_instrumented():
                return
            if headers is None or "id" not in headers:
                return  # task protocol 1 (Celery 3): not supported
            task_name = str(headers.get("task") or sender)
            destination = routing_key or exchange or ""
            shape = self._shape(semconv.CELERY_SEND_OPERATION, task_name, destination)
            attributes = dict(shape.attributes)
            attributes[semconv.MESSAGING_MESSAGE_ID] = str(headers["id"])
            attributes[semconv.CELERY_TASK_RETRIES] = int(headers.get("retries") or 0)
            span = self._tracer.start_span(
                shape.name, context=ctx, kind=SpanKind.PRODUCER, attributes=attributes, owned=True
            )
            for field in self._fields:
                # A retry copies the previous message's headers: never resend stale ones.
                headers.pop(field, None)
            inject_into(headers, span, self._keep_allowed(ctx)[0])
            headers[semconv.CELERY_PUBLISHED_AT_HEADER] = time.time()
            _pending.set(_Pending(span, (task_name, destination), shape.metric_attributes))
        except Exception as exc:
            report_internal_error("celery.before_task_publish", exc)

    # --- run -------------------------------------------------------------------------------

    def prerun(self, task: Any = None, task_id: str | None = None, **_: Any) -> None:
        """``task_prerun``: CONSUMER span, child of the publish span, made current."""
        try:
            if contrib_instrumented():
                return
            request = task.request
            # Based on the current context: an eager run (no headers) is a child of its caller.
            parent, kept = self._keep_allowed(extract_from(request, context.get_current(), _GETTER))
            destination = str((request.delivery_info or {}).get("routing_key") or "")
            task_name = str(task.name)
            shape = self._shape(semconv.CELERY_PROCESS_OPERATION, task_name, destination)
            attributes = dict(shape.attributes)
            attributes[semconv.MESSAGING_MESSAGE_ID] = message_id = str(task_id or request.id)
            attributes[semconv.CELERY_TASK_RETRIES] = int(request.retries or 0)
            wait = _queue_wait(request, time.time())
            if wait is not None:
                attributes[semconv.CELERY_QUEUE_WAIT] = wait
            if kept:
                attributes.update(kept)
            span = self._tracer.start_span(
                shape.name,
                context=parent,
                kind=SpanKind.CONSUMER,
                attributes=attributes,
                owned=True,
            )
            # After the span: bootstrap installs the meter provider at a process's first span.
            if wait is not None and self._queue_wait is not None:
                self._queue_wait.record_shared(wait, shape.metric_attributes)
            token = context.attach(trace.set_span_in_context(span, parent))
            run = _Run(span, token, message_id, task_name, destination)
            run.outer = _running.set(run)
        except Exception as exc:
            report_internal_error("celery.task_prerun", exc)

    def failure(
        self, task_id: str | None = None, exception: BaseException | None = None, **_: Any
    ) -> None:
        """``task_failure``: ERROR status and an exception event (traceback still attached)."""
        try:
            run = _current_run(task_id)
            if run is None or exception is None:
                return
            _record_error(run, exception)
        except Exception as exc:
            report_internal_error("celery.task_failure", exc)

    def retry(self, sender: Any = None, request: Any = None, reason: Any = None, **_: Any) -> None:
        """``task_retry``: a retry event; a retry is not a failure, the status stays unset."""
        try:
            run = _current_run(getattr(request, "id", None))
            if run is None:
                return
            cause = getattr(reason, "exc", None)
            attributes: dict[str, str] = {}
            if cause is not None:
                attributes[semconv.EXCEPTION_TYPE] = _qualname(cause)
                attributes[semconv.EXCEPTION_MESSAGE] = str(cause)
            run.span.add_event(semconv.CELERY_RETRY_EVENT, attributes)
        except Exception as exc:
            report_internal_error("celery.task_retry", exc)

    def postrun(self, task_id: str | None = None, state: str | None = None, **_: Any) -> None:
        """``task_postrun``: record the state and duration, end the span, restore the context."""
        try:
            run = _current_run(task_id)
            if run is None:
                return
            _end_run(run)
            # Celery passes the state on every path that ran to the end; without one, the run
            # is unwinding. With one, sys.exc_info() is a caller's exception (an eager task
            # called inside an ``except`` block), not the task's.
            in_flight = sys.exc_info()[1] if state is None else None
            if not run.errored and isinstance(in_flight, Exception):
                # Eager runs that propagate (apply(throw=True), task_eager_propagates) raise
                # before task_failure is sent: postrun runs while the exception unwinds.
                if isinstance(in_flight, Retry):
                    state = state or "RETRY"
                else:
                    _record_error(run, in_flight)
                    state = state or "FAILURE"
            outcome = str(state or "UNKNOWN")
            context.detach(run.token)  # type: ignore[arg-type]
            run.span.set_attribute(semconv.CELERY_TASK_STATE, outcome)
            run.span.end()
            if self._duration is not None:
                self._duration.record_shared(
                    time.perf_counter() - run.started,
                    self._duration_attributes(run.task_name, run.destination, outcome),
                )
        except Exception as exc:
            report_internal_error("celery.task_postrun", exc)

    # --- helpers ---------------------------------------------------------------------------

    def _keep_allowed(self, ctx: context.Context) -> tuple[context.Context, Mapping[str, object]]:
        """``ctx`` with only allow-listed baggage entries, and those entries (cheap when there
        is no baggage)."""
        entries: Mapping[str, object] = ctx.get(BAGGAGE_KEY) or _NO_ENTRIES  # type: ignore[assignment]
        if not entries or all(key in self._allowed for key in entries):
            return ctx, entries
        ctx = baggage.clear(ctx)
        for key, value in entries.items():
            if key in self._allowed:
                ctx = baggage.set_baggage(key, value, ctx)
        return ctx, baggage.get_all(ctx)

    def _cached(self, build: Callable[..., _T], *args: str) -> _T:
        """``build(*args)``, built once per ``args`` (never mutate it)."""
        key = (build, *args)
        cached: _T | None = self._attr_cache.get(key)
        if cached is None:
            cached = build(*args)
            if len(self._attr_cache) < _ATTR_CACHE_MAX:
                self._attr_cache[key] = cached
        return cached

    def _duration_attributes(self, task_name: str, destination: str, state: str) -> dict[str, str]:
        return self._cached(_duration_attributes, task_name, destination, state)

    def _shape(self, operation: str, task_name: str, destination: str) -> _Shape:
        """The span name and the attributes every span of ``operation`` on a task and queue
        shares, and their metric attributes."""
        return self._cached(_span_shape, operation, task_name, destination)


def _metric_attributes(task_name: str, destination: str) -> dict[str, str]:
    return {
        semconv.CELERY_TASK_NAME: task_name,
        semconv.MESSAGING_DESTINATION_NAME: destination,
    }


def _duration_attributes(task_name: str, destination: str, state: str) -> dict[str, str]:
    return {
        semconv.CELERY_TASK_NAME: task_name,
        semconv.MESSAGING_DESTINATION_NAME: destination,
        semconv.CELERY_TASK_STATE: state,
    }


def _span_shape(operation: str, task_name: str, destination: str) -> _Shape:
    attributes = {
        semconv.MESSAGING_SYSTEM: semconv.CELERY_SYSTEM,
        semconv.MESSAGING_OPERATION_NAME: operation,
        semconv.MESSAGING_OPERATION_TYPE: operation,
        semconv.MESSAGING_DESTINATION_NAME: destination,
        semconv.CELERY_TASK_NAME: task_name,
    }
    return _Shape(
        span_name(operation, task_name), attributes, _metric_attributes(task_name, destination)
    )


def _end_run(run: _Run) -> None:
    """Make the outer run (if any) current again."""
    try:
        _running.reset(run.outer)  # type: ignore[arg-type]
    except ValueError:  # set in another context: nothing of this one to restore
        _running.set(None)


def _record_error(run: _Run, exception: BaseException) -> None:
    run.errored = True
    _fail_span(run.span, exception)


def _fail_span(span: Span, exception: BaseException) -> None:
    span.record_exception(exception)
    span.set_attribute(semconv.ERROR_TYPE, _qualname(exception))
    span.set_status(Status(StatusCode.ERROR, f"{type(exception).__name__}: {exception}"))


def contrib_instrumented() -> bool:
    """Whether ``opentelemetry-instrumentation-celery`` is instrumented in this process."""
    module = sys.modules.get("opentelemetry.instrumentation.celery")
    if module is None:
        return False
    instance = getattr(getattr(module, "CeleryInstrumentor", None), "_instance", None)
    return bool(getattr(instance, "_is_instrumented_by_opentelemetry", False))


def _queue_wait(request: Any, now: float) -> float | None:
    """Seconds from publish (or from the ETA, when later) to now; None without the header."""
    published = getattr(request, semconv.CELERY_PUBLISHED_AT_HEADER, None)
    if published is None:
        return None
    since = float(published)
    eta = request.eta
    if eta:
        # A countdown/ETA task waits on purpose until then: only the time past it is queueing.
        due = (
            eta.timestamp()
            if isinstance(eta, datetime)
            else datetime.fromisoformat(eta).timestamp()
        )
        since = max(since, due)
    return max(0.0, now - since)  # clocks of two hosts may disagree


def _qualname(exc: BaseException) -> str:
    cls = type(exc)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"
