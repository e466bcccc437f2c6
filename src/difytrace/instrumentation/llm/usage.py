"""Token usage: read from provider usage objects, or estimated offline when none came.

Providers report usage in a few shapes (OpenAI chat ``prompt_tokens``/``completion_tokens``,
the responses API ``input_tokens``/``output_tokens``, Anthropic-style cache counters through
litellm). :func:`read_usage` maps them to the semantic conventions' meaning: input tokens
*include* cached ones, output tokens *include* reasoning ones.

The estimate needs no tokenizer file (nothing is downloaded at run time): about four ASCII
characters per token, about one token per other character (CJK text), plus the chat format's
per-message overhead. Spans carrying it are flagged ``difytrace.gen_ai.usage.estimated``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from difytrace.instrumentation.llm.fields import field, fields_of

_PER_MESSAGE = 4  # role and separators of the chat format
_PER_REQUEST = 3  # the assistant priming


@dataclass(slots=True)
class Usage:
    """Token counts of one call, in the conventions' meaning (cached ⊆ input, reasoning ⊆
    output)."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_creation_tokens: int | None = None
    reasoning_tokens: int | None = None
    estimated: bool = False


_USAGE_FIELDS = frozenset(
    {
        "prompt_tokens",
        "input_tokens",
        "completion_tokens",
        "output_tokens",
        "prompt_tokens_details",
        "input_tokens_details",
        "completion_tokens_details",
        "output_tokens_details",
        "cache_read_input_tokens",
        "cache_creation_input_tokens",
    }
)
_DETAIL_FIELDS = frozenset({"cached_tokens", "cache_creation_tokens", "reasoning_tokens"})


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def read_usage(raw: Any) -> Usage | None:
    """A :class:`Usage` from any provider usage object or dict; None when there is none."""
    if raw is None:
        return None
    usage = fields_of(raw, _USAGE_FIELDS)
    inp = _int(usage.get("prompt_tokens"))
    if inp is None:
        inp = _int(usage.get("input_tokens"))
    out = _int(usage.get("completion_tokens"))
    if out is None:
        out = _int(usage.get("output_tokens"))
    if inp is None and out is None:
        return None
    in_details = fields_of(
        usage.get("prompt_tokens_details") or usage.get("input_tokens_details"), _DETAIL_FIELDS
    )
    out_details = fields_of(
        usage.get("completion_tokens_details") or usage.get("output_tokens_details"),
        _DETAIL_FIELDS,
    )
    cache_read = _int(in_details.get("cached_tokens"))
    if cache_read is None:
        cache_read = _int(usage.get("cache_read_input_tokens"))
    cache_creation = _int(usage.get("cache_creation_input_tokens"))
    if cache_creation is None:
        cache_creation = _int(in_details.get("cache_creation_tokens"))
    return Usage(
        inp,
        out,
        cache_read or None,
        cache_creation or None,
        _int(out_details.get("reasoning_tokens")) or None,
    )


def estimate_text_tokens(text: str) -> int:
    """Offline token estimate of ``text`` (no tokenizer download)."""
    if not text:
        return 0
    if text.isascii():
        return (len(text) + 3) // 4
    other = sum(1 for ch in text if ord(ch) > 127)
    return (len(text) - other + 3) // 4 + other


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            _content_text(field(part, "text") or field(part, "content") or "") for part in content
        )
    return ""


def estimate_messages_tokens(messages: Iterable[Any] | str | None) -> int:
    """Offline estimate of the prompt tokens of chat ``messages`` (or a plain prompt)."""
    if messages is None:
        return 0
    if isinstance(messages, str):
        return estimate_text_tokens(messages) + _PER_REQUEST
    total = _PER_REQUEST
    for message in messages:
        total += _PER_MESSAGE + estimate_text_tokens(_content_text(field(message, "content")))
    return total


def estimated(
    messages: Any,
    output_chars: int,
    output_text: str | None = None,
    *,
    output_tokens: int | None = None,
) -> Usage:
    """An estimated :class:`Usage` from the request messages and the streamed output (its
    text, its length, or a token count already estimated)."""
    if output_tokens is None:
        output_tokens = (
            estimate_text_tokens(output_text)
            if output_text is not None
            else (output_chars + 3) // 4
        )
    return Usage(
        input_tokens=estimate_messages_tokens(messages), output_tokens=output_tokens, estimated=True
    )
