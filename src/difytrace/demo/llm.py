"""The demo's LLM calls: the OpenAI SDK against the local OpenAI-compatible server.

difytrace's OpenAI instrumentor makes the spans (tokens, cost, time to first token); this
module only returns what the app itself needs for its ops_trace records.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

MODEL = "gpt-4o-mini"
# USD per million tokens (input, output): OpenAI's list price for gpt-4o-mini, for the
# records' cost (the live spans are priced by difytrace's own price data).
PRICE_PER_MTOK = (0.15, 0.60)


@dataclass
class Answer:
    """What one call returned, as the app records it."""

    text: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    first_token: datetime | None = None
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    @property
    def cost_usd(self) -> float:
        """List-price cost of the call."""
        return (
            self.input_tokens * PRICE_PER_MTOK[0] + self.output_tokens * PRICE_PER_MTOK[1]
        ) / 1e6


@functools.cache
def client(base_url: str, api_key: str) -> Any:
    """The OpenAI client for the local server, one per process (no retries: the demo shows
    failures as they are)."""
    import openai

    return openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=10)


def complete(
    base_url: str, api_key: str, prompt: str, tools: list[dict[str, Any]] | None = None
) -> Answer:
    """One non-streamed chat completion, optionally offering tools."""
    answer = Answer()
    extra: dict[str, Any] = {"tools": tools} if tools else {}
    response = client(base_url, api_key).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": prompt}], **extra
    )
    message = response.choices[0].message
    answer.text = str(message.content or "")
    for call in message.tool_calls or []:
        answer.tool_calls.append((call.function.name, json.loads(call.function.arguments or "{}")))
    if response.usage is not None:
        answer.input_tokens = response.usage.prompt_tokens
        answer.output_tokens = response.usage.completion_tokens
    return answer


def stream(
    base_url: str, api_key: str, prompt: str, done: Callable[[Answer], None]
) -> Iterator[str]:
    """A streamed chat completion: yields text deltas; ``done`` gets the answer at the end."""
    answer = Answer()
    chunks = client(base_url, api_key).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": prompt}],
        stream=True,
        stream_options={"include_usage": True},
    )
    parts: list[str] = []
    for chunk in chunks:
        if chunk.usage is not None:
            answer.input_tokens = chunk.usage.prompt_tokens
            answer.output_tokens = chunk.usage.completion_tokens
        for choice in chunk.choices:
            if choice.delta.content:
                answer.first_token = answer.first_token or datetime.now(UTC)
                parts.append(choice.delta.content)
                yield choice.delta.content
    answer.text = "".join(parts)
    done(answer)
