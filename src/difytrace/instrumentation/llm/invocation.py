"""One LLM call as a record that providers fill, ended by stop or fail.

Instrumentors (OpenAI SDK, litellm) and the manual API get an :class:`Invocation` from
:meth:`~difytrace.instrumentation.llm.telemetry.Telemetry.start`, fill its fields from the
request, the response or the stream chunks, and end it with :meth:`Invocation.stop` or
:meth:`Invocation.fail`. Turning it into telemetry happens in one place only,
:meth:`Telemetry.end`, so every path emits the same shape.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace

from difytrace.context_keys import SPAN_KEY, instrumentation_suppressed
from difytrace.instrumentation.llm.usage import Usage

if TYPE_CHECKING:
    from difytrace.instrumentation.llm.telemetry import Telemetry

#: Set in the context while an instrumented call runs: inner instrumentations (the OpenAI
#: SDK called by litellm, or by a runtime wrapped in ``llm_call``) then pass through.
IN_LLM_CALL = otel_context.create_key("difytrace-in-llm-call")


def suppressed() -> bool:
    """Whether an enclosing LLM call (or OTel suppression) asks this one not to be traced."""
    ctx = otel_context.get_current()  # one lookup for every key (a Context is a dict)
    return bool(ctx.get(IN_LLM_CALL) or instrumentation_suppressed(ctx))


class Invocation:
    """The record of one call: request fields set at start, response fields before stop."""

    __slots__ = (
        "_ended",
        "_start_ns",
        "_telemetry",
        "_token",
        "cache_creation_tokens",
        "cache_read_tokens",
        "capture_content",
        "chunks",
        "dimension_count",
        "finish_reasons",
        "first_chunk_ns",
        "input_messages",
        "input_tokens",
        "operation",
        "output_chars",
        "output_messages",
        "output_tokens",
        "provider",
        "reasoning_tokens",
        "request_messages",
        "request_model",
        "response_id",
        "response_model",
        "response_status",
        "server_address",
        "server_port",
        "service_tier",
        "span",
        "stream",
        "system_fingerprint",
        "text_counted",
        "usage_estimated",
    )

    def __init__(
        self,
        telemetry: Telemetry,
        span: trace.Span,
        *,
        operation: str,
        provider: str,
        request_model: str,
        server_address: str | None,
        server_port: int | None,
        stream: bool,
    ) -> None:
        self._telemetry = telemetry
        #: Whether message content may be recorded (off unless the setting enables it).
        self.capture_content: bool = telemetry.capture_content
        self.span = span
        self._start_ns = time.monotonic_ns()
        self._ended = False
        self._token: object | None = None
        self.operation = operation
        self.provider = provider
        self.request_model = request_model
        self.server_address = server_address
        self.server_port = server_port
        self.stream = stream
        self.request_messages: Any = None
        self.input_messages: list[dict[str, Any]] | None = None
        self.output_messages: list[dict[str, Any]] | None = None
        self.response_id: str | None = None
        self.response_model: str | None = None
        self.response_status: str | None = None
        self.finish_reasons: list[str] | None = None
        self.service_tier: str | None = None
        self.system_fingerprint: str | None = None
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self.cache_read_tokens: int | None = None
        self.cache_creation_tokens: int | None = None
        self.reasoning_tokens: int | None = None
        self.usage_estimated = False
        self.dimension_count: int | None = None
        self.first_chunk_ns: int | None = None
        self.chunks = 0
        self.output_chars = 0
        #: False when a stream's text is not read at all (its final usage chunk was asked
        #: for): an estimate, needed only if that chunk never came, counts a token a chunk.
        self.text_counted = True

    def attach(self) -> None:
        """Make the span current (and inner LLM instrumentation silent) until :meth:`detach`."""
        values = dict(otel_context.get_current())  # what set_value does, once for both keys
        values[SPAN_KEY] = self.span
        values[IN_LLM_CALL] = True
        self._token = otel_context.attach(otel_context.Context(values))

    def detach(self) -> None:
        """Undo :meth:`attach`."""
        if self._token is not None:
            _detach_quietly(self._token)
            self._token = None

    def set_usage(self, usage: Usage | None) -> None:
        """Copy token counts from a provider usage (a later report replaces an earlier one)."""
        if usage is None:
            return
        self.input_tokens = usage.input_tokens
        self.output_tokens = usage.output_tokens
        self.cache_read_tokens = usage.cache_read_tokens
        self.cache_creation_tokens = usage.cache_creation_tokens
        self.reasoning_tokens = usage.reasoning_tokens
        self.usage_estimated = usage.estimated

    def mark_chunk(self, text: str | None = None) -> None:
        """Count one streamed chunk; the first one sets time to first chunk."""
        if self.first_chunk_ns is None:
            self.first_chunk_ns = time.monotonic_ns()
        self.chunks += 1
        if text:
            self.output_chars += len(text)

    def stop(self) -> None:
        """End successfully (idempotent)."""
        if not self._ended:
            self._ended = True
            self._telemetry.end(self, None)

    def fail(self, exc: BaseException) -> None:
        """End with ``exc`` as the error (idempotent)."""
        if not self._ended:
            self._ended = True
            self._telemetry.end(self, exc)

    @property
    def ended(self) -> bool:
        """Whether stop or fail has run."""
        return self._ended


def _detach_quietly(token: Any) -> None:
    """``context.detach``, silent when the token belongs to another context.

    That happens when a ``with llm_call()`` inside an async generator is left by asyncio's
    finaliser in a new task: the API would log an ERROR with a traceback into the host's logs
    for a span that ends correctly anyway. The runtime's context variable is reached the way
    the API itself does (present in every supported version); without it, the API is used.
    """
    variable = getattr(getattr(otel_context, "_RUNTIME_CONTEXT", None), "_current_context", None)
    if variable is None:
        otel_context.detach(token)
        return
    # A token of another context: that context is gone, and this one never saw it.
    with contextlib.suppress(ValueError):
        variable.reset(token)
