"""The demo's LLM calls: OpenAI SDK against the local model server, inside a GenAI span."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from opentelemetry import trace

MODEL = "gpt-4o-mini"
# USD per million tokens (input, output): OpenAI's list price for gpt-4o-mini.
PRICE_PER_MTOK = (0.15, 0.60)

_tracer = trace.get_tracer("difytrace.demo.llm")


def _client(base_url: str) -> Any:
    import openai

    return openai.OpenAI(
        base_url=base_url, api_key="sk-demo-not-a-secret", max_retries=0, timeout=10
    )


def _record_usage(span: trace.Span, input_tokens: int, output_tokens: int) -> None:
    cost = (input_tokens * PRICE_PER_MTOK[0] + output_tokens * PRICE_PER_MTOK[1]) / 1e6
    span.set_attribute("gen_ai.usage.input_tokens", input_tokens)
    span.set_attribute("gen_ai.usage.output_tokens", output_tokens)
    span.set_attribute("difytrace.gen_ai.cost.usd", round(cost, 8))


def _span(prompt: str) -> Any:
    return _tracer.start_as_current_span(
        f"chat {MODEL}",
        kind=trace.SpanKind.CLIENT,
        attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": MODEL,
        },
    )


def complete(base_url: str, prompt: str) -> str:
    """One non-streamed chat completion; returns the answer text."""
    client = _client(base_url)
    with _span(prompt) as span:
        response = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": prompt}]
        )
        span.set_attribute("gen_ai.response.model", response.model)
        span.set_attribute(
            "gen_ai.response.finish_reasons", [c.finish_reason for c in response.choices]
        )
        _record_usage(span, response.usage.prompt_tokens, response.usage.completion_tokens)
        return str(response.choices[0].message.content or "")


def stream(base_url: str, prompt: str) -> Iterator[str]:
    """A streamed chat completion: yields text deltas, records time to first token."""
    client = _client(base_url)
    with _span(prompt) as span:
        started = time.monotonic()
        first: float | None = None
        chunks = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": prompt}],
            stream=True,
            stream_options={"include_usage": True},
        )
        for chunk in chunks:
            if chunk.usage is not None:
                _record_usage(span, chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
            for choice in chunk.choices:
                if choice.delta.content:
                    if first is None:
                        first = time.monotonic()
                        span.set_attribute(
                            "gen_ai.response.time_to_first_chunk", round(first - started, 6)
                        )
                    yield choice.delta.content
