"""The single place where a finished :class:`Invocation` becomes a span, events and metrics.

Span attributes follow the GenAI conventions of the active mode (see
:mod:`difytrace.semconv_genai`), plus cost, the estimate flag, and the Langfuse / LangSmith
mapping on the same span; metrics are ``gen_ai.client.operation.duration``,
``gen_ai.client.token.usage``, ``gen_ai.client.operation.time_to_first_chunk`` (streams) and
difytrace's cost counter.

Every call pays the SDK for one span and three histogram records; what difytrace adds on top
is kept to plain dict and string work: metric attribute dicts are built once per series and
reused (:class:`_Labels`), the cost counter is summed in-process and observed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from difytrace import semconv
from difytrace import semconv_genai as g
from difytrace._guard import report_internal_error
from difytrace.context_keys import BAGGAGE_KEY
from difytrace.instrumentation.llm.instruments import instruments
from difytrace.instrumentation.llm.invocation import Invocation
from difytrace.instrumentation.llm.pricing import PriceBook
from difytrace.instrumentation.llm.response_attributes import (
    cost_details,
    error_type,
    iso_utc,
    response_attributes,
)
from difytrace.instrumentation.llm.rollup import RollupSpanProcessor
from difytrace.instrumentation.llm.usage import estimated
from difytrace.lean_span import PLAIN_VALUES as _PLAIN_VALUES
from difytrace.lean_span import LeanTracer

#: Metric attribute sets remembered per Telemetry; past this many (tenants come from baggage,
#: unbounded) the cache starts over rather than grow.
_LABELS_MAX = 1024


class _Labels(NamedTuple):
    """The metric attributes of one series, built once: base, and base + token type."""

    base: dict[str, Any]
    input: dict[str, Any]
    output: dict[str, Any]
    key: tuple[Any, ...]


class Telemetry:
    """Tracer, instruments and settings shared by the LLM instrumentors of one provider."""

    def __init__(
        self,
        *,
        tracer_provider: Any = None,
        meter_provider: Any = None,
        capture_content: bool = False,
        latest: bool = False,
        prices: PriceBook | None = None,
        rollup: RollupSpanProcessor | None = None,
        library: str = "",
    ) -> None:
        from opentelemetry import metrics

        from difytrace.bootstrap import __version__

        # Which client made the call (openai, litellm, manual) is the instrumentation scope's
        # job, not a span attribute: free per span, and where backends group instrumentations.
        # Metrics keep one scope, so a series is not split by the client that recorded it.
        scope = f"difytrace.llm.{library}" if library else "difytrace.llm"
        self.tracer = LeanTracer(
            trace.get_tracer(scope, __version__, tracer_provider=tracer_provider)
        )
        meter = metrics.get_meter("difytrace.llm", __version__, meter_provider=meter_provider)
        self.capture_content = capture_content
        self.latest = latest
        self.prices = prices or PriceBook()
        self.rollup = rollup
        self.library = library
        made = instruments(meter)
        self._duration, self._tokens, self._ttfc, self._cost = made
        self._labels_cache: dict[tuple[Any, ...], _Labels] = {}

    def start(
        self,
        *,
        operation: str,
        provider: str,
        request_model: str,
        server_address: str | None = None,
        server_port: int | None = None,
        stream: bool = False,
        params: dict[str, Any] | None = None,
    ) -> Invocation:
        """Start the span of one call; ``params`` are extra request attributes."""
        embeddings = operation == g.OP_EMBEDDINGS
        attrs: dict[str, Any] = {
            g.OPERATION_NAME: operation,
            g.PROVIDER_NAME: provider,
            g.REQUEST_MODEL: request_model,
            g.LANGFUSE_OBSERVATION_TYPE: "embedding" if embeddings else "generation",
            g.LANGSMITH_SPAN_KIND: "embedding" if embeddings else "llm",
        }
        if server_address:
            attrs[semconv.SERVER_ADDRESS] = server_address
            if server_port:
                attrs[semconv.SERVER_PORT] = server_port
        if stream:
            attrs[g.REQUEST_STREAM] = True
        other: dict[str, Any] = {}
        if params:
            latest = self.latest
            for key, value in params.items():
                if value is not None and g.allowed(key, latest=latest):
                    # Caller-supplied: only plain values start the span (see LeanTracer).
                    (attrs if type(value) in _PLAIN_VALUES else other)[key] = value
        span = self.tracer.start_span(
            f"{operation} {request_model}".rstrip(),
            kind=SpanKind.CLIENT,
            attributes=attrs,
            owned=True,
        )
        if other:
            span.set_attributes(other)  # lists, Decimals...: cleaned as the SDK cleans them
        return Invocation(
            self,
            span,
            operation=operation,
            provider=provider,
            request_model=request_model,
            server_address=server_address,
            server_port=server_port,
            stream=stream,
        )

    def end(self, inv: Invocation, exc: BaseException | None) -> None:
        """Write the response side of ``inv`` onto its span and into the metrics, then end."""
        try:
            self._end(inv, exc)
        except Exception as error:  # never leak an open span, never break the host
            inv.span.end()
            report_internal_error("llm.end", error)

    def _end(self, inv: Invocation, exc: BaseException | None) -> None:
        span = inv.span
        duration = (time.monotonic_ns() - inv._start_ns) / 1e9
        if (
            exc is None
            and inv.input_tokens is None
            and inv.output_tokens is None
            and inv.operation != g.OP_EMBEDDINGS
            and (inv.stream or inv.chunks or inv.output_chars)
        ):
            inv.set_usage(
                estimated(
                    inv.request_messages,
                    inv.output_chars,
                    output_tokens=None if inv.text_counted else inv.chunks,
                )
            )
        attrs = response_attributes(inv, latest=self.latest)
        labels = self._labels(inv)
        metric_attrs = labels.base
        cost = self._cost_of(inv, attrs)
        if inv.first_chunk_ns is not None:
            self._first_chunk(inv, attrs, metric_attrs)
        if exc is not None:
            kind = error_type(exc)
            attrs[semconv.ERROR_TYPE] = kind
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{kind}: {exc}"[:1024]))
            metric_attrs = {**metric_attrs, semconv.ERROR_TYPE: kind}
        span.set_attributes(attrs)
        if metric_attrs is labels.base:
            self._duration.record_shared(duration, metric_attrs)
        else:
            self._duration.record(duration, metric_attrs)
        if exc is None:
            self._record_usage(inv, labels, cost)
        span.end()

    def _labels(self, inv: Invocation) -> _Labels:
        """The metric attributes of ``inv``'s series (tenant and app from baggage, carried by
        difytrace's Flask and Celery instrumentation)."""
        tenant = app = None
        entries: Any = otel_context.get_current().get(BAGGAGE_KEY)
        if entries:
            tenant = entries.get(semconv.TENANT_ID)
            app = entries.get(semconv.APP_ID)
        address = inv.server_address or None
        key = (
            inv.operation,
            inv.provider,
            inv.request_model,
            inv.response_model or None,
            address,
            (inv.server_port or None) if address else None,
            tenant if isinstance(tenant, str) else None,
            app if isinstance(app, str) else None,
        )
        found = self._labels_cache.get(key)
        if found is None:
            if len(self._labels_cache) >= _LABELS_MAX:
                self._labels_cache.clear()
            found = self._labels_cache[key] = _new_labels(key)
        return found

    def _cost_of(self, inv: Invocation, attrs: dict[str, Any]) -> float | None:
        if inv.input_tokens is None and inv.output_tokens is None:
            return None
        parts = self.prices.cost_parts(
            inv.provider,
            inv.response_model or inv.request_model,
            input_tokens=inv.input_tokens,
            output_tokens=inv.output_tokens,
            cache_read_tokens=inv.cache_read_tokens,
            cache_creation_tokens=inv.cache_creation_tokens,
        )
        if parts is None:
            return None
        inp, out = parts
        total = inp + out
        attrs[g.USAGE_COST] = total
        attrs[g.LANGFUSE_COST_DETAILS] = cost_details(inp, out)
        return total

    def _first_chunk(
        self, inv: Invocation, attrs: dict[str, Any], metric_attrs: dict[str, Any]
    ) -> None:
        first = inv.first_chunk_ns or 0
        ttfc = (first - inv._start_ns) / 1e9
        attrs[g.RESPONSE_TIME_TO_FIRST_CHUNK] = ttfc
        start_ns = getattr(inv.span, "start_time", None) or time.time_ns()
        wall_ns = start_ns + (first - inv._start_ns)
        attrs[g.LANGFUSE_COMPLETION_START_TIME] = iso_utc(wall_ns)
        inv.span.add_event(
            g.FIRST_CHUNK_EVENT, {g.RESPONSE_TIME_TO_FIRST_CHUNK: ttfc}, timestamp=wall_ns
        )
        if inv.stream:
            self._ttfc.record_shared(ttfc, metric_attrs)  # the cached labels.base

    def _record_usage(self, inv: Invocation, labels: _Labels, cost: float | None) -> None:
        if inv.usage_estimated:  # the estimate flag only then: one label less on every record
            flagged = {**labels.base, g.USAGE_ESTIMATED: "true"}
            input_attrs = {**flagged, g.TOKEN_TYPE: g.TOKEN_TYPE_INPUT}
            output_attrs = {**flagged, g.TOKEN_TYPE: g.TOKEN_TYPE_OUTPUT}
            record: Callable[[float, Mapping[str, Any]], None] = self._tokens.record
        else:
            input_attrs, output_attrs = labels.input, labels.output
            record = self._tokens.record_shared  # cached label sets, never mutated
        if inv.input_tokens is not None:
            record(inv.input_tokens, input_attrs)
        if inv.output_tokens is not None:
            record(inv.output_tokens, output_attrs)
        if cost:
            self._cost.add(cost, labels.key, labels.base)
        if self.rollup is not None:
            parent = getattr(inv.span, "parent", None)  # absent on a non-recording span
            if parent is not None:
                self.rollup.add(parent.span_id, inv.input_tokens or 0, inv.output_tokens or 0, cost)


def _new_labels(key: tuple[Any, ...]) -> _Labels:
    operation, provider, request_model, response_model, address, port, tenant, app = key
    base: dict[str, Any] = {
        g.OPERATION_NAME: operation,
        g.PROVIDER_NAME: provider,
        g.REQUEST_MODEL: request_model,
    }
    if response_model:
        base[g.RESPONSE_MODEL] = response_model
    if address:
        base[semconv.SERVER_ADDRESS] = address
        if port:
            base[semconv.SERVER_PORT] = port
    if tenant is not None:
        base[semconv.TENANT_ID] = tenant
    if app is not None:
        base[semconv.APP_ID] = app
    return _Labels(
        base,
        {**base, g.TOKEN_TYPE: g.TOKEN_TYPE_INPUT},
        {**base, g.TOKEN_TYPE: g.TOKEN_TYPE_OUTPUT},
        key,
    )
