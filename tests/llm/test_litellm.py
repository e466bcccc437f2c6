"""Real litellm (which calls the OpenAI SDK underneath) against the fake server: one span per
call, no duplicate from the inner OpenAI instrumentation."""

from __future__ import annotations

import asyncio
import gc
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from difytrace.scrub import Scrubber
from difytrace.testing import CapturedSpan, SpanCapture, assert_genai_valid, histogram_totals
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


FAULTS = {
    "400": (Reply(status=400, message="bad request"), "BadRequestError"),
    "500": (Reply(status=500), "InternalServerError"),
}


@pytest.mark.parametrize("status", sorted(FAULTS))
def test_http_error_is_one_failed_span(
    llm: LLMSetup, openai_server: OpenAIServer, span_capture: SpanCapture, status: str
) -> None:
    reply, error_type = FAULTS[status]
    openai_server.script(reply)
    with pytest.raises(getattr(litellm, error_type)):
        litellm.completion(**kwargs(openai_server, max_retries=0))
    assert len(openai_server.requests) == 1
    (span,) = llm_spans(span_capture)
    assert span.status_code == "ERROR"
    assert span.attributes["error.type"] == error_type
    assert [name for name, _ in span.events] == ["exception"]
    duration = span_capture.metrics()["gen_ai.client.operation.duration"]
    assert histogram_totals(duration, {"error.type": error_type}).count == 1


def test_wrong_key_is_one_failed_span_and_the_key_is_scrubbed(
    llm: LLMSetup, openai_server: OpenAIServer, span_capture: SpanCapture
) -> None:
    with pytest.raises(litellm.AuthenticationError):
        litellm.completion(**kwargs(openai_server, api_key="sk-wrong", max_retries=0))
    (span,) = llm_spans(span_capture)
    assert span.status_code == "ERROR"
    assert span.attributes["error.type"] == "AuthenticationError"
    assert span.status_description
    assert "sk-wrong" in span.status_description  # as raised
    assert "sk-wrong" not in Scrubber().redact(span.status_description)  # as exported


def test_mid_stream_disconnect_fails_the_one_span(
    llm: LLMSetup, openai_server: OpenAIServer, span_capture: SpanCapture
) -> None:
    openai_server.script(Reply(disconnect_after=3))
    with pytest.raises(Exception) as info:  # noqa: PT011 - litellm's class varies by version
        for _ in litellm.completion(**kwargs(openai_server, stream=True)):
            pass
    (span,) = llm_spans(span_capture)
    assert span.status_code == "ERROR"
    assert span.attributes["error.type"] == type(info.value).__qualname__
    assert "gen_ai.response.finish_reasons" not in span.attributes
    assert "gen_ai.client.token.usage" not in span_capture.metrics()


def test_slow_first_byte_is_in_ttft(
    llm: LLMSetup, openai_server: OpenAIServer, span_capture: SpanCapture
) -> None:
    openai_server.script(Reply(first_byte_delay=0.2))
    for _ in litellm.completion(**kwargs(openai_server, stream=True)):
        pass
    (span,) = llm_spans(span_capture)
    assert span.attributes["gen_ai.response.time_to_first_chunk"] >= 0.19
    assert span.status_code == "UNSET"
    ttfc = span_capture.metrics()["gen_ai.client.operation.time_to_first_chunk"]
    assert histogram_totals(ttfc).count == 1


def test_tool_call_deltas(
    llm: LLMSetup, openai_server: OpenAIServer, span_capture: SpanCapture
) -> None:
    calls = [{"name": "get_weather", "arguments": '{"city": "Paris", "unit": "c"}'}]
    openai_server.script(Reply(tool_calls=calls), Reply(tool_calls=calls))
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    litellm.completion(**kwargs(openai_server, tools=tools))
    chunks = list(litellm.completion(**kwargs(openai_server, tools=tools, stream=True)))
    assert any(c.choices and c.choices[0].delta.tool_calls for c in chunks)
    spans = llm_spans(span_capture)
    assert len(openai_server.requests) == len(spans) == 2
    assert [s.attributes["gen_ai.response.finish_reasons"] for s in spans] == [
        ("tool_calls",),
        ("tool_calls",),
    ]


def test_closed_and_abandoned_streams_end_one_span_each(
    llm: LLMSetup, openai_server: OpenAIServer, span_capture: SpanCapture
) -> None:
    closed = litellm.completion(**kwargs(openai_server, stream=True))
    next(iter(closed))
    closed.close()
    assert len(llm_spans(span_capture)) == 1
    with litellm.completion(**kwargs(openai_server, stream=True)) as in_with:
        next(iter(in_with))
    assert len(llm_spans(span_capture)) == 2
    abandoned = litellm.completion(**kwargs(openai_server, stream=True))
    next(iter(abandoned))
    del abandoned
    gc.collect()
    spans = llm_spans(span_capture)
    assert len(spans) == len(openai_server.requests) == 3
    assert all(s.status_code == "UNSET" for s in spans)
    assert all("gen_ai.response.finish_reasons" not in s.attributes for s in spans)
    assert all(s.attributes["gen_ai.response.time_to_first_chunk"] > 0 for s in spans)


async def _astreams(server: OpenAIServer) -> None:
    closed = await litellm.acompletion(**kwargs(server, stream=True))
    await closed.__anext__()
    await closed.aclose()
    server.script(Reply(disconnect_after=3))
    cut = await litellm.acompletion(**kwargs(server, stream=True))
    with pytest.raises(Exception):  # noqa: B017, PT011 - litellm's class varies by version
        async for _ in cut:
            pass


def test_async_closed_and_cut_streams(
    llm: LLMSetup, openai_server: OpenAIServer, span_capture: SpanCapture
) -> None:
    asyncio.run(_astreams(openai_server))
    closed, cut = llm_spans(span_capture)
    assert closed.status_code == "UNSET"
    assert cut.status_code == "ERROR"
    assert "error.type" in cut.attributes


def test_async_stream_keeps_litellms_plain_close(
    llm: LLMSetup, openai_server: OpenAIServer, span_capture: SpanCapture
) -> None:
    async def scenario() -> None:
        stream = await litellm.acompletion(**kwargs(openai_server, stream=True))
        await stream.__anext__()
        assert stream.close() is None  # a plain method in litellm: nothing to await
        assert len(llm_spans(span_capture)) == 1

    asyncio.run(scenario())
    (span,) = llm_spans(span_capture)
    assert span.status_code == "UNSET"


def azure_kwargs(server: OpenAIServer, **extra: Any) -> dict[str, Any]:
    """litellm's Azure route, which calls the OpenAI SDK's ``chat.completions.create`` (its
    OpenAI route posts below the SDK's resources): the case the duplicate guard exists for."""
    return {
        "model": "azure/gpt-4o-mini",
        "messages": MESSAGES,
        "api_base": f"http://127.0.0.1:{server.port}",
        "azure_ad_token": server.api_key,  # sent as Authorization: Bearer, as the server wants
        "api_version": "2024-10-21",
        "num_retries": 0,
        "max_retries": 0,
        **extra,
    }


async def _azure_async(server: OpenAIServer) -> None:
    await litellm.acompletion(**azure_kwargs(server))
    async for _ in await litellm.acompletion(**azure_kwargs(server, stream=True)):
        pass


def test_litellm_calling_the_openai_sdk_is_still_one_span(
    llm: LLMSetup, openai_server: OpenAIServer, span_capture: SpanCapture
) -> None:
    litellm.completion(**azure_kwargs(openai_server))
    list(litellm.completion(**azure_kwargs(openai_server, stream=True)))
    asyncio.run(_azure_async(openai_server))
    assert all("/openai/deployments/" in r.path for r in openai_server.requests)
    spans = llm_spans(span_capture)
    assert len(spans) == len(openai_server.requests) == 4
    assert {s.attributes["gen_ai.provider.name"] for s in spans} == {"azure.ai.openai"}
    assert [s.attributes.get("gen_ai.request.stream", False) for s in spans] == [
        False,
        True,
        False,
        True,
    ]
    durations = span_capture.metrics()["gen_ai.client.operation.duration"]
    assert histogram_totals(durations).count == 4


def test_calls_with_request_parameters_satisfy_their_conditional_attributes(
    llm: LLMSetup, openai_server: OpenAIServer, span_capture: SpanCapture
) -> None:
    # n, seed, an output format and a stream make attributes conditionally required; the
    # request bodies litellm really sent decide them.
    litellm.completion(
        **kwargs(openai_server, n=2, seed=5, response_format={"type": "json_object"})
    )
    for _ in litellm.completion(**kwargs(openai_server, stream=True)):
        pass
    checked = assert_genai_valid(
        span_capture,
        mode=llm.mode,  # type: ignore[arg-type]
        requests=openai_server.requests,
    )
    assert checked == 2


def test_the_instrumentation_scope_names_the_client_that_made_the_call(
    llm: LLMSetup, openai_server: OpenAIServer, span_capture: SpanCapture
) -> None:
    import openai

    from difytrace import llm_call

    litellm.completion(**kwargs(openai_server))
    sdk = openai.OpenAI(base_url=openai_server.base_url, api_key=openai_server.api_key)
    sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    sdk.close()
    with llm_call(provider="dify", model="qwen-max"):
        pass
    scopes = [s.scope_name for s in llm_spans(span_capture)]
    assert scopes == ["difytrace.llm.litellm", "difytrace.llm.openai", "difytrace.llm.manual"]
    assert {p.scope_name for p in span_capture.metrics()["gen_ai.client.operation.duration"]} == {
        "difytrace.llm"
    }
