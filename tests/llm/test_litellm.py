"""Real litellm (which calls the OpenAI SDK underneath) against the fake server: one span per
call, no duplicate from the inner OpenAI instrumentation."""

from __future__ import annotations

import asyncio
import gc
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from difytrace.testing import CapturedSpan, SpanCapture, histogram_totals
from difytrace.testing.openai_server import OpenAIServer, Reply

from .conftest import LLMSetup

litellm = pytest.importorskip("litellm")

# litellm's own import-time and per-call warnings (pydantic deprecations inside litellm), not
# difytrace's: they would fail the run under -W error.
pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning:pydantic._internal._generate_schema"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::PendingDeprecationWarning"),
    pytest.mark.filterwarnings("ignore:Accessing the 'model_computed_fields':Warning"),
    pytest.mark.filterwarnings("ignore:Pydantic serializer warnings:UserWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


@pytest.fixture(autouse=True, scope="module")
def _collect_litellm_leaks() -> Iterator[None]:
    """litellm leaves event loops and sockets for the garbage collector; collect them after
    this module, warnings ignored, so they cannot fail an unrelated test of this worker."""
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gc.collect()


MESSAGES = [{"role": "user", "content": "Hello litellm"}]


def kwargs(server: OpenAIServer, **extra: Any) -> dict[str, Any]:
    return {
        "model": "openai/gpt-4o-mini",
        "messages": MESSAGES,
        "api_base": server.base_url,
        "api_key": server.api_key,
        "num_retries": 0,
        **extra,
    }


def llm_spans(capture: SpanCapture) -> list[CapturedSpan]:
    return [s for s in capture.spans() if "gen_ai.operation.name" in s.attributes]


def test_completion_is_one_span_named_after_the_routed_provider(
    llm: LLMSetup, openai_server: OpenAIServer, span_capture: SpanCapture
) -> None:
    response = litellm.completion(**kwargs(openai_server, temperature=0.5))
    assert response.choices[0].message.content
    assert len(openai_server.requests) == 1
    (span,) = llm_spans(span_capture)  # the inner OpenAI SDK call made no second span
    a = span.attributes
    assert span.name == "chat gpt-4o-mini"
    assert a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.model"] == "gpt-4o-mini"
    assert a["gen_ai.request.temperature"] == 0.5
    assert a["server.address"] == "127.0.0.1"
    assert a["server.port"] == openai_server.port
    assert a["gen_ai.usage.input_tokens"] > 0
    assert a["gen_ai.usage.output_tokens"] > 0
    assert a["gen_ai.response.finish_reasons"] == ("stop",)
    assert a["difytrace.gen_ai.usage.cost"] > 0
    tokens = span_capture.metrics()["gen_ai.client.token.usage"]
    assert histogram_totals(tokens, {"gen_ai.token.type": "input"}).count == 1


@pytest.mark.parametrize("include_usage", [True, False])
def test_streaming_completion(
    llm: LLMSetup, openai_server: OpenAIServer, span_capture: SpanCapture, include_usage: bool
) -> None:
    openai_server.script(Reply(chunks=20, include_usage=include_usage))
    extra: dict[str, Any] = {"stream": True}
    if include_usage:
        extra["stream_options"] = {"include_usage": True}
    stream = litellm.completion(**kwargs(openai_server, **extra))
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text
    (span,) = llm_spans(span_capture)
    a = span.attributes
    assert a["gen_ai.request.stream"] is True
    assert a["gen_ai.response.time_to_first_chunk"] > 0
    assert a["gen_ai.usage.output_tokens"] > 0
    assert a.get("difytrace.gen_ai.usage.estimated", False) is not include_usage or (
        include_usage and "difytrace.gen_ai.usage.estimated" not in a
    )


async def _acalls(server: OpenAIServer) -> None:
    await litellm.acompletion(**kwargs(server))
    stream = await litellm.acompletion(**kwargs(server, stream=True))
    async for _ in stream:
        pass


def test_acompletion_plain_and_streamed(
    llm: LLMSetup, openai_server: OpenAIServer, span_capture: SpanCapture
) -> None:
    asyncio.run(_acalls(openai_server))
    spans = llm_spans(span_capture)
    assert len(spans) == 2
    assert all(s.attributes["gen_ai.provider.name"] == "openai" for s in spans)
    assert "gen_ai.response.time_to_first_chunk" in spans[1].attributes


def test_error_is_one_failed_span(
    llm: LLMSetup, openai_server: OpenAIServer, span_capture: SpanCapture
) -> None:
    openai_server.script(
        Reply(status=429, retry_after="0"),
        Reply(status=429, retry_after="0"),
        Reply(status=429, retry_after="0"),
    )
    with pytest.raises(litellm.RateLimitError):
        litellm.completion(**kwargs(openai_server, max_retries=0))
    (span,) = llm_spans(span_capture)
    assert span.status_code == "ERROR"
    assert span.attributes["error.type"] == "RateLimitError"


def test_uninstrument_restores_the_functions(llm: LLMSetup) -> None:
    from difytrace.instrumentation.llm.litellm import LiteLLMInstrumentor

    assert "_wrap_sync" in litellm.completion.__qualname__
    LiteLLMInstrumentor().uninstrument()
    assert "_wrap" not in litellm.completion.__qualname__
    assert "_wrap" not in litellm.acompletion.__qualname__
