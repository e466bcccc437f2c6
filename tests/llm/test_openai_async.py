"""The async OpenAI client: streams closed with ``aclose()``, dropped and collected, or cut
mid-stream, and the responses API, each ending its one span with the right status."""

from __future__ import annotations

import asyncio
import gc
import warnings
from collections.abc import Awaitable, Callable

import httpx
import openai
import pytest

from difytrace.testing import SpanCapture, histogram_totals
from difytrace.testing.openai_server import OpenAIServer, Reply

from .conftest import LLMSetup
from .test_openai import MESSAGES, llm_spans, only_span

Scenario = Callable[[openai.AsyncOpenAI], Awaitable[None]]


def run(server: OpenAIServer, scenario: Scenario) -> None:
    async def main() -> None:
        async with openai.AsyncOpenAI(
            base_url=server.base_url, api_key=server.api_key, max_retries=0
        ) as c:
            await scenario(c)

    asyncio.run(main())


async def _stream(c: openai.AsyncOpenAI) -> openai.AsyncStream[object]:
    return await c.chat.completions.create(  # type: ignore[call-overload, no-any-return]
        model="gpt-4o-mini", messages=MESSAGES, stream=True
    )


def test_aclose_ends_the_span_with_what_arrived(
    llm: LLMSetup, openai_server: OpenAIServer, span_capture: SpanCapture
) -> None:
    async def scenario(c: openai.AsyncOpenAI) -> None:
        stream = await _stream(c)
        await stream.__anext__()
        await stream.__anext__()
        assert llm_spans(span_capture) == []
        await stream.aclose()  # type: ignore[attr-defined]
        assert len(llm_spans(span_capture)) == 1

    run(openai_server, scenario)
    span = only_span(span_capture)
    assert span.status_code == "UNSET"
    assert "gen_ai.response.finish_reasons" not in span.attributes  # cut before the end
    assert span.attributes["gen_ai.response.time_to_first_chunk"] > 0
    assert span.attributes["difytrace.gen_ai.usage.estimated"] is True


def test_dropped_async_stream_ends_its_span_when_collected(
    llm: LLMSetup, openai_server: OpenAIServer, span_capture: SpanCapture
) -> None:
    async def scenario(c: openai.AsyncOpenAI) -> None:
        stream = await _stream(c)
        await stream.__anext__()
        del stream
        with warnings.catch_warnings():  # the SDK's own unclosed response, not ours to judge
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
        assert len(llm_spans(span_capture)) == 1  # ended by the collector, not by the loop

    run(openai_server, scenario)
    span = only_span(span_capture)
    assert span.status_code == "UNSET"
    assert span.attributes["gen_ai.request.stream"] is True
    assert "gen_ai.response.finish_reasons" not in span.attributes


def test_async_mid_stream_disconnect_fails_the_span(
    llm: LLMSetup, openai_server: OpenAIServer, span_capture: SpanCapture
) -> None:
    openai_server.script(Reply(disconnect_after=3))
    raised: list[BaseException] = []

    async def scenario(c: openai.AsyncOpenAI) -> None:
        stream = await _stream(c)
        with pytest.raises((httpx.HTTPError, openai.APIError)) as info:  # by SDK version
            async for _ in stream:
                pass
        raised.append(info.value)

    run(openai_server, scenario)
    span = only_span(span_capture)
    assert span.status_code == "ERROR"
    assert span.attributes["error.type"] == type(raised[0]).__qualname__
    assert [name for name, _ in span.events] == ["difytrace.gen_ai.first_chunk", "exception"]
    duration = span_capture.metrics()["gen_ai.client.operation.duration"]
    assert histogram_totals(duration, {"error.type": type(raised[0]).__qualname__}).count == 1
    assert "gen_ai.client.token.usage" not in span_capture.metrics()


def test_async_responses_plain_and_streamed(
    llm: LLMSetup, openai_server: OpenAIServer, span_capture: SpanCapture
) -> None:
    events: list[str] = []

    async def scenario(c: openai.AsyncOpenAI) -> None:
        await c.responses.create(model="gpt-4o-mini", input="Hi", max_output_tokens=50)
        stream = await c.responses.create(model="gpt-4o-mini", input="Hi", stream=True)
        events.extend([e.type async for e in stream])

    run(openai_server, scenario)
    assert events[-1] == "response.completed"
    plain, streamed = llm_spans(span_capture)
    for span in (plain, streamed):
        assert span.attributes["gen_ai.response.id"].startswith("resp_")
        assert span.attributes["gen_ai.response.finish_reasons"] == ("stop",)
        assert span.attributes["gen_ai.usage.output_tokens"] == 8
        assert span.status_code == "UNSET"
    assert "gen_ai.request.stream" not in plain.attributes
    assert streamed.attributes["gen_ai.request.stream"] is True
    assert streamed.attributes["gen_ai.response.time_to_first_chunk"] > 0
    ttfc = span_capture.metrics()["gen_ai.client.operation.time_to_first_chunk"]
    assert histogram_totals(ttfc).count == 1


def test_async_responses_stream_cut_mid_way_fails_the_span(
    llm: LLMSetup, openai_server: OpenAIServer, span_capture: SpanCapture
) -> None:
    openai_server.script(Reply(disconnect_after=2))

    async def scenario(c: openai.AsyncOpenAI) -> None:
        stream = await c.responses.create(model="gpt-4o-mini", input="Hi", stream=True)
        with pytest.raises((httpx.HTTPError, openai.APIError)):
            async for _ in stream:
                pass

    run(openai_server, scenario)
    span = only_span(span_capture)
    assert span.status_code == "ERROR"
    assert "gen_ai.response.finish_reasons" not in span.attributes


def test_awaited_close_ends_the_span_after_closing(
    llm: LLMSetup, openai_server: OpenAIServer, span_capture: SpanCapture
) -> None:
    async def scenario(c: openai.AsyncOpenAI) -> None:
        stream = await _stream(c)
        await stream.__anext__()
        closing = stream.close()  # OpenAI's AsyncStream.close is a coroutine
        assert llm_spans(span_capture) == []
        await closing
        assert len(llm_spans(span_capture)) == 1

    run(openai_server, scenario)
    assert only_span(span_capture).status_code == "UNSET"


def test_async_with_streaming_response_is_left_for_the_caller_to_read(
    llm: LLMSetup, openai_server: OpenAIServer, span_capture: SpanCapture
) -> None:
    async def scenario(c: openai.AsyncOpenAI) -> None:
        create = c.chat.completions.with_streaming_response.create
        async with create(model="gpt-4o-mini", messages=MESSAGES) as response:
            body = await response.parse()
        assert body.choices[0].message.content

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # "coroutine ... was never awaited"
        run(openai_server, scenario)
        gc.collect()
    span = only_span(span_capture)
    assert span.status_code == "UNSET"
    assert span.attributes["gen_ai.request.model"] == "gpt-4o-mini"
