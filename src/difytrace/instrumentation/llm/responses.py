"""The OpenAI responses API and embeddings → :class:`Invocation` fields."""

from __future__ import annotations

from typing import Any

from difytrace.instrumentation.llm.invocation import Invocation
from difytrace.instrumentation.llm.usage import read_usage

#: responses API status → the conventions' finish reason
_FINISH = {"completed": "stop", "failed": "error", "cancelled": "error"}
_INCOMPLETE = {"max_output_tokens": "length", "content_filter": "content_filter"}
_DELTA_EVENTS = frozenset(
    {
        "response.output_text.delta",
        "response.function_call_arguments.delta",
        "response.refusal.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_text.delta",
        "response.audio.delta",
    }
)
_FINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})


def read_responses_response(inv: Invocation, response: Any) -> None:
    """Fill ``inv`` from a responses API ``Response``."""
    inv.response_id = getattr(response, "id", None)
    inv.response_model = getattr(response, "model", None)
    status = getattr(response, "status", None)
    inv.response_status = status
    inv.service_tier = getattr(response, "service_tier", None)
    if status == "incomplete":
        details = getattr(response, "incomplete_details", None)
        inv.finish_reasons = [_INCOMPLETE.get(getattr(details, "reason", None) or "", "length")]
    elif status in _FINISH:
        inv.finish_reasons = [_finish_reason(response, status)]
    inv.set_usage(read_usage(getattr(response, "usage", None)))
    if inv.capture_content:
        inv.output_messages = _output_messages(response)


def _finish_reason(response: Any, status: str) -> str:
    output = getattr(response, "output", None) or ()
    if status == "completed" and any(getattr(i, "type", "") == "function_call" for i in output):
        return "tool_calls"
    return _FINISH[status]


def _output_messages(response: Any) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for item in getattr(response, "output", None) or ():
        kind = getattr(item, "type", "")
        if kind == "message":
            for content in getattr(item, "content", None) or ():
                text = getattr(content, "text", None)
                if text is not None:
                    parts.append({"type": "text", "content": text})
        elif kind == "function_call":
            parts.append(
                {
                    "type": "tool_call",
                    "id": getattr(item, "call_id", None),
                    "name": getattr(item, "name", None),
                    "arguments": getattr(item, "arguments", None),
                }
            )
    reasons = getattr(getattr(response, "incomplete_details", None), "reason", None)
    return [
        {
            "role": "assistant",
            "parts": parts,
            "finish_reason": _INCOMPLETE.get(reasons or "", "stop"),
        }
    ]


class ResponsesStreamAccumulator:
    """Accumulates responses API stream events; the final event carries usage and status."""

    __slots__ = ("_inv",)

    def __init__(self, inv: Invocation) -> None:
        self._inv = inv

    def chunk(self, event: Any) -> None:
        """Account for one event: deltas time the first chunk, the final event fills all."""
        inv = self._inv
        kind = getattr(event, "type", "")
        if kind in _DELTA_EVENTS:
            delta = getattr(event, "delta", None)
            inv.mark_chunk(delta if isinstance(delta, str) else None)
        elif kind in _FINAL_EVENTS:
            response = getattr(event, "response", None)
            if response is not None:
                read_responses_response(inv, response)
        elif kind == "response.created" and inv.response_id is None:
            response = getattr(event, "response", None)
            inv.response_id = getattr(response, "id", None)
            inv.response_model = getattr(response, "model", None)

    def finish(self) -> None:
        """Nothing left to do: the final event filled the response fields."""


def read_embeddings_response(inv: Invocation, response: Any) -> None:
    """Fill ``inv`` from a ``CreateEmbeddingResponse``."""
    inv.response_model = getattr(response, "model", None)
    inv.set_usage(read_usage(getattr(response, "usage", None)))
    data = getattr(response, "data", None) or ()
    if data:
        embedding = getattr(data[0], "embedding", None)
        if isinstance(embedding, list):
            inv.dimension_count = len(embedding)
