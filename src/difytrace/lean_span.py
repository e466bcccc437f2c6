"""Spans made by the SDK's rules at the cost of what they hold.

The SDK's ``Tracer.start_span`` + ``Span.end`` cost 173k instructions (45 µs here) for a span
of seven attributes, before any instrumentation logic: it validates every attribute value
under a lock (``BoundedAttributes``), builds a lock per span (a gevent lock once the process is
patched) and several bounded containers, then copies it all into a ``ReadableSpan`` at end.
That floor alone was half of the upstream Celery instrumentation's whole cost.

:class:`LeanTracer` starts spans with the same decisions and the same SDK objects — the
provider's sampler, id generator, resource, span limits and span processors, which see
``on_start``, ``_on_ending`` and ``on_end`` as they do for SDK spans — and the span it hands
to ``on_end`` is a ``ReadableSpan`` with the same content (42k instructions). What it leaves
out is the validation of start attributes that difytrace's own instrumentation writes
(strings, numbers and booleans by construction) and the per-span lock. Values set through the
span API are cleaned, limited and counted as by the SDK. Where the tracer is not the SDK's own
(another SDK, no provider yet) or the SDK's self-metrics are enabled, it hands the call to the
tracer unchanged.
"""

from __future__ import annotations

import copy
import logging
import sys
from collections.abc import Mapping, Sequence
from time import time_ns
from types import TracebackType
from typing import Any, NamedTuple, cast

from opentelemetry import trace as trace_api
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace import Tracer as SdkTracer
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    ParentBasedTraceIdRatio,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import (
    INVALID_SPAN_CONTEXT,
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)
from opentelemetry.util import types

from difytrace.context_keys import span_in

logger = logging.getLogger(__name__)

#: The attribute value types the SDK stores unchanged.
PLAIN_VALUES = frozenset((str, int, float, bool))
_STR_TYPE = frozenset((str,))
_UNSET = Status(StatusCode.UNSET)
# Newer SDKs mark trace ids from a random generator with a W3C level-2 flag.
_RANDOM_FLAG: int | None = getattr(TraceFlags, "RANDOM_TRACE_ID", None)
#: (sampled, random trace id) → the span's trace flags, made once.
_FLAGS = {
    (sampled, random): TraceFlags(
        (TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
        | (_RANDOM_FLAG if random and _RANDOM_FLAG is not None else 0)
    )
    for sampled in (False, True)
    for random in (False, True)
}


_SEQUENCES = frozenset((tuple, list))


def _texts(value: object) -> bool:
    """A tuple or list of strings, short enough that checking every item costs little."""
    return (
        type(value) in _SEQUENCES
        and len(value) <= 8  # type: ignore[arg-type]
        and all(type(item) is str for item in value)  # type: ignore[attr-defined]
    )


class LeanTracer:
    """Starts spans like the SDK tracer it wraps; see the module docstring for what differs.

    Wrap the tracer an instrumentation gets from ``trace.get_tracer``; until a provider is
    installed that is a proxy, resolved at each call until it yields the SDK's tracer.
    """

    __slots__ = ("_room", "_sampling", "_sdk", "_tracer")

    def __init__(self, tracer: trace_api.Tracer) -> None:
        self._tracer = tracer
        self._sdk: SdkTracer | None = None
        self._sampling: _Sampling | None = None
        self._room = 0

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        start_time: int | None = None,
        *,
        owned: bool = False,
    ) -> trace_api.Span:
        """A new span, not made current.

        ``attributes`` must map non-empty strings to str, bool, int or float values (what the
        SDK stores unchanged): they are not checked. Set any other value with
        ``set_attribute``, which cleans it as the SDK does. ``owned``: ``attributes`` is a
        dict built for this span and not used by the caller afterwards, which the span keeps
        instead of a copy.
        """
        sdk = self._sdk or self._resolve()
        if sdk is None:
            return self._tracer.start_span(name, context, kind, attributes, start_time=start_time)
        current = span_in(context)
        parent = None if current is None else current.get_span_context()
        config = getattr(sdk, "_tracer_config", None)  # SDK 1.37+: a tracer can be disabled
        if config is not None and not config.is_enabled:
            return NonRecordingSpan(parent or INVALID_SPAN_CONTEXT)
        ids = sdk.id_generator
        if parent is None or not parent.is_valid:
            parent = None
            trace_id = ids.generate_trace_id()
        else:
            trace_id = parent.trace_id
        fast = self._sampling
        if fast is not None:
            # The SDK's own samplers, decided as they decide (see _Sampling).
            if parent is not None and fast.parent_based:
                recording = sampled = parent.trace_flags.sampled
            else:
                recording = sampled = (trace_id & _TRACE_ID_LIMIT) < fast.root_bound
            trace_state = None if parent is None else parent.trace_state
            kept: dict[str, Any] = {}
            if attributes and sampled:
                kept = attributes if owned and type(attributes) is dict else dict(attributes)
        else:
            result = sdk.sampler.should_sample(context, trace_id, name, kind, attributes, ())
            sampled = result.decision is Decision.RECORD_AND_SAMPLE
            recording = result.decision is not Decision.DROP
            trace_state = result.trace_state
            kept = dict(result.attributes or ())
            if not _plain(kept):  # a sampler of the host's own may add any value
                kept = dict(BoundedAttributes(None, kept, immutable=False))
        random_id = _RANDOM_FLAG is not None and bool(
            ids.is_trace_id_random() if parent is None else parent.trace_flags & _RANDOM_FLAG
        )
        span_context = SpanContext(
            trace_id, ids.generate_span_id(), False, _FLAGS[sampled, random_id], trace_state
        )
        if not recording:
            return NonRecordingSpan(span_context)
        span = LeanSpan(
            name,
            span_context,
            parent,
            kind,
            kept,
            tracer=sdk,
            room=self._room,
            start_time=start_time,
        )
        sdk.span_processor.on_start(span, parent_context=context)  # type: ignore[arg-type]
        return span

    def _resolve(self) -> SdkTracer | None:
        tracer = self._tracer
        if isinstance(tracer, trace_api.ProxyTracer):
            tracer = tracer._tracer
        if type(tracer) is not SdkTracer:
            return None
        metrics = getattr(tracer, "_tracer_metrics", None)
        if metrics is not None and type(metrics).__name__ != "NoOpTracerMetrics":
            return None  # OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED: the SDK counts its spans
        self._sampling = _Sampling.of(tracer.sampler)
        self._room = _attribute_room(tracer._span_limits)
        self._sdk = tracer
        return tracer


_TRACE_ID_LIMIT = TraceIdRatioBased.TRACE_ID_LIMIT
_ALL_ROOTS = _TRACE_ID_LIMIT + 1


class _Sampling(NamedTuple):
    """The SDK's built-in samplers as two numbers, decided without a call chain per span.

    A root (or, without ``parent_based``, every) span is sampled when the low 64 bits of its
    trace id are below ``root_bound``: ``TraceIdRatioBased``'s own rule, which also covers
    ALWAYS_ON (every id) and ALWAYS_OFF (none). ``parent_based``: a child follows its parent's
    sampled flag, as ``ParentBased`` with its default delegates does. Any other sampler
    (custom, or ParentBased with delegates of its own) is called as the SDK calls it.
    """

    parent_based: bool
    root_bound: int

    @classmethod
    def of(cls, sampler: Sampler) -> _Sampling | None:
        if type(sampler) in (ParentBased, ParentBasedTraceIdRatio):
            defaults = (
                sampler._remote_parent_sampled is ALWAYS_ON  # type: ignore[attr-defined]
                and sampler._local_parent_sampled is ALWAYS_ON  # type: ignore[attr-defined]
                and sampler._remote_parent_not_sampled is ALWAYS_OFF  # type: ignore[attr-defined]
                and sampler._local_parent_not_sampled is ALWAYS_OFF  # type: ignore[attr-defined]
            )
            bound = _root_bound(sampler._root) if defaults else None  # type: ignore[attr-defined]
            return None if bound is None else cls(True, bound)
        bound = _root_bound(sampler)
        return None if bound is None else cls(False, bound)


def _root_bound(sampler: Sampler) -> int | None:
    if sampler is ALWAYS_ON:
        return _ALL_ROOTS
    if sampler is ALWAYS_OFF:
        return 0
    if type(sampler) is TraceIdRatioBased:
        return sampler.bound
    return None


class LeanSpan(trace_api.Span, ReadableSpan):
    """A recording span of :class:`LeanTracer`: the live span, and at end the ``ReadableSpan``
    the processors receive (as the SDK's span, it rejects writes once ended; the SDK copies
    itself into a new ``ReadableSpan`` at end, this span hands over itself).

    Attributes live in a plain dict while under the attribute-count limit and without a
    value-length limit; from there on in the SDK's ``BoundedAttributes``, which evicts,
    truncates and counts as the SDK span does.
    """

    def __init__(
        self,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        attributes: dict[str, Any],
        *,
        tracer: SdkTracer,
        room: int,
        start_time: int | None = None,
    ) -> None:
        # ReadableSpan's fields, set here rather than through its __init__ (no defaults to
        # compute); the resource and scope are the tracer's at start, as in the SDK.
        self._name = name
        self._context = context
        self._parent = parent
        self._kind = kind
        # Most spans get no event and no link: a list is made at the first one.
        self._events: Any = ()
        self._links: Any = ()
        self._status = _UNSET
        self._start_time = time_ns() if start_time is None else start_time
        self._end_time: int | None = None
        self._resource = tracer.resource
        self._instrumentation_scope = tracer._instrumentation_scope
        self._instrumentation_info = tracer.instrumentation_info
        self._tracer = tracer
        # Emptied by the one end() that exports: list.pop is atomic, a lock per span is not free.
        self._live = [True]
        self._limits = tracer._span_limits
        self._room = room  # attributes a plain dict holds (see _attribute_room)
        self._dropped = 0
        self._attributes: Any = attributes
        if len(attributes) > self._room:
            self._bound()

    # --- the span API ----------------------------------------------------------------------

    def get_span_context(self) -> SpanContext:
        return cast(SpanContext, self._context)  # set at start, never None here

    def is_recording(self) -> bool:
        return self._end_time is None

    def set_attribute(self, key: str, value: types.AttributeValue) -> None:
        if self._end_time is not None:
            logger.warning("Setting attribute on ended span.")
            return
        attributes = self._attributes
        if type(attributes) is not dict or len(attributes) >= self._room:
            self._bound()[key] = value
            return
        if type(value) not in PLAIN_VALUES or type(key) is not str or not key:
            if _texts(value) and type(key) is str and key:
                value = tuple(cast(Sequence[str], value))  # what both SDKs make of it
            else:
                # The SDK's own check (other sequences, bad keys, None), logged and counted
                # as by it.
                one = BoundedAttributes(None, immutable=False)
                one[key] = value
                self._dropped += one.dropped
                if key not in one:
                    return
                value = one[key]
        if key in attributes:
            del attributes[key]  # as in the SDK, a key set again becomes the newest
        attributes[key] = value

    def set_attributes(self, attributes: Mapping[str, types.AttributeValue]) -> None:
        if self._end_time is not None:
            logger.warning("Setting attribute on ended span.")  # once, as the SDK does
            return
        own = self._attributes
        for key, value in attributes.items():
            if (
                type(value) in PLAIN_VALUES
                and type(own) is dict
                and len(own) < self._room
                and type(key) is str
                and key
            ):
                if key in own:
                    del own[key]
                own[key] = value
            else:
                self.set_attribute(key, value)
                own = self._attributes  # bounded once the room is used up

    def add_event(
        self,
        name: str,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
    ) -> None:
        if self._end_time is not None:
            logger.warning("Tried calling _add_event on an ended span.")
            return
        limits = self._limits
        event = Event(name, _frozen(attributes, limits.max_event_attributes, limits), timestamp)
        if self._events:
            self._events.append(event)
        else:
            self._events = [event]

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        # The SDK keeps a link to an invalid context when it carries attributes or state.
        if not (context and (context.is_valid or attributes or context.trace_state)):
            return
        if self._end_time is not None:
            logger.warning("Tried calling _add_link on an ended span.")
            return
        limits = self._limits
        link = Link(context, _frozen(attributes, limits.max_link_attributes, limits))
        if self._links:
            self._links.append(link)
        else:
            self._links = [link]

    def update_name(self, name: str) -> None:
        if self._end_time is not None:
            logger.warning("Tried calling update_name on an ended span.")
            return
        self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if self._end_time is not None:
            logger.warning("Tried calling set_status on an ended span.")
            return
        # The SDK's rules: OK is final, UNSET is never set, anything else is ignored.
        if self._status.status_code is StatusCode.OK:
            return
        if isinstance(status, Status):
            if status.status_code is StatusCode.UNSET:
                return
            if description is not None:
                logger.warning(
                    "Description %s ignored. Use either `Status` or `(StatusCode, Description)`",
                    description,
                )
            self._status = status
        elif isinstance(status, StatusCode) and status is not StatusCode.UNSET:
            self._status = Status(status, description)

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        # The SDK's own: it builds the exception event and calls add_event, nothing else.
        SdkSpan.record_exception(self, exception, attributes, timestamp, escaped)  # type: ignore[arg-type]

    def end(self, end_time: int | None = None) -> None:
        try:
            self._live.pop()
        except IndexError:
            logger.warning("Calling end() on an ended span.")
            return
        self._end_time = end_time if end_time is not None else time_ns()
        self._seal()
        processor = self._tracer.span_processor
        on_ending = getattr(processor, "_on_ending", None)  # SDK 1.39+
        if on_ending is not None:
            on_ending(self)
        processor.on_end(self)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        # As the SDK span: an exception leaving ``with span:`` is recorded and sets ERROR.
        if exc_val is not None and self.is_recording():
            self.record_exception(exc_val, escaped=True)
            self.set_status(Status(StatusCode.ERROR, f"{exc_type.__name__}: {exc_val}"))  # type: ignore[union-attr]
        self.end()

    def __repr__(self) -> str:
        return f'{type(self).__name__}(name="{self._name}", context={self._context})'

    def __deepcopy__(self, memo: dict[int, Any]) -> ReadableSpan:
        """A deep copy is the SDK's plain ``ReadableSpan`` (the tracer, with its locks, is not
        part of a finished span)."""
        plain = ReadableSpan(
            name=self._name,
            context=self._context,
            parent=self._parent,
            resource=self._resource,
            attributes=self._attributes,
            events=self._events,
            links=self._links,
            kind=self._kind,
            status=self._status,
            start_time=self._start_time,
            end_time=self._end_time,
            instrumentation_info=self._instrumentation_info,
            instrumentation_scope=self._instrumentation_scope,
        )
        return copy.deepcopy(plain, memo)

    def _bound(self) -> BoundedAttributes:
        """The attributes in the SDK's container, limits applied, from now on."""
        attributes = self._attributes
        if type(attributes) is dict:
            limits = self._limits
            attributes = BoundedAttributes(
                limits.max_span_attributes,
                attributes,
                immutable=False,
                max_value_len=limits.max_span_attribute_length,
            )
            attributes.dropped += self._dropped
            self._attributes = attributes
        return cast(BoundedAttributes, attributes)

    def _seal(self) -> None:
        """Freeze what is exported. Copies, so that a write racing end() (the SDK holds a lock
        there) lands in the live containers and never in a span being exported."""
        if type(self._attributes) is dict:
            if self._dropped:
                self._bound()
            else:
                self._attributes = dict(self._attributes)
        limits = self._limits
        events, links = self._events, self._links
        self._events = _bounded(events, limits.max_events) if events else ()
        self._links = _bounded(links, limits.max_links) if links else ()


def _attribute_room(limits: Any) -> int:
    """How many span attributes may live in a plain dict before the SDK's container takes
    over: the count limit, or none at all when values are truncated to a length."""
    if limits.max_span_attribute_length is not None:
        return 0
    return sys.maxsize if limits.max_span_attributes is None else int(limits.max_span_attributes)


def _frozen(attributes: types.Attributes, max_count: int | None, limits: Any) -> BoundedAttributes:
    """An event's or a link's attributes, cleaned and bounded as the SDK does."""
    return BoundedAttributes(
        max_count, attributes, immutable=True, max_value_len=limits.max_attribute_length
    )


def _bounded(items: list[Any], limit: int | None) -> Sequence[Any]:
    """A copy of ``items`` as the SDK keeps them: the newest ``limit``, the dropped counted."""
    if limit is not None and len(items) > limit:
        return BoundedList.from_seq(limit, items)
    return tuple(items)


def _plain(attributes: Mapping[Any, Any]) -> bool:
    """Whether every key is a non-empty str and every value a str, int, float or bool."""
    return (
        PLAIN_VALUES.issuperset(map(type, attributes.values()))
        and _STR_TYPE.issuperset(map(type, attributes))
        and "" not in attributes
    )
