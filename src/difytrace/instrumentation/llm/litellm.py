"""litellm ``completion`` / ``acompletion`` (streaming or not) as GenAI spans and metrics.

litellm often calls the OpenAI SDK underneath; the litellm span marks the context as "inside an
LLM call" so the OpenAI instrumentor passes through: one call, one span, named after the
provider litellm routes to.

The module attributes ``litellm.completion`` and ``litellm.acompletion`` are wrapped; code
that did ``from litellm import completion`` *before* instrumentation keeps the bare function
(instrument first, as ``opentelemetry-instrument`` and ``difytrace.configure()`` do).
Instrumenting before litellm is imported is fine: the patch is applied when it is.

Importing litellm fetches its model price map from the network unless
``LITELLM_LOCAL_MODEL_COST_MAP=True``; difytrace never imports litellm itself (the patch waits
for the host's import), and its tests set that variable (recommended in production too).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

from difytrace import semconv_genai as g
from difytrace._guard import internal_errors
from difytrace.instrumentation.llm import build_telemetry, when_imported
from difytrace.instrumentation.llm.chat import (
    ChatStreamAccumulator,
    input_messages,
    read_chat_response,
    request_params,
)
from difytrace.instrumentation.llm.invocation import Invocation, suppressed
from difytrace.instrumentation.llm.streams import AsyncStreamProxy, SyncStreamProxy
from difytrace.instrumentation.llm.telemetry import Telemetry

#: litellm provider → semconv gen_ai.provider.name (others pass through unchanged)
_PROVIDERS = {
    "azure": "azure.ai.openai",
    "azure_ai": "azure.ai.inference",
    "vertex_ai": "gcp.vertex_ai",
    "vertex_ai_beta": "gcp.vertex_ai",
    "gemini": "gcp.gemini",
    "bedrock": "aws.bedrock",
    "mistral": "mistral_ai",
    "xai": "x_ai",
    "watsonx": "ibm.watsonx.ai",
    "cohere_chat": "cohere",
    "text-completion-openai": "openai",
    "moonshot": "moonshot_ai",
}
_FUNCTIONS = ("completion", "acompletion")
_provider_cache: dict[tuple[str, str | None], tuple[str, str]] = {}


def route(model: str, custom_provider: str | None) -> tuple[str, str]:
    """(semconv provider name, model name sent to the provider) for a litellm model string."""
    key = (model, custom_provider)
    found = _provider_cache.get(key)
    if found is not None:
        return found
    provider, name = custom_provider, model
    if provider is None and "/" in model:
        provider, name = model.split("/", 1)
    if provider is None:
        try:
            import litellm

            name, provider, _, _ = litellm.get_llm_provider(model)
        except Exception:  # unknown to litellm: the call itself will say so
            provider = "litellm"
    result = (_PROVIDERS.get(provider, provider), name)
    if len(_provider_cache) < 4096:
        _provider_cache[key] = result
    return result


def _server(kwargs: dict[str, Any]) -> tuple[str | None, int | None]:
    base = kwargs.get("api_base") or kwargs.get("base_url")
    if not isinstance(base, str):
        return None, None
    parts = urllib.parse.urlsplit(base)
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


def _start(telemetry: Telemetry, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Invocation:
    model = str(kwargs.get("model") or (args[0] if args else ""))
    messages = (
        kwargs.get("messages") if "messages" in kwargs else (args[1] if len(args) > 1 else None)
    )
    provider, name = route(model, kwargs.get("custom_llm_provider"))
    host, port = _server(kwargs)
    inv = telemetry.start(
        operation=g.OP_CHAT,
        provider=provider,
        request_model=name,
        server_address=host,
        server_port=port,
        stream=kwargs.get("stream") is True,
        params=request_params(kwargs),
    )
    inv.request_messages = messages
    if telemetry.capture_content:
        inv.input_messages = input_messages(messages)
    return inv


def _finish(inv: Invocation, result: Any, is_async: bool) -> Any:
    if type(result).__name__ == "CustomStreamWrapper":
        proxy = AsyncStreamProxy if is_async else SyncStreamProxy
        return proxy(result, inv, ChatStreamAccumulator(inv))
    with internal_errors("litellm.response"):
        read_chat_response(inv, result)
    inv.stop()
    return result


def _wrap_sync(telemetry: Telemetry, original: Callable[..., Any]) -> Callable[..., Any]:
    def completion(*args: Any, **kwargs: Any) -> Any:
        if suppressed():
            return original(*args, **kwargs)
        inv = None
        with internal_errors("litellm.start"):
            inv = _start(telemetry, args, kwargs)
        if inv is None:
            return original(*args, **kwargs)
        inv.attach()
        try:
            result = original(*args, **kwargs)
        except BaseException as exc:
            inv.detach()
            inv.fail(exc)
            raise
        inv.detach()
        return _finish(inv, result, is_async=False)

    completion.__wrapped__ = original  # type: ignore[attr-defined]
    return completion


def _wrap_async(telemetry: Telemetry, original: Callable[..., Any]) -> Callable[..., Any]:
    async def acompletion(*args: Any, **kwargs: Any) -> Any:
        if suppressed():
            return await original(*args, **kwargs)
        inv = None
        with internal_errors("litellm.start"):
            inv = _start(telemetry, args, kwargs)
        if inv is None:
            return await original(*args, **kwargs)
        inv.attach()
        try:
            result = await original(*args, **kwargs)
        except BaseException as exc:
            inv.detach()
            inv.fail(exc)
            raise
        inv.detach()
        return _finish(inv, result, is_async=True)

    acompletion.__wrapped__ = original  # type: ignore[attr-defined]
    return acompletion


class LiteLLMInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """GenAI spans and metrics for ``litellm.completion`` and ``litellm.acompletion``."""

    _originals: dict[str, Callable[..., Any]] = {}

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("litellm >= 1.40",)

    _cancel: Callable[[], None] | None = None

    def _instrument(self, **kwargs: Any) -> None:
        telemetry = build_telemetry(kwargs, library="litellm")

        def patch(litellm: Any) -> None:
            for name in _FUNCTIONS:
                original = getattr(litellm, name)
                self._originals[name] = original
                wrap = _wrap_async if name == "acompletion" else _wrap_sync
                setattr(litellm, name, wrap(telemetry, original))

        self._cancel = when_imported("litellm", patch)

    def _uninstrument(self, **kwargs: Any) -> None:
        if self._cancel is not None:
            self._cancel()
        if self._originals:
            import litellm

            for name, original in list(self._originals.items()):
                setattr(litellm, name, original)
                del self._originals[name]
