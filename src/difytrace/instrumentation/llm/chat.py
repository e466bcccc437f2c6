"""OpenAI-shaped requests, responses and stream chunks → :class:`Invocation` fields.

Shared by the OpenAI SDK and litellm instrumentors (litellm returns OpenAI-shaped objects).
Content (messages, output, tool calls) is read only when content capture is on; otherwise
only lengths are kept, for the offline token estimate.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from difytrace import semconv_genai as g
from difytrace.instrumentation.llm.invocation import Invocation
from difytrace.instrumentation.llm.usage import read_usage

_PARAMS = (
    ("max_tokens", g.REQUEST_MAX_TOKENS),
    ("max_completion_tokens", g.REQUEST_MAX_TOKENS),
    ("max_output_tokens", g.REQUEST_MAX_TOKENS),
    ("temperature", g.REQUEST_TEMPERATURE),
    ("top_p", g.REQUEST_TOP_P),
    ("top_k", g.REQUEST_TOP_K),
    ("frequency_penalty", g.REQUEST_FREQUENCY_PENALTY),
    ("presence_penalty", g.REQUEST_PRESENCE_PENALTY),
    ("seed", g.REQUEST_SEED),
    ("previous_response_id", g.REQUEST_PREVIOUS_RESPONSE_ID),
)
_PARAM_NAMES = dict(_PARAMS)
_NOT_GIVEN_NAMES = {"NotGiven", "Omit", "NoneType"}


def _given(value: Any) -> bool:
    return value is not None and type(value).__name__ not in _NOT_GIVEN_NAMES


def _get(obj: Any, name: str) -> Any:
    if type(obj) is dict:  # the common cases first: isinstance(Mapping) is an ABC check
        return obj.get(name)
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def request_params(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Request attributes (model parameters) from the keyword arguments of a call."""
    params: dict[str, Any] = {}
    for arg in kwargs.keys() & _PARAM_NAMES:
        value = kwargs[arg]
        attr = _PARAM_NAMES[arg]
        if _given(value) and attr not in params:
            params[attr] = value
    if len(kwargs) <= 2:  # model and messages only: nothing else to read
        return params
    n = kwargs.get("n")
    if _given(n) and n != 1:
        params[g.REQUEST_CHOICE_COUNT] = n
    stop: Any = kwargs.get("stop")
    if _given(stop):
        params[g.REQUEST_STOP_SEQUENCES] = (stop,) if isinstance(stop, str) else tuple(stop)
    output_type = _output_type(kwargs)
    if output_type is not None:
        params[g.OUTPUT_TYPE] = output_type
    tier = kwargs.get("service_tier")
    if _given(tier) and tier != "auto":
        params[g.OPENAI_REQUEST_SERVICE_TIER] = tier
    reasoning = kwargs.get("reasoning_effort") or _get(kwargs.get("reasoning") or {}, "effort")
    if _given(reasoning):
        params[g.REQUEST_REASONING_LEVEL] = reasoning
    return params


_OUTPUT_TYPES = {"json_object": "json", "json_schema": "json", "text": "text"}


def _output_type(kwargs: Mapping[str, Any]) -> str | None:
    """``gen_ai.output.type`` from the requested format: chat ``response_format`` (a dict, or a
    pydantic model class given to ``parse``), responses ``text.format`` or ``text_format``."""
    if _given(kwargs.get("text_format")):
        return "json"
    fmt = kwargs.get("response_format")
    if not _given(fmt):
        fmt = _get(kwargs.get("text"), "format") if _given(kwargs.get("text")) else None
        if not _given(fmt):
            return None
    if isinstance(fmt, type):  # structured outputs: the schema of a model class
        return "json"
    kind = fmt if isinstance(fmt, str) else _get(fmt, "type")
    return _OUTPUT_TYPES.get(kind) if isinstance(kind, str) else None


def input_messages(messages: Any) -> list[dict[str, Any]] | None:
    """Chat messages as the conventions' ``gen_ai.input.messages`` structure."""
    if messages is None:
        return None
    if isinstance(messages, str):
        return [{"role": "user", "parts": [{"type": "text", "content": messages}]}]
    out: list[dict[str, Any]] = []
    for message in messages:
        role = _get(message, "role") or "user"
        parts: list[dict[str, Any]] = []
        content = _get(message, "content")
        if isinstance(content, str):
            parts.append({"type": "text", "content": content})
        elif isinstance(content, list):
            for part in content:
                text = _get(part, "text")
                if text is not None:
                    parts.append({"type": "text", "content": text})
        for call in _get(message, "tool_calls") or ():
            parts.append(_tool_call_part(call))
        if role == "tool":
            parts = [
                {
                    "type": "tool_call_response",
                    "id": _get(message, "tool_call_id"),
                    "response": content,
                }
            ]
        out.append({"role": role, "parts": parts})
    return out


def _tool_call_part(call: Any) -> dict[str, Any]:
    fn = _get(call, "function")
    return {
        "type": "tool_call",
        "id": _get(call, "id"),
        "name": _get(fn, "name"),
        "arguments": _get(fn, "arguments"),
    }


def read_chat_response(inv: Invocation, response: Any) -> None:
    """Fill ``inv`` from a chat completion (OpenAI ``ChatCompletion``, litellm
    ``ModelResponse``)."""
    inv.response_id = _get(response, "id")
    inv.response_model = _get(response, "model")
    inv.system_fingerprint = _get(response, "system_fingerprint")
    inv.service_tier = _get(response, "service_tier")
    choices = _get(response, "choices") or ()
    inv.finish_reasons = [str(_get(c, "finish_reason") or "") for c in choices]
    inv.set_usage(read_usage(_get(response, "usage")))
    if inv.capture_content:
        inv.output_messages = [
            _output_message(_get(c, "message"), _get(c, "finish_reason")) for c in choices
        ]


def _output_message(message: Any, finish_reason: Any) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    content = _get(message, "content")
    if content:
        parts.append({"type": "text", "content": content})
    for call in _get(message, "tool_calls") or ():
        parts.append(_tool_call_part(call))
    return {"role": "assistant", "parts": parts, "finish_reason": finish_reason or ""}


class ChatStreamAccumulator:
    """Accumulates ``ChatCompletionChunk``-shaped chunks (OpenAI SDK and litellm)."""

    __slots__ = ("_reasons", "_texts", "_tools")

    def __init__(self) -> None:
        self._reasons: dict[int, str] = {}
        self._texts: dict[int, list[str]] = {}
        self._tools: dict[int, dict[int, dict[str, Any]]] = {}

    def chunk(self, inv: Invocation, chunk: Any) -> None:
        """Account for one chunk: timing, ids, usage, finish reasons, text length."""
        if inv.first_chunk_ns is None:
            inv.response_id = chunk.id
            inv.response_model = chunk.model
            inv.system_fingerprint = getattr(chunk, "system_fingerprint", None)
            inv.service_tier = getattr(chunk, "service_tier", None)
        usage = getattr(chunk, "usage", None)
        if usage is not None:
            inv.set_usage(read_usage(usage))
        text_len = 0
        for choice in chunk.choices:
            delta = choice.delta
            content = getattr(delta, "content", None) if delta is not None else None
            if content:
                text_len += len(content)
                if inv.capture_content:
                    self._texts.setdefault(choice.index, []).append(content)
            if delta is not None and getattr(delta, "tool_calls", None):
                self._tool_deltas(inv, choice.index, delta.tool_calls)
            if choice.finish_reason:
                self._reasons[choice.index] = choice.finish_reason
        inv.mark_chunk()
        inv.output_chars += text_len

    def _tool_deltas(self, inv: Invocation, index: int, calls: Any) -> None:
        slots = self._tools.setdefault(index, {})
        for call in calls:
            slot = slots.setdefault(
                call.index, {"type": "tool_call", "id": None, "name": None, "arguments": ""}
            )
            fn = call.function
            if call.id:
                slot["id"] = call.id
            if fn is not None:
                if fn.name:
                    slot["name"] = fn.name
                if fn.arguments:
                    slot["arguments"] += fn.arguments
                    inv.output_chars += len(fn.arguments)

    def finish(self, inv: Invocation) -> None:
        """Finish reasons and, with content capture, the output messages."""
        if self._reasons:
            inv.finish_reasons = [self._reasons[i] for i in sorted(self._reasons)]
        if inv.capture_content:
            indexes = sorted(set(self._texts) | set(self._tools) | set(self._reasons))
            inv.output_messages = [
                {
                    "role": "assistant",
                    "parts": (
                        [{"type": "text", "content": "".join(self._texts[i])}]
                        if i in self._texts
                        else []
                    )
                    + [self._tools[i][k] for k in sorted(self._tools.get(i, {}))],
                    "finish_reason": self._reasons.get(i, ""),
                }
                for i in indexes
            ]
