"""The single place where a finished :class:`Invocation` becomes a span, events and metrics.

Span attributes follow the GenAI conventions of the active mode (see
:mod:`difytrace.semconv_genai`), plus cost, the estimate flag, and the Langfuse / LangSmith
mapping on the same span; metrics are ``gen_ai.client.operation.duration``,
``gen_ai.client.token.usage``, ``gen_ai.client.operation.time_to_first_chunk`` (streams) and
difytrace's cost counter.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from opentelemetry import baggage, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from difytrace import semconv
from difytrace import semconv_genai as g
from difytrace._guard import report_internal_error
from difytrace.instrumentation.llm.invocation import Invocation
from difytrace.instrumentation.llm.pricing import PriceBook
from difytrace.instrumentation.llm.rollup import RollupSpanProcessor
from difytrace.instrumentation.llm.usage import Usage, estimated

_BAGGAGE_LABELS = (semconv.TENANT_ID, semconv.APP_ID)
# One table of bucket boundaries for every histogram (bootstrap turns it into views too).
_DURATION_BUCKETS = semconv.GEN_AI_DURATION_BUCKETS_S
_TOKEN_BUCKETS = semconv.GEN_AI_TOKEN_BUCKETS


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
        self.tracer = trace.get_tracer(scope, __version__, tracer_provider=tracer_provider)
        meter = metrics.get_meter("difytrace.llm", __version__, meter_provider=meter_provider)
        self.capture_content = capture_content
        self.latest = latest
        self.prices = prices or PriceBook()
        self.rollup = rollup
        self.library = library
        self._duration, self._tokens, self._ttfc, self._cost = _instruments(meter)

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
        attrs: dict[str, Any] = {
            g.OPERATION_NAME: operation,
            g.PROVIDER_NAME: provider,
            g.REQUEST_MODEL: request_model,
            g.LANGFUSE_OBSERVATION_TYPE: "embedding"
            if operation == g.OP_EMBEDDINGS
            else "generation",
            g.LANGSMITH_SPAN_KIND: "embedding" if operation == g.OP_EMBEDDINGS else "llm",
        }
        if server_address:
            attrs[semconv.SERVER_ADDRESS] = server_address
            if server_port:
                attrs[semconv.SERVER_PORT] = server_port
        if stream:
            attrs[g.REQUEST_STREAM] = True
        if params:
            latest = self.latest
            attrs.update(
                (k, v) for k, v in params.items() if v is not None and g.allowed(k, latest=latest)
            )
        span = self.tracer.start_span(
            f"{operation} {request_model}".rstrip(), kind=SpanKind.CLIENT, attributes=attrs
        )
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
        now = time.monotonic_ns()
        duration = (now - inv._start_ns) / 1e9
        if (
            exc is None
            and inv.input_tokens is None
            and inv.output_tokens is None
            and inv.operation != g.OP_EMBEDDINGS
            and (inv.stream or inv.chunks or inv.output_chars)
        ):
            inv.set_usage(estimated(inv.request_messages, inv.output_chars))
        attrs = self._response_attributes(inv)
        metric_attrs = self._metric_attributes(inv)
        cost = self._cost_of(inv, attrs)
        if inv.first_chunk_ns is not None:
            self._first_chunk(inv, attrs, metric_attrs)
        if exc is not None:
            error_type = _error_type(exc)
            attrs[semconv.ERROR_TYPE] = error_type
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{error_type}: {exc}"[:1024]))
            metric_attrs = {**metric_attrs, semconv.ERROR_TYPE: error_type}
        span.set_attributes(attrs)
        self._duration.record(duration, metric_attrs)
        if exc is None:
            self._record_tokens(inv, metric_attrs, cost)
        span.end()

    def _response_attributes(self, inv: Invocation) -> dict[str, Any]:
        attrs: dict[str, Any] = {}
        for key, value in (
            (g.RESPONSE_ID, inv.response_id),
            (g.RESPONSE_MODEL, inv.response_model),
            (g.USAGE_INPUT_TOKENS, inv.input_tokens),
            (g.USAGE_OUTPUT_TOKENS, inv.output_tokens),
            (g.USAGE_CACHE_READ_INPUT_TOKENS, inv.cache_read_tokens),
            (g.USAGE_CACHE_CREATION_INPUT_TOKENS, inv.cache_creation_tokens),
            (g.USAGE_REASONING_OUTPUT_TOKENS, inv.reasoning_tokens),
            (g.EMBEDDINGS_DIMENSION_COUNT, inv.dimension_count),
            (g.OPENAI_RESPONSE_SERVICE_TIER, inv.service_tier),
            (g.OPENAI_RESPONSE_SYSTEM_FINGERPRINT, inv.system_fingerprint),
        ):
            if value is not None:
                attrs[key] = value
        if inv.finish_reasons:
            attrs[g.RESPONSE_FINISH_REASONS] = tuple(inv.finish_reasons)
        if inv.response_status is not None and self.latest:
            attrs[g.RESPONSE_STATUS] = inv.response_status
        if inv.usage_estimated:
            attrs[g.USAGE_ESTIMATED] = True
        if inv.response_model and inv.response_model != inv.request_model:
            attrs[g.LANGFUSE_MODEL_NAME] = inv.response_model
        if self.capture_content:
            self._content(inv, attrs)
        usage = _usage_details(inv)
        if usage:
            attrs[g.LANGFUSE_USAGE_DETAILS] = (
                "{" + ",".join(f'"{k}":{v}' for k, v in usage.items()) + "}"
            )
        return attrs

    def _content(self, inv: Invocation, attrs: dict[str, Any]) -> None:
        if inv.input_messages is not None:
            attrs[g.INPUT_MESSAGES] = _json(inv.input_messages)
        if inv.output_messages is not None:
            attrs[g.OUTPUT_MESSAGES] = _json(inv.output_messages)

    def _metric_attributes(self, inv: Invocation) -> dict[str, Any]:
        attrs: dict[str, Any] = {
            g.OPERATION_NAME: inv.operation,
            g.PROVIDER_NAME: inv.provider,
            g.REQUEST_MODEL: inv.request_model,
        }
        if inv.response_model:
            attrs[g.RESPONSE_MODEL] = inv.response_model
        if inv.server_address:
            attrs[semconv.SERVER_ADDRESS] = inv.server_address
            if inv.server_port:
                attrs[semconv.SERVER_PORT] = inv.server_port
        entries = baggage.get_all()
        if entries:  # tenant / app carried by difytrace's Flask and Celery instrumentation
            for key in _BAGGAGE_LABELS:
                value = entries.get(key)
                if isinstance(value, str):
                    attrs[key] = value
        return attrs

    def _cost_of(self, inv: Invocation, attrs: dict[str, Any]) -> float | None:
        if inv.input_tokens is None and inv.output_tokens is None:
            return None
        cost = self.prices.cost(
            inv.provider,
            inv.response_model or inv.request_model,
            Usage(
                inv.input_tokens,
                inv.output_tokens,
                inv.cache_read_tokens,
                inv.cache_creation_tokens,
                inv.reasoning_tokens,
            ),
        )
        if cost is None:
            return None
        attrs[g.USAGE_COST] = cost.total
        # repr of a finite float is valid JSON; json.dumps costs 5x more on this hot path
        attrs[g.LANGFUSE_COST_DETAILS] = (
            f'{{"input":{cost.input!r},"output":{cost.output!r},"total":{cost.total!r}}}'
        )
        return cost.total

    def _first_chunk(
        self, inv: Invocation, attrs: dict[str, Any], metric_attrs: dict[str, Any]
    ) -> None:
        first = inv.first_chunk_ns or 0
        ttfc = (first - inv._start_ns) / 1e9
        attrs[g.RESPONSE_TIME_TO_FIRST_CHUNK] = ttfc
        start_ns = getattr(inv.span, "start_time", None) or time.time_ns()
        wall_ns = start_ns + (first - inv._start_ns)
        attrs[g.LANGFUSE_COMPLETION_START_TIME] = datetime.fromtimestamp(
            wall_ns / 1e9, tz=UTC
        ).isoformat()
        inv.span.add_event(
            g.FIRST_CHUNK_EVENT, {g.RESPONSE_TIME_TO_FIRST_CHUNK: ttfc}, timestamp=wall_ns
        )
        if inv.stream:
            self._ttfc.record(ttfc, metric_attrs)

    def _record_tokens(
        self, inv: Invocation, metric_attrs: dict[str, Any], cost: float | None
    ) -> None:
        # The estimate flag only when set: one attribute less to hash on every common record.
        base = {**metric_attrs, g.USAGE_ESTIMATED: "true"} if inv.usage_estimated else metric_attrs
        if inv.input_tokens is not None:
            self._tokens.record(inv.input_tokens, {**base, g.TOKEN_TYPE: g.TOKEN_TYPE_INPUT})
        if inv.output_tokens is not None:
            self._tokens.record(inv.output_tokens, {**base, g.TOKEN_TYPE: g.TOKEN_TYPE_OUTPUT})
        if cost:
            self._cost.add(cost, metric_attrs)
        if self.rollup is not None:
            parent = getattr(inv.span, "parent", None)
            if parent is not None:
                self.rollup.add(parent.span_id, inv.input_tokens or 0, inv.output_tokens or 0, cost)


#: Instruments per meter: every instrumentor (openai, litellm, manual) shares one set, since
#: SDK 1.27 logs a warning each time an instrument name is created again.
_INSTRUMENTS: dict[int, tuple[Any, tuple[Any, Any, Any, Any]]] = {}


def _instruments(meter: Any) -> tuple[Any, Any, Any, Any]:
    """Duration, token-usage and time-to-first-chunk histograms and the cost counter."""
    cached = _INSTRUMENTS.get(id(meter))
    if cached is not None and cached[0] is meter:
        return cached[1]
    made = (
        _histogram(meter, semconv.GEN_AI_CLIENT_OPERATION_DURATION, _DURATION_BUCKETS),
        _histogram(meter, semconv.GEN_AI_CLIENT_TOKEN_USAGE, _TOKEN_BUCKETS),
        _histogram(meter, semconv.GEN_AI_CLIENT_TIME_TO_FIRST_CHUNK, _DURATION_BUCKETS),
        meter.create_counter(
            semconv.GEN_AI_CLIENT_COST.name,
            unit=semconv.GEN_AI_CLIENT_COST.unit,
            description=semconv.GEN_AI_CLIENT_COST.description,
        ),
    )
    _INSTRUMENTS[id(meter)] = (meter, made)
    return made


def _histogram(meter: Any, spec: semconv.MetricSpec, buckets: tuple[float, ...]) -> Any:
    """The histogram of ``spec`` (name, unit, description from the one catalogue)."""
    try:  # advisory bucket boundaries arrived in API 1.28; 1.27 (Dify's pin) lacks them
        return meter.create_histogram(
            spec.name,
            unit=spec.unit,
            description=spec.description,
            explicit_bucket_boundaries_advisory=list(buckets),
        )
    except TypeError:
        return meter.create_histogram(spec.name, unit=spec.unit, description=spec.description)


def _error_type(exc: BaseException) -> str:
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and type(exc).__name__ in {"APIStatusError", "APIError"}:
        return str(status)
    return type(exc).__qualname__


def _usage_details(inv: Invocation) -> dict[str, int]:
    # Langfuse adds every key into the total and prices each key on its own: cached and
    # reasoning tokens are therefore taken out of input/output, not counted twice.
    details: dict[str, int] = {}
    if inv.input_tokens is not None:
        details["input"] = max(
            inv.input_tokens - (inv.cache_read_tokens or 0) - (inv.cache_creation_tokens or 0), 0
        )
    if inv.output_tokens is not None:
        details["output"] = max(inv.output_tokens - (inv.reasoning_tokens or 0), 0)
    if inv.cache_read_tokens:
        details["input_cached_tokens"] = inv.cache_read_tokens
    if inv.cache_creation_tokens:
        details["input_cache_creation"] = inv.cache_creation_tokens
    if inv.reasoning_tokens:
        details["output_reasoning_tokens"] = inv.reasoning_tokens
    if details:
        details["total"] = (inv.input_tokens or 0) + (inv.output_tokens or 0)
    return details


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":"))
