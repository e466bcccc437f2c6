"""OpenAI Python SDK: chat completions, the responses API and embeddings, sync and async,
streaming or not, as GenAI spans and metrics.

Replaces the contrib ``openai-v2`` / ``genai-openai`` instrumentors rather than wrapping them:
their per-call cost is several times difytrace's budget, and neither adds cost, rollup or the
Langfuse/LangSmith mapping. The SDK's resource methods are wrapped with ``wrapt`` and unwrapped
symmetrically. Inside an enclosing LLM call (litellm, ``llm_call``) the wrappers pass through,
so one call gives one span.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from typing import Any

import wrapt
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import unwrap

from difytrace import semconv_genai as g
from difytrace._guard import report_internal_error
from difytrace.instrumentation.llm import build_telemetry, when_imported
from difytrace.instrumentation.llm.chat import (
    ChatStreamAccumulator,
    UsageChunkAccumulator,
    input_messages,
    read_chat_response,
    request_params,
    usage_chunk_requested,
)
from difytrace.instrumentation.llm.invocation import Invocation, suppressed
from difytrace.instrumentation.llm.responses import (
    ResponsesStreamAccumulator,
    read_embeddings_response,
    read_responses_response,
)
from difytrace.instrumentation.llm.streams import AsyncStreamProxy, SyncStreamProxy
from difytrace.instrumentation.llm.telemetry import Telemetry

#: (module, class, method, kind, is_async). ``parse`` (structured outputs) posts directly rather
#: than through ``create``, so it is wrapped too; ``stream()`` helpers call ``create``. Openai
#: < 1.92 kept chat ``parse`` under ``beta``; targets a version lacks are skipped.
_TARGETS = (
    ("openai.resources.chat.completions", "Completions", "create", "chat", False),
    ("openai.resources.chat.completions", "AsyncCompletions", "create", "chat", True),
    ("openai.resources.chat.completions", "Completions", "parse", "chat", False),
    ("openai.resources.chat.completions", "AsyncCompletions", "parse", "chat", True),
    ("openai.resources.beta.chat.completions", "Completions", "parse", "chat", False),
    ("openai.resources.beta.chat.completions", "AsyncCompletions", "parse", "chat", True),
    ("openai.resources.responses", "Responses", "create", "responses", False),
    ("openai.resources.responses", "AsyncResponses", "create", "responses", True),
    ("openai.resources.responses", "Responses", "parse", "responses", False),
    ("openai.resources.responses", "AsyncResponses", "parse", "responses", True),
    ("openai.resources.embeddings", "Embeddings", "create", "embeddings", False),
    ("openai.resources.embeddings", "AsyncEmbeddings", "create", "embeddings", True),
)


def _present(module: str, cls: str, method: str) -> Any:
    """The class holding ``method`` in its own namespace, or None (module or class missing,
    or the method inherited: wrapping it would wrap the base class's)."""
    import importlib

    try:
        owner = getattr(importlib.import_module(module), cls, None)
    except ImportError:
        return None
    return owner if owner is not None and method in vars(owner) else None


_SERVERS: dict[int, tuple[Any, str | None, int | None]] = {}


def server_of(instance: Any) -> tuple[str | None, int | None]:
    """Host and port of the client behind an SDK resource (cached per base URL object)."""
    client = getattr(instance, "_client", None)
    # recent openai versions run an import statement in the base_url property, on every read
    url = getattr(client, "_base_url", None) or getattr(client, "base_url", None)
    if url is None:
        return None, None
    hit = _SERVERS.get(id(url))
    if hit is not None and hit[0] is url:
        return hit[1], hit[2]
    host = url.host or None
    port = url.port or (443 if url.scheme == "https" else 80)
    if len(_SERVERS) > 256:
        _SERVERS.clear()
    _SERVERS[id(url)] = (url, host, port)  # the strong reference keeps id() unambiguous
    return host, port


def _provider(host: str | None) -> str:
    if host and host.endswith(".openai.azure.com"):
        return "azure.ai.openai"
    return "openai"


def _start(telemetry: Telemetry, kind: str, instance: Any, kwargs: dict[str, Any]) -> Invocation:
    host, port = server_of(instance)
    params = request_params(kwargs)
    stream = kwargs.get("stream") is True
    if kind == "embeddings":
        fmt = kwargs.get("encoding_format")
        if isinstance(fmt, str):
            params[g.REQUEST_ENCODING_FORMATS] = (fmt,)
    capture = telemetry.capture_content
    if capture:
        _content_params(kind, kwargs, params)
    inv = telemetry.start(
        operation=g.OP_EMBEDDINGS if kind == "embeddings" else g.OP_CHAT,
        provider=_provider(host),
        request_model=str(kwargs.get("model") or ""),
        server_address=host,
        server_port=port,
        stream=stream,
        params=params,
    )
    inv.request_messages = kwargs.get("messages") if kind == "chat" else kwargs.get("input")
    if capture and kind != "embeddings":
        inv.input_messages = input_messages(inv.request_messages)
    return inv


def _content_params(kind: str, kwargs: dict[str, Any], params: dict[str, Any]) -> None:
    tools = kwargs.get("tools")
    if isinstance(tools, list | tuple) and tools:
        params[g.TOOL_DEFINITIONS] = json.dumps(tools, default=str, ensure_ascii=False)
    instructions = kwargs.get("instructions")
    if kind == "responses" and isinstance(instructions, str):
        params[g.SYSTEM_INSTRUCTIONS] = json.dumps(
            [{"type": "text", "content": instructions}], ensure_ascii=False
        )


def _finish(inv: Invocation, kind: str, result: Any, kwargs: dict[str, Any]) -> Any:
    """Read a non-streamed result and stop, or wrap a stream (its end stops the span)."""
    cls = type(result).__name__
    if cls == "Stream":
        return SyncStreamProxy(result, inv, _accumulator(kind, inv, kwargs))
    if cls == "AsyncStream":
        return AsyncStreamProxy(result, inv, _accumulator(kind, inv, kwargs))
    try:
        parsed = result
        if cls in _RAW_RESPONSES:
            parsed = result.parse() if not inv.stream else None  # raw streams: no fields
        if parsed is not None:
            _READERS[kind](inv, parsed)
    except Exception as exc:  # never break the host: the span ends with what it has
        report_internal_error("openai.response", exc)
    inv.stop()
    return result


# ``with_raw_response``: the body is read already, ``parse()`` only decodes it. Not the
# ``with_streaming_response`` ones (APIResponse, AsyncAPIResponse): parsing would read the
# body before the caller asks for it (or, async, leave a coroutine never awaited); their span
# ends with the request's fields only.
_RAW_RESPONSES = frozenset({"LegacyAPIResponse"})


def _accumulator(kind: str, inv: Invocation, kwargs: dict[str, Any]) -> Any:
    if kind == "responses":
        return ResponsesStreamAccumulator(inv)
    if not inv.capture_content and usage_chunk_requested(kwargs):
        return UsageChunkAccumulator(inv)
    return ChatStreamAccumulator(inv)


_READERS: dict[str, Callable[[Invocation, Any], None]] = {
    "chat": read_chat_response,
    "responses": read_responses_response,
    "embeddings": read_embeddings_response,
}


def _sync_wrapper(telemetry: Telemetry, kind: str) -> Callable[..., Any]:
    def wrapper(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if suppressed():
            return wrapped(*args, **kwargs)
        try:
            inv = _start(telemetry, kind, instance, kwargs)
        except Exception as exc:
            report_internal_error("openai.start", exc)
            inv = None
        if inv is None:
            return wrapped(*args, **kwargs)
        inv.attach()
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:  # gevent.Timeout is a BaseException: still end the span
            inv.detach()
            inv.fail(exc)
            raise
        inv.detach()
        return _finish(inv, kind, result, kwargs)

    return wrapper


def _async_wrapper(telemetry: Telemetry, kind: str) -> Callable[..., Any]:
    async def wrapper(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if suppressed():
            return await wrapped(*args, **kwargs)
        try:
            inv = _start(telemetry, kind, instance, kwargs)
        except Exception as exc:
            report_internal_error("openai.start", exc)
            inv = None
        if inv is None:
            return await wrapped(*args, **kwargs)
        inv.attach()
        try:
            result = await wrapped(*args, **kwargs)
        except BaseException as exc:
            inv.detach()
            inv.fail(exc)
            raise
        inv.detach()
        return _finish(inv, kind, result, kwargs)

    return wrapper


class OpenAIInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """GenAI spans and metrics for the OpenAI Python SDK (``openai>=1.0``)."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("openai >= 1.0",)

    _patched: list[tuple[Any, str]] = []
    _cancel: Callable[[], None] | None = None

    def _instrument(self, **kwargs: Any) -> None:
        telemetry = build_telemetry(kwargs, library="openai")

        def patch(_: Any) -> None:
            patched: list[tuple[Any, str]] = []
            for module, cls, method, kind, is_async in _TARGETS:
                owner = _present(module, cls, method)
                if owner is None or any(o is owner and m == method for o, m in patched):
                    continue  # absent in this version, or the same class under another path
                factory = _async_wrapper if is_async else _sync_wrapper
                wrapt.wrap_function_wrapper(owner, method, factory(telemetry, kind))
                patched.append((owner, method))
            self._patched = patched

        self._cancel = when_imported("openai", patch)

    def _uninstrument(self, **kwargs: Any) -> None:
        if self._cancel is not None:
            self._cancel()
        for owner, method in self._patched:
            unwrap(owner, method)
        self._patched = []
