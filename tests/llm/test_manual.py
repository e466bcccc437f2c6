"""The manual API (context manager and decorator) for runtimes no instrumentor knows."""

from __future__ import annotations

import asyncio
import json
import uuid

import openai
import pytest
from opentelemetry.attributes import BoundedAttributes

from difytrace.instrumentation.llm.manual import current_llm_call, llm_call
from difytrace.testing import CapturedSpan, SpanCapture, histogram_totals
from difytrace.testing.openai_server import OpenAIServer

from .conftest import LLMSetup


def llm_spans(capture: SpanCapture) -> list[CapturedSpan]:
    return [s for s in capture.spans() if "gen_ai.operation.name" in s.attributes]


def test_context_manager_reports_stream_usage_and_response(
    llm: LLMSetup, span_capture: SpanCapture
) -> None:
    with llm_call(provider="openai", model="gpt-4o", messages="Hi", temperature=0.1) as call:
        for piece in ("Hel", "lo", "!"):
            call.chunk(piece)
        call.usage(input_tokens=120, output_tokens=30, cache_read_tokens=100, reasoning_tokens=10)
        call.response(model="gpt-4o-2024-08-06", response_id="r-1", finish_reason="stop")
    (span,) = llm_spans(span_capture)
    a = span.attributes
    assert span.name == "chat gpt-4o"
    assert a["gen_ai.request.temperature"] == 0.1
    assert a["gen_ai.response.model"] == "gpt-4o-2024-08-06"
    assert a["gen_ai.usage.reasoning.output_tokens"] == 10
    assert a["gen_ai.response.time_to_first_chunk"] >= 0
    assert a["gen_ai.request.stream"] is True  # chunks reported: a stream, though not declared
    assert json.loads(a["langfuse.observation.usage_details"]) == {
        "input": 20,
        "input_cached_tokens": 100,
        "output": 20,
        "output_reasoning_tokens": 10,
        "total": 150,
    }
    assert a["difytrace.gen_ai.usage.cost"] > 0
    assert "gen_ai.input.messages" not in a  # content off by default


def test_without_usage_tokens_are_estimated_and_flagged(
    llm: LLMSetup, span_capture: SpanCapture
) -> None:
    with llm_call(
        provider="openai", model="gpt-4o-mini", messages=[{"role": "user", "content": "word " * 40}]
    ) as call:
        call.response(text="an answer of some length", finish_reason="stop")
    (span,) = llm_spans(span_capture)
    assert span.attributes["difytrace.gen_ai.usage.estimated"] is True
    assert span.attributes["gen_ai.usage.input_tokens"] >= 50
    assert span.attributes["gen_ai.usage.output_tokens"] == 6
    points = span_capture.metrics()["gen_ai.client.token.usage"]
    assert histogram_totals(points, {"difytrace.gen_ai.usage.estimated": "true"}).count == 2


def test_exception_propagates_untouched_and_fails_the_span(
    llm: LLMSetup, span_capture: SpanCapture
) -> None:
    class RuntimeDown(Exception):
        pass

    with pytest.raises(RuntimeDown), llm_call(provider="openai", model="gpt-4o"):
        raise RuntimeDown("model runtime unavailable")
    (span,) = llm_spans(span_capture)
    assert span.status_code == "ERROR"
    assert span.attributes["error.type"].endswith("RuntimeDown")


def test_decorator_sync_and_async_one_span_per_call(
    llm: LLMSetup, span_capture: SpanCapture
) -> None:
    @llm_call(provider="openai", model="gpt-4o-mini")
    def invoke(prompt: str) -> str:
        call = current_llm_call()
        assert call is not None
        call.usage(input_tokens=5, output_tokens=7)
        return prompt.upper()

    @llm_call(provider="openai", model="gpt-4o-mini", operation="text_completion")
    async def ainvoke(prompt: str) -> str:
        return prompt

    assert invoke("a") == "A"
    assert invoke("b") == "B"
    assert asyncio.run(ainvoke("c")) == "c"
    spans = llm_spans(span_capture)
    assert [s.name for s in spans] == ["chat gpt-4o-mini"] * 2 + ["text_completion gpt-4o-mini"]
    assert spans[0].attributes["gen_ai.usage.output_tokens"] == 7
    assert current_llm_call() is None


def test_sdk_calls_inside_are_not_traced_twice(
    llm: LLMSetup, openai_server: OpenAIServer, span_capture: SpanCapture
) -> None:
    client = openai.OpenAI(
        base_url=openai_server.base_url, api_key=openai_server.api_key, max_retries=0
    )
    with llm_call(provider="openai", model="gpt-4o-mini") as call:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
        )
        call.usage(input_tokens=1, output_tokens=1)
    client.close()
    assert len(llm_spans(span_capture)) == 1


def test_content_capture_records_messages(llm_content: LLMSetup, span_capture: SpanCapture) -> None:
    with llm_call(
        provider="openai", model="gpt-4o", messages=[{"role": "user", "content": "What is 2+2?"}]
    ) as call:
        call.chunk("4")
        call.usage(input_tokens=3, output_tokens=1)
    a = llm_spans(span_capture)[0].attributes
    assert json.loads(a["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": "What is 2+2?"}]}
    ]
    assert json.loads(a["gen_ai.output.messages"])[0]["parts"] == [{"type": "text", "content": "4"}]


def test_reconfiguration_takes_effect(
    span_capture: SpanCapture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``llm_call`` follows the settings in force: a configure() after a reset (content capture
    switched on here) applies, and ``reset_configuration`` forgets the old telemetry."""
    import difytrace
    from difytrace.instrumentation import INSTRUMENTORS
    from difytrace.testing import reset_configuration

    messages = [{"role": "user", "content": "What is 2+2?"}]

    def call() -> dict[str, object]:
        span_capture.clear()
        with llm_call(provider="openai", model="gpt-4o", messages=messages) as c:
            c.usage(input_tokens=3, output_tokens=1)
        return llm_spans(span_capture)[0].attributes

    monkeypatch.delenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", raising=False)
    reset_configuration()
    try:
        assert difytrace.configure(
            enabled=True, exporter="none", disabled_instrumentations=[*INSTRUMENTORS]
        )
        assert "gen_ai.input.messages" not in call()
        reset_configuration()
        monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
        assert difytrace.configure(
            enabled=True, exporter="none", disabled_instrumentations=[*INSTRUMENTORS]
        )
        assert "gen_ai.input.messages" in call()
        reset_configuration()
        monkeypatch.delenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT")
        assert "gen_ai.input.messages" not in call()  # the environment's settings again
    finally:
        reset_configuration()


def test_request_values_of_any_type_are_stored_as_the_sdk_stores_them(
    llm: LLMSetup, span_capture: SpanCapture
) -> None:
    conversation = uuid.UUID(int=1)
    with llm_call(
        provider="dify",
        model="qwen-max",
        conversation_id=conversation,  # type: ignore[arg-type]
    ):
        pass
    [span] = llm_spans(span_capture)
    # What the SDK's own span would hold for these values (by version: a string or dropped).
    expected = dict(
        BoundedAttributes(
            None,
            {
                "gen_ai.conversation.id": conversation,
            },
        )
    )
    assert {k: span.attributes.get(k) for k in expected} == expected
    assert not any(isinstance(v, uuid.UUID) for v in span.attributes.values())


def test_conversation_id_goes_on_the_span_only(llm: LLMSetup, span_capture: SpanCapture) -> None:
    with llm_call(provider="dify", model="qwen-max", conversation_id="conv-42") as call:
        call.usage(input_tokens=3, output_tokens=2)
    with llm_call(provider="dify", model="qwen-max"):
        pass
    with_id, without = llm_spans(span_capture)
    assert with_id.attributes["gen_ai.conversation.id"] == "conv-42"
    assert "gen_ai.conversation.id" not in without.attributes  # never a made-up fallback
    points = [p for ps in span_capture.metrics().values() for p in ps]
    assert points
    assert all("gen_ai.conversation.id" not in p.attributes for p in points)


def test_decorated_generator_is_one_span_for_the_whole_stream(
    llm: LLMSetup, span_capture: SpanCapture
) -> None:
    """Dify's model runtime returns a generator when streaming: the span covers the iteration,
    and the call is current inside the generator only, not in the caller between chunks."""
    from opentelemetry import trace

    @llm_call(provider="openai", model="gpt-4o-mini")
    def invoke(prompt: str):
        for piece in prompt.split():
            call = current_llm_call()
            assert call is not None
            call.chunk(piece)
            yield piece
        call.usage(input_tokens=3, output_tokens=2)
        return "done"

    stream = invoke("Hel lo")
    assert llm_spans(span_capture) == []  # nothing started before the first next()
    seen = []
    for piece in stream:
        assert current_llm_call() is None
        assert not trace.get_current_span().get_span_context().is_valid
        seen.append(piece)
    assert seen == ["Hel", "lo"]
    (span,) = llm_spans(span_capture)
    assert span.attributes["gen_ai.request.stream"] is True
    assert span.attributes["gen_ai.usage.output_tokens"] == 2
    assert span.status_code != "ERROR"


def test_decorated_generator_closed_early_or_failing_ends_its_span(
    llm: LLMSetup, span_capture: SpanCapture
) -> None:
    @llm_call(provider="openai", model="gpt-4o-mini")
    def invoke(fail: bool):
        yield "first"
        if fail:
            raise TimeoutError("runtime stalled")
        yield "second"

    stream = invoke(False)
    assert next(stream) == "first"
    stream.close()  # the client went away
    with pytest.raises(TimeoutError):
        list(invoke(True))
    closed, failed = llm_spans(span_capture)
    assert closed.status_code != "ERROR"
    assert failed.status_code == "ERROR"
    assert failed.attributes["error.type"] == "TimeoutError"
    assert current_llm_call() is None


def test_decorated_async_generator_is_one_span_for_the_whole_stream(
    llm: LLMSetup, span_capture: SpanCapture
) -> None:
    @llm_call(provider="openai", model="gpt-4o-mini")
    async def ainvoke(prompt: str):
        for piece in prompt.split():
            call = current_llm_call()
            assert call is not None
            call.chunk(piece)
            await asyncio.sleep(0)
            yield piece

    async def consume() -> list[str]:
        out = []
        async for piece in ainvoke("a b c"):
            assert current_llm_call() is None
            out.append(piece)
        return out

    assert asyncio.run(consume()) == ["a", "b", "c"]
    (span,) = llm_spans(span_capture)
    assert span.attributes["gen_ai.request.stream"] is True


def test_llm_call_left_in_another_context_ends_its_span_without_raising(
    llm: LLMSetup, span_capture: SpanCapture, caplog: pytest.LogCaptureFixture
) -> None:
    """An async generator abandoned by its consumer is finalised by asyncio in a new task,
    hence a new context: leaving the ``with`` there must not raise into the application."""

    async def answer():
        with llm_call(provider="openai", model="gpt-4o") as call:
            call.chunk("a")
            yield "a"
            yield "b"

    async def main() -> None:
        stream = answer()
        assert await stream.__anext__() == "a"
        task = asyncio.get_running_loop().create_task(stream.aclose())  # another context
        await task

    asyncio.run(main())
    (span,) = llm_spans(span_capture)  # ended, so captured
    assert span.status_code != "ERROR"
    assert [r for r in caplog.records if r.levelname == "ERROR"] == []
