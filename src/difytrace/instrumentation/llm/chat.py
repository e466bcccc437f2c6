"""OpenAI-shaped requests, responses and stream chunks → :class:`Invocation` fields.

Shared by the OpenAI SDK and litellm instrumentors (litellm returns OpenAI-shaped objects).
Content (messages, output, tool calls) is read only when content capture is on; otherwise
only lengths are kept, for the offline token estimate.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from difytrace import semconv_genai as g
from difytrace.instrumentation.llm.fields import field as _get
from difytrace.instrumentation.llm.fields import fields_of
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


_RESPONSE_FIELDS = frozenset(
    {"id", "model", "system_fingerprint", "service_tier", "choices", "usage"}
)
_CHOICE_FIELDS = frozenset({"finish_reason", "message"})


def read_chat_response(inv: Invocation, response: Any) -> None:
    """Fill ``inv`` from a chat completion (OpenAI ``ChatCompletion``, litellm
    ``ModelResponse``)."""
    fields = fields_of(response, _RESPONSE_FIELDS)
    inv.response_id = fields.get("id")
    inv.response_model = fields.get("model")
    inv.system_fingerprint = fields.get("system_fingerprint")
    inv.service_tier = fields.get("service_tier")
    choices = [fields_of(c, _CHOICE_FIELDS) for c in fields.get("choices") or ()]
    inv.finish_reasons = [str(c.get("finish_reason") or "") for c in choices]
    inv.set_usage(read_usage(fields.get("usage")))
    if inv.capture_content:
        inv.output_messages = [
            _output_message(c.get("message"), c.get("finish_reason")) for c in choices
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
    """Accumulates the ``ChatCompletionChunk``-shaped chunks of one stream (OpenAI SDK and
    litellm) into its invocation.

    :meth:`chunk` runs once per chunk, so it reads each field once, and reads the OpenAI SDK's
    chunks (whose classes declare every field read here) with plain attribute reads; other
    chunks (litellm's keep most fields as pydantic extras, or omit them) go through
    :func:`~difytrace.instrumentation.llm.fields.field`.
    """

    __slots__ = ("_capture", "_inv", "_read", "_reasons", "_texts", "_tools")

    def __init__(self, inv: Invocation) -> None:
        self._inv = inv
        self._capture = inv.capture_content
        self._read: Any = _get
        self._reasons: dict[int, str] = {}
        self._texts: dict[int, list[str]] = {}
        self._tools: dict[int, dict[int, dict[str, Any]]] = {}

    def chunk(self, chunk: Any) -> None:
        """Account for one chunk: timing, ids, usage, finish reasons, text length."""
        inv = self._inv
        if inv.first_chunk_ns is None:
            self._first(inv, chunk)
        inv.chunks += 1
        read = self._read
        usage = read(chunk, "usage")
        if usage is not None:
            inv.set_usage(read_usage(usage))
        for choice in read(chunk, "choices") or ():
            delta = read(choice, "delta")
            if delta is not None:
                content = read(delta, "content")
                if content:
                    inv.output_chars += len(content)
                    if self._capture:
                        self._texts.setdefault(read(choice, "index"), []).append(content)
                calls = read(delta, "tool_calls")
                if calls:
                    self._tool_deltas(inv, read(choice, "index"), calls)
            reason = read(choice, "finish_reason")
            if reason:
                self._reasons[read(choice, "index")] = reason

    def _first(self, inv: Invocation, chunk: Any) -> None:
        inv.first_chunk_ns = time.monotonic_ns()
        if type(chunk).__module__.startswith("openai.types."):
            self._read = getattr
        inv.response_id = _get(chunk, "id")
        inv.response_model = _get(chunk, "model")
        inv.system_fingerprint = _get(chunk, "system_fingerprint")
        inv.service_tier = _get(chunk, "service_tier")

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

    def finish(self) -> None:
        """Finish reasons and, with content capture, the output messages."""
        inv = self._inv
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


class UsageChunkAccumulator(ChatStreamAccumulator):
    """For OpenAI SDK chat streams that asked for the final usage chunk
    (``stream_options={"include_usage": True}``), content not captured: only usage and finish
    reasons are read from a chunk. Its text and tool calls would serve only the token estimate
    (the usage chunk makes it moot) and the content (off); each read of a pydantic field
    costs ~500 instructions, three a chunk are saved. Should the usage chunk not come (the
    stream closed early, a server ignoring ``stream_options``), the estimate counts one output
    token a chunk, as OpenAI streams them.
    """

    __slots__ = ()

    def __init__(self, inv: Invocation) -> None:
        super().__init__(inv)
        inv.text_counted = False

    def chunk(self, chunk: Any) -> None:
        """Account for one chunk: timing, ids, usage, finish reasons."""
        inv = self._inv
        if inv.first_chunk_ns is None:
            self._first(inv, chunk)
        inv.chunks += 1
        usage = chunk.usage
        if usage is not None:
            inv.set_usage(read_usage(usage))
        for choice in chunk.choices:
            reason = choice.finish_reason
            if reason:
                self._reasons[choice.index] = reason


def usage_chunk_requested(kwargs: Mapping[str, Any]) -> bool:
    """Whether a streamed chat call asked for the final usage chunk."""
    options = kwargs.get("stream_options")
    return _given(options) and bool(_get(options, "include_usage"))
