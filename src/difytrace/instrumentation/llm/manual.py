"""The manual API, for model runtimes no instrumentor knows (Dify's model runtime, local models).

As a context manager::

    with llm_call(provider="openai", model="gpt-4o", messages=prompt) as call:
        for chunk in runtime.stream(prompt):
            call.chunk(chunk.text)
        call.usage(input_tokens=120, output_tokens=48, cache_read_tokens=100)
        call.response(model="gpt-4o-2024-08-06", finish_reason="stop", text=full_text)

with ``conversation_id=`` when the application tracks the conversation
(``gen_ai.conversation.id``), or as a decorator (one span per call of the function)::

    @llm_call(provider="dify", model="qwen-max")
    def invoke(prompt): ...

An exception leaving the block marks the span as failed and propagates untouched. Without a
usage report, tokens are estimated offline from messages and streamed text and flagged as an
estimate. Inside the block, instrumented SDK calls (OpenAI, litellm) pass through: one span.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
from collections.abc import AsyncGenerator, Callable, Generator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

from difytrace import bootstrap
from difytrace import semconv_genai as g
from difytrace._guard import internal_errors
from difytrace.instrumentation.llm.chat import input_messages
from difytrace.instrumentation.llm.invocation import Invocation
from difytrace.instrumentation.llm.telemetry import Telemetry
from difytrace.instrumentation.llm.usage import Usage

F = TypeVar("F", bound=Callable[..., Any])


class _Current:
    """The telemetry ``llm_call`` uses: pinned by :func:`reset_telemetry`, else built for the
    settings in force and rebuilt when they change (``configure()`` after a reset, or
    ``difytrace.testing.reset_configuration``), so a reconfiguration takes effect."""

    pinned: Telemetry | None = None
    settings: object = None
    built: Telemetry | None = None


def _telemetry() -> Telemetry:
    if _Current.pinned is not None:
        return _Current.pinned
    settings = bootstrap.current_settings()
    built = _Current.built
    if built is None or _Current.settings is not settings:
        from difytrace.instrumentation.llm import build_telemetry

        built = build_telemetry({"settings": settings}, library="manual")
        _Current.settings, _Current.built = settings, built
    return built


def reset_telemetry(telemetry: Telemetry | None = None) -> None:
    """Pin ``telemetry`` for every ``llm_call``, or (None) unpin and rebuild from the settings
    in force on next use."""
    _Current.pinned = telemetry
    _Current.settings = _Current.built = None


@dataclass(frozen=True)
class _Options:
    provider: str
    model: str
    operation: str
    messages: Sequence[Any] | str | None
    stream: bool
    server_address: str | None
    server_port: int | None
    params: dict[str, Any]


_CURRENT: contextvars.ContextVar[LLMCall | None] = contextvars.ContextVar(
    "difytrace_llm_call", default=None
)


def current_llm_call() -> LLMCall | None:
    """The innermost open :class:`LLMCall` (e.g. inside a decorated function), or None."""
    return _CURRENT.get()


class LLMCall:
    """One manually reported LLM call; see the module docstring.

    ``conversation_id``: the id of the conversation (chat session, thread) the call belongs
    to, when the application has one (Dify's ``conversation_id``), recorded as
    ``gen_ai.conversation.id`` on the span only (never on metrics: one series per
    conversation would explode their cardinality). Leave it unset rather than invent one: the
    conventions ask for no fallback value (no new UUID, no trace id).
    """

    def __init__(
        self,
        *,
        provider: str,
        model: str,
        operation: str = g.OP_CHAT,
        messages: Sequence[Any] | str | None = None,
        stream: bool = False,
        server_address: str | None = None,
        server_port: int | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        top_p: float | None = None,
        conversation_id: str | None = None,
    ) -> None:
        params = {
            g.REQUEST_TEMPERATURE: temperature,
            g.REQUEST_MAX_TOKENS: max_tokens,
            g.REQUEST_TOP_P: top_p,
            g.CONVERSATION_ID: conversation_id,
        }
        self._options = _Options(
            provider, model, operation, messages, stream, server_address, server_port, params
        )
        self._inv: Invocation | None = None
        self._text: list[str] = []
        self._token: contextvars.Token[LLMCall | None] | None = None

    def __enter__(self) -> LLMCall:
        self._start()
        self._activate()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._deactivate()
        # GeneratorExit: the consumer of a stream closed it early, which is not a failure.
        self._end(None if isinstance(exc, GeneratorExit) else exc)

    def _start(self) -> None:
        """Start the span (nothing made current yet)."""
        with internal_errors("llm_call.start"):
            o = self._options
            telemetry = _telemetry()
            inv = telemetry.start(
                operation=o.operation,
                provider=o.provider,
                request_model=o.model,
                server_address=o.server_address,
                server_port=o.server_port,
                stream=o.stream,
                params=o.params,
            )
            inv.request_messages = o.messages
            if telemetry.capture_content:
                inv.input_messages = input_messages(o.messages)
            self._inv = inv

    def _activate(self) -> None:
        """Make this call current: its span, :func:`current_llm_call`, inner SDKs silent."""
        if self._inv is not None:
            self._inv.attach()
        self._token = _CURRENT.set(self)

    def _deactivate(self) -> None:
        """Undo :meth:`_activate`; never raises into the application."""
        token, self._token = self._token, None
        if token is not None:
            # Left in another context (a generator finalised elsewhere): that context is
            # gone or not ours, and this one never saw the call.
            with contextlib.suppress(ValueError):
                _CURRENT.reset(token)
        if self._inv is not None:
            self._inv.detach()

    def _end(self, exc: BaseException | None) -> None:
        """End the span: failed with ``exc``, or successful."""
        inv, self._inv = self._inv, None
        if inv is None:
            return
        with internal_errors("llm_call.end"):
            if inv.capture_content and self._text and inv.output_messages is None:
                inv.output_messages = [
                    {
                        "role": "assistant",
                        "finish_reason": "stop",
                        "parts": [{"type": "text", "content": "".join(self._text)}],
                    }
                ]
        if exc is not None:
            inv.fail(exc)
        else:
            inv.stop()

    def chunk(self, text: str | None = None) -> None:
        """Report one streamed chunk (the first sets time to first chunk)."""
        inv = self._inv
        if inv is None:
            return
        if not inv.stream:  # chunks make it a stream even if not declared: say so on the span
            inv.stream = True
            inv.span.set_attribute(g.REQUEST_STREAM, True)
        inv.mark_chunk(text)
        if text and inv.capture_content:
            self._text.append(text)

    def usage(
        self,
        *,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        cache_read_tokens: int | None = None,
        cache_creation_tokens: int | None = None,
        reasoning_tokens: int | None = None,
    ) -> None:
        """Report token usage as the provider counted it (input includes cached tokens)."""
        if self._inv is not None:
            self._inv.set_usage(
                Usage(
                    input_tokens,
                    output_tokens,
                    cache_read_tokens,
                    cache_creation_tokens,
                    reasoning_tokens,
                )
            )

    def response(
        self,
        *,
        model: str | None = None,
        response_id: str | None = None,
        finish_reason: str | None = None,
        text: str | None = None,
    ) -> None:
        """Report response fields; ``text`` is recorded only when content capture is on."""
        inv = self._inv
        if inv is None:
            return
        inv.response_model = model or inv.response_model
        inv.response_id = response_id or inv.response_id
        if finish_reason:
            inv.finish_reasons = [finish_reason]
        if text is not None:
            if not inv.chunks:
                inv.output_chars = len(text)
            if inv.capture_content:
                inv.output_messages = [
                    {
                        "role": "assistant",
                        "finish_reason": finish_reason or "",
                        "parts": [{"type": "text", "content": text}],
                    }
                ]

    def __call__(self, func: F) -> F:
        """Decorate ``func``: each call runs in a fresh :class:`LLMCall` with these options.

        A generator function (sync or async: a streaming model runtime) gets one span for
        the whole iteration, current only while the generator runs; closing it early ends
        the span without error.
        """
        options = self._options

        def fresh() -> LLMCall:
            call = LLMCall(provider=options.provider, model=options.model)
            call._options = options
            return call

        if inspect.isasyncgenfunction(func):
            return _async_generator_wrapper(func, fresh)  # type: ignore[return-value]
        if inspect.isgeneratorfunction(func):
            return _generator_wrapper(func, fresh)  # type: ignore[return-value]
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with fresh():
                    return await func(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with fresh():
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]


def _generator_wrapper(
    func: Callable[..., Generator[Any, Any, Any]], fresh: Callable[[], LLMCall]
) -> Callable[..., Generator[Any, Any, Any]]:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        call = fresh()
        call._start()
        iterator = func(*args, **kwargs)
        failure: BaseException | None = None
        try:
            while True:
                call._activate()
                try:
                    item = next(iterator)
                except StopIteration as stop:
                    return stop.value
                finally:
                    call._deactivate()
                yield item
        except GeneratorExit:
            raise
        except BaseException as exc:
            failure = exc
            raise
        finally:
            iterator.close()
            call._end(failure)

    return wrapper


def _async_generator_wrapper(
    func: Callable[..., AsyncGenerator[Any, Any]], fresh: Callable[[], LLMCall]
) -> Callable[..., AsyncGenerator[Any, Any]]:
    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        call = fresh()
        call._start()
        iterator = func(*args, **kwargs)
        failure: BaseException | None = None
        try:
            while True:
                call._activate()
                try:
                    item = await iterator.__anext__()
                except StopAsyncIteration:
                    return
                finally:
                    call._deactivate()
                yield item
        except GeneratorExit:
            raise
        except BaseException as exc:
            failure = exc
            raise
        finally:
            await iterator.aclose()
            call._end(failure)

    return wrapper


llm_call = LLMCall
