"""The real OpenAI SDK against the fake server: one span per call, attributes, metrics, errors."""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator

import openai
import pydantic
import pytest
from opentelemetry import baggage, context, trace
from opentelemetry.sdk.trace import TracerProvider

from difytrace import bootstrap
from difytrace.instrumentation.llm.openai import OpenAIInstrumentor
from difytrace.settings import load_settings
from difytrace.testing import CapturedSpan, SpanCapture, histogram_totals, sum_value
from difytrace.testing.openai_server import OpenAIServer, Reply
from difytrace.testing.receiver import OTLPReceiver

from .conftest import LLMSetup

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}]


_CLIENTS: list[openai.OpenAI] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _CLIENTS:  # no socket left for the garbage collector to warn about
        _CLIENTS.pop().close()


def client(server: OpenAIServer, **kwargs: object) -> openai.OpenAI:
    options: dict[str, object] = {"max_retries": 0, "api_key": server.api_key, **kwargs}
    made = openai.OpenAI(base_url=server.base_url, **options)  # type: ignore[arg-type]
    _CLIENTS.append(made)
    return made


def llm_spans(capture: SpanCapture) -> list[CapturedSpan]:
    return [s for s in capture.spans() if "gen_ai.operation.name" in s.attributes]


def only_span(capture: SpanCapture) -> CapturedSpan:
    spans = llm_spans(capture)
    assert len(spans) == 1, [s.name for s in spans]
    return spans[0]


def test_chat_completion_span_metrics_cost_and_vendor_mapping(
    llm: LLMSetup, openai_server: OpenAIServer, span_capture: SpanCapture
) -> None:
    openai_server.script(Reply(usage={"prompt": 1000, "completion": 100, "cached": 400}))
    with trace.get_tracer("test").start_as_current_span("POST /chat") as parent:
        client(openai_server).chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            temperature=0.3,
            max_tokens=64,
            top_p=0.9,
            seed=7,
            stop=["END"],
            frequency_penalty=0.1,
            presence_penalty=0.2,
            n=1,
        )
    span = only_span(span_capture)
    a = span.attributes
    assert span.name == "chat gpt-4o-mini"
    assert span.kind == "CLIENT"
    assert span.parent_span_id == format(parent.get_span_context().span_id, "016x")
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.model"] == "gpt-4o-mini"
    assert a["gen_ai.request.temperature"] == 0.3
    assert a["gen_ai.request.max_tokens"] == 64
    assert a["gen_ai.request.seed"] == 7
    assert a["gen_ai.request.stop_sequences"] == ("END",)
    assert "gen_ai.request.choice.count" not in a  # n=1 is the default: not reported
    assert a["gen_ai.response.model"] == "gpt-4o-mini"
    assert a["gen_ai.response.id"].startswith("chatcmpl-")
    assert a["gen_ai.response.finish_reasons"] == ("stop",)
    assert a["gen_ai.usage.input_tokens"] == 1000
    assert a["gen_ai.usage.output_tokens"] == 100
    assert a["gen_ai.usage.cache_read.input_tokens"] == 400
    assert a["server.address"] == "127.0.0.1"
    assert a["server.port"] == openai_server.port
    assert "difytrace.gen_ai.usage.estimated" not in a
    # gpt-4o-mini: $0.15 / $0.075 cached / $0.60 per M tokens; cached tokens priced once.
    assert a["difytrace.gen_ai.usage.cost"] == pytest.approx(
        (600 * 0.15 + 400 * 0.075 + 100 * 0.6) / 1e6
    )
    assert a["langfuse.observation.type"] == "generation"
    assert a["langsmith.span.kind"] == "llm"
    assert json.loads(a["langfuse.observation.usage_details"]) == {
        "input": 600,
        "input_cached_tokens": 400,
        "output": 100,
        "total": 1100,
    }
    assert json.loads(a["langfuse.observation.cost_details"])["total"] == pytest.approx(
        a["difytrace.gen_ai.usage.cost"]
    )
    assert "gen_ai.input.messages" not in a
    assert "gen_ai.output.messages" not in a
    assert span.status_code == "UNSET"
    # rolled up onto the enclosing request span
    root = next(s for s in span_capture.spans() if s.name == "POST /chat")
    assert root.attributes["difytrace.gen_ai.rollup.calls"] == 1
    assert root.attributes["difytrace.gen_ai.rollup.input_tokens"] == 1000
    assert root.attributes["difytrace.gen_ai.rollup.cost"] == pytest.approx(
        a["difytrace.gen_ai.usage.cost"]
    )
    assert "difytrace.gen_ai.usage.cost" not in root.attributes
    metrics = span_capture.metrics()
    tokens = metrics["gen_ai.client.token.usage"]
    assert histogram_totals(tokens, {"gen_ai.token.type": "input"}).sum == 1000
    assert histogram_totals(tokens, {"gen_ai.token.type": "output"}).sum == 100
    duration = histogram_totals(
        metrics["gen_ai.client.operation.duration"], {"gen_ai.request.model": "gpt-4o-mini"}
    )
    assert duration.count == 1
    assert sum_value(metrics["difytrace.gen_ai.client.cost"]) == pytest.approx(
        a["difytrace.gen_ai.usage.cost"]
    )
    assert "gen_ai.client.operation.time_to_first_chunk" not in metrics


@pytest.mark.parametrize("include_usage", [True, False])
def test_stream_ends_when_exhausted_with_ttft_and_usage_or_estimate(
    llm: LLMSetup, openai_server: OpenAIServer, span_capture: SpanCapture, include_usage: bool
) -> None:
    openai_server.script(Reply(chunks=50, include_usage=include_usage))
    stream = client(openai_server).chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True
    )
    assert llm_spans(span_capture) == []  # still open while the stream is read
    chunks = list(stream)
    assert len(chunks) >= 52
    span = only_span(span_capture)
    a = span.attributes
    assert a["gen_ai.request.stream"] is True
    assert a["gen_ai.response.finish_reasons"] == ("stop",)
    assert 0 < a["gen_ai.response.time_to_first_chunk"] <= span.duration_s
    assert "langfuse.observation.completion_start_time" in a
    assert [name for name, _ in span.events] == ["difytrace.gen_ai.first_chunk"]
    if include_usage:
        assert a["gen_ai.usage.output_tokens"] == 50
        assert "difytrace.gen_ai.usage.estimated" not in a
    else:
        assert a["difytrace.gen_ai.usage.estimated"] is True
        assert a["gen_ai.usage.input_tokens"] > 0
        assert a["gen_ai.usage.output_tokens"] > 0
    ttfc = span_capture.metrics()["gen_ai.client.operation.time_to_first_chunk"]
    assert histogram_totals(ttfc).count == 1
    point = span_capture.metrics()["gen_ai.client.token.usage"][0]
    estimated = point.attributes.get("difytrace.gen_ai.usage.estimated")
    assert estimated == (None if include_usage else "true")


def test_stream_asking_for_usage_that_never_comes_estimates_a_token_a_chunk(
    llm: LLMSetup, openai_server: OpenAIServer, span_capture: SpanCapture
) -> None:
    # The call asks for the usage chunk, so the text of its chunks is not read; a server that
    # ignores stream_options still gets an estimate, flagged, of one token a chunk.
    openai_server.script(Reply(chunks=30, include_usage=False))
    stream = client(openai_server).chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream=True,  # type: ignore[arg-type]
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    a = only_span(span_capture).attributes
    assert a["difytrace.gen_ai.usage.estimated"] is True
    assert a["gen_ai.usage.output_tokens"] == len(chunks) == 32  # role, 30 texts, finish
    assert a["gen_ai.usage.input_tokens"] > 0
    assert a["gen_ai.response.finish_reasons"] == ("stop",)
    assert a["difytrace.gen_ai.usage.cost"] > 0


def test_tenant_and_app_from_baggage_label_the_metric_series(
    llm: LLMSetup, openai_server: OpenAIServer, span_capture: SpanCapture
) -> None:
    c = client(openai_server)
    for tenant in ("tenant-1", "tenant-2", "tenant-1", None):
        ctx = context.get_current()
        if tenant is not None:
            ctx = baggage.set_baggage("tenant.id", tenant, context=ctx)
            ctx = baggage.set_baggage("app.id", f"app-of-{tenant}", context=ctx)
        token = context.attach(ctx)
        try:
            c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
        finally:
            context.detach(token)
    metrics = span_capture.metrics()
    duration = metrics["gen_ai.client.operation.duration"]
    one = {"tenant.id": "tenant-1", "app.id": "app-of-tenant-1"}
    assert histogram_totals(duration, one).count == 2
    assert histogram_totals(duration, {"tenant.id": "tenant-2"}).count == 1
    assert histogram_totals(duration, {"app.id": "app-of-tenant-2"}).count == 1
    assert [p.count for p in duration if "tenant.id" not in p.attributes] == [1]
    tokens = metrics["gen_ai.client.token.usage"]
    assert histogram_totals(tokens, {**one, "gen_ai.token.type": "input"}).count == 2
    assert histogram_totals(tokens, {**one, "gen_ai.token.type": "output"}).count == 2
    per_call = only_span_cost(span_capture)
    cost = metrics["difytrace.gen_ai.client.cost"]
    assert sum_value(cost, one) == pytest.approx(2 * per_call)
    assert sum_value(cost, {"tenant.id": "tenant-2"}) == pytest.approx(per_call)
    assert sum_value(cost) == pytest.approx(4 * per_call)
    spans = llm_spans(span_capture)
    assert all("tenant.id" not in s.attributes for s in spans)  # metric labels, not span data


def only_span_cost(capture: SpanCapture) -> float:
    costs = {s.attributes["difytrace.gen_ai.usage.cost"] for s in llm_spans(capture)}
    assert len(costs) == 1  # the same reply to every call
    return float(costs.pop())


def test_tool_call_deltas(
    llm: LLMSetup, openai_server: OpenAIServer, span_capture: SpanCapture
) -> None:
    calls = [{"name": "get_weather", "arguments": '{"city": "Paris", "unit": "c"}'}]
    openai_server.script(Reply(tool_calls=calls), Reply(tool_calls=calls))
    c = client(openai_server)
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, tools=tools)  # type: ignore[arg-type]
    streamed = list(
        c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, tools=tools, stream=True)
    )  # type: ignore[arg-type]
    assert any(ch.choices and ch.choices[0].delta.tool_calls for ch in streamed)
    spans = llm_spans(span_capture)
    assert [s.attributes["gen_ai.response.finish_reasons"] for s in spans] == [
        ("tool_calls",),
        ("tool_calls",),
    ]


def test_tool_call_content_captured_when_enabled(
    llm_content: LLMSetup, openai_server: OpenAIServer, span_capture: SpanCapture
) -> None:
    calls = [{"name": "get_weather", "arguments": '{"city": "Paris"}'}]
    openai_server.script(Reply(tool_calls=calls, chunks=5))
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    list(
        client(openai_server).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, tools=tools, stream=True
        )
    )  # type: ignore[arg-type]
    a = only_span(span_capture).attributes
    out = json.loads(a["gen_ai.output.messages"])
    assert out == [
        {
            "role": "assistant",
            "finish_reason": "tool_calls",
            "parts": [
                {
                    "type": "tool_call",
                    "id": "call_0",
                    "name": "get_weather",
                    "arguments": '{"city": "Paris"}',
                }
            ],
        }
    ]
    assert json.loads(a["gen_ai.input.messages"])[1] == {
        "role": "user",
        "parts": [{"type": "text", "content": "Hi there"}],
    }
    assert json.loads(a["gen_ai.tool.definitions"])[0]["function"]["name"] == "get_weather"


def test_responses_api_plain_and_streamed(
    llm: LLMSetup, openai_server: OpenAIServer, span_capture: SpanCapture
) -> None:
    c = client(openai_server)
    c.responses.create(model="gpt-4o-mini", input="Hi", max_output_tokens=50)
    with c.responses.create(model="gpt-4o-mini", input="Hi", stream=True) as stream:
        events = [e.type for e in stream]
    assert events[0] == "response.created"
    assert events[-1] == "response.completed"
    plain, streamed = llm_spans(span_capture)
    for span in (plain, streamed):
        a = span.attributes
        assert a["gen_ai.response.id"].startswith("resp_")
        assert a["gen_ai.response.finish_reasons"] == ("stop",)
        assert a["gen_ai.usage.output_tokens"] == 8
        assert ("gen_ai.response.status" in a) == (llm.mode == "latest")
    assert plain.attributes["gen_ai.request.max_tokens"] == 50
    assert "gen_ai.response.time_to_first_chunk" in streamed.attributes


def test_embeddings(llm: LLMSetup, openai_server: OpenAIServer, span_capture: SpanCapture) -> None:
    c = client(openai_server)
    result = c.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    c.embeddings.create(model="text-embedding-3-small", input="a", encoding_format="float")
    assert len(result.data) == 2
    first, second = llm_spans(span_capture)
    assert first.name == "embeddings text-embedding-3-small"
    assert first.attributes["gen_ai.operation.name"] == "embeddings"
    assert first.attributes["gen_ai.embeddings.dimension.count"] == 8
    assert first.attributes["gen_ai.usage.input_tokens"] > 0
    assert "gen_ai.usage.output_tokens" not in first.attributes
    assert first.attributes["langsmith.span.kind"] == "embedding"
    assert second.attributes["gen_ai.request.encoding_formats"] == ("float",)


ERRORS = {
    "400": (Reply(status=400, message="bad request"), openai.BadRequestError),
    "429": (Reply(status=429, retry_after="0"), openai.RateLimitError),
    "500": (Reply(status=500), openai.InternalServerError),
}


@pytest.mark.parametrize("status", sorted(ERRORS))
def test_http_errors_end_the_span_in_error(
    llm: LLMSetup, openai_server: OpenAIServer, span_capture: SpanCapture, status: str
) -> None:
    reply, error = ERRORS[status]
    error_type = error.__name__
    openai_server.script(reply)
    with pytest.raises(error):
        client(openai_server).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    span = only_span(span_capture)
    assert span.status_code == "ERROR"
    assert span.attributes["error.type"] == error_type
    assert [name for name, _ in span.events] == ["exception"]
    points = span_capture.metrics()["gen_ai.client.operation.duration"]
    assert histogram_totals(points, {"error.type": error_type}).count == 1
    assert "gen_ai.client.token.usage" not in span_capture.metrics()


def test_retries_after_429_stay_one_span(
    llm: LLMSetup, openai_server: OpenAIServer, span_capture: SpanCapture
) -> None:
    openai_server.script(Reply(status=429, retry_after="0"))
    client(openai_server, max_retries=2).chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES
    )
    assert len(openai_server.requests) == 2
    assert only_span(span_capture).status_code == "UNSET"


WRONG_KEYS = {
    "short": "sk-wrong",  # too short for the sk- pattern: only the 401 message rule hides it
    "project": "sk-proj-" + "Zq7" * 16,
}


@pytest.mark.parametrize("shape", sorted(WRONG_KEYS))
def test_wrong_api_key_is_401_and_the_key_is_not_in_status(
    openai_server: OpenAIServer, otlp_receiver: OTLPReceiver, shape: str
) -> None:
    """What leaves the process (scrubbing exporter → OTLP/HTTP → receiver) holds the refused
    key nowhere: attributes, events (exception message and stacktrace), status."""
    key = WRONG_KEYS[shape]
    settings = load_settings({"OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.endpoint})
    provider = TracerProvider()
    provider.add_span_processor(bootstrap._batch_processor(settings))  # the production pipeline
    OpenAIInstrumentor().instrument(settings=settings, tracer_provider=provider)
    try:
        with pytest.raises(openai.AuthenticationError) as info:
            client(openai_server, api_key=key).chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES
            )
        provider.force_flush()
    finally:
        OpenAIInstrumentor().uninstrument()
        provider.shutdown()
    assert key in str(info.value)  # the server echoed it: the exception propagates untouched
    assert openai_server.requests[0].headers["authorization"] == f"Bearer {key}"
    (span,) = otlp_receiver.wait_for(name="chat gpt-4o-mini")
    assert span.status_code == "ERROR"
    assert span.status_description
    assert span.status_description.startswith("AuthenticationError: Error code: 401")
    assert span.attributes["error.type"] == "AuthenticationError"
    assert [name for name, _ in span.events] == ["exception"]
    assert "Incorrect API key provided" in span.events[0][1]["exception.message"]
    exported = repr((span.name, span.attributes, span.events, span.status_description))
    assert key not in exported
    assert key[: len(key) // 2] not in exported


def test_slow_first_byte_is_in_ttft(
    llm: LLMSetup, openai_server: OpenAIServer, span_capture: SpanCapture
) -> None:
    openai_server.script(Reply(first_byte_delay=0.2))
    list(
        client(openai_server).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True
        )
    )
    assert only_span(span_capture).attributes["gen_ai.response.time_to_first_chunk"] >= 0.19


def test_mid_stream_disconnect_fails_the_span(
    llm: LLMSetup, openai_server: OpenAIServer, span_capture: SpanCapture
) -> None:
    openai_server.script(Reply(disconnect_after=3))
    with pytest.raises(Exception) as info:  # noqa: PT011 - httpx or openai error, by version
        list(
            client(openai_server).chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, stream=True
            )
        )
    span = only_span(span_capture)
    assert span.status_code == "ERROR"
    assert span.attributes["error.type"] == type(info.value).__qualname__


def test_closed_with_and_abandoned_streams_end_their_spans(
    llm: LLMSetup, openai_server: OpenAIServer, span_capture: SpanCapture
) -> None:
    c = client(openai_server)
    closed = c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    next(iter(closed))
    closed.close()
    assert len(llm_spans(span_capture)) == 1
    with c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True) as s:
        next(iter(s))
    assert len(llm_spans(span_capture)) == 2
    abandoned = c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    next(iter(abandoned))
    del abandoned
    gc.collect()
    spans = llm_spans(span_capture)
    assert len(spans) == 3
    assert all(s.status_code == "UNSET" for s in spans)
    assert all("gen_ai.response.finish_reasons" not in s.attributes for s in spans)


async def _async_calls(server: OpenAIServer) -> None:
    c = openai.AsyncOpenAI(base_url=server.base_url, api_key=server.api_key, max_retries=0)
    await c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    stream = await c.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream=True,  # type: ignore[arg-type]
        stream_options={"include_usage": True},
    )
    async for _ in stream:
        pass
    closed = await c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)  # type: ignore[arg-type]
    async for _ in closed:
        break
    await closed.close()
    async with await c.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True
    ) as ctx:  # type: ignore[arg-type]
        async for _ in ctx:
            break
    await c.embeddings.create(model="text-embedding-3-small", input="x")
    server.script(Reply(status=500))
    with pytest.raises(openai.InternalServerError):
        await c.responses.create(model="gpt-4o-mini", input="x")
    await c.close()


def test_async_client(
    llm: LLMSetup, openai_server: OpenAIServer, span_capture: SpanCapture
) -> None:
    import asyncio

    asyncio.run(_async_calls(openai_server))
    spans = llm_spans(span_capture)
    assert [s.name for s in spans] == ["chat gpt-4o-mini"] * 4 + [
        "embeddings text-embedding-3-small",
        "chat gpt-4o-mini",
    ]
    assert spans[1].attributes["gen_ai.usage.output_tokens"] == 8
    assert spans[-1].status_code == "ERROR"


def test_uninstrument_removes_spans_and_instrument_is_idempotent(
    llm: LLMSetup, openai_server: OpenAIServer, span_capture: SpanCapture
) -> None:
    from difytrace.instrumentation.llm.openai import OpenAIInstrumentor

    OpenAIInstrumentor().instrument()  # already instrumented: a no-op
    c = client(openai_server)
    c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert len(llm_spans(span_capture)) == 1
    OpenAIInstrumentor().uninstrument()
    c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert len(llm_spans(span_capture)) == 1
    completions = openai.resources.chat.completions.Completions
    assert type(completions.__dict__["create"]).__name__ == "function"  # no wrapt wrapper left


class Weather(pydantic.BaseModel):
    city: str
    temp: int


WEATHER_JSON = '{"city": "Paris", "temp": 21}'


def test_structured_output_parse_is_one_span(
    llm: LLMSetup, openai_server: OpenAIServer, span_capture: SpanCapture
) -> None:
    """``parse()`` posts without ``create()``: chat and responses, each one span with usage."""
    openai_server.script(Reply(text=WEATHER_JSON), Reply(text=WEATHER_JSON))
    c = client(openai_server)
    chat = c.chat.completions.parse(model="gpt-4o-mini", messages=MESSAGES, response_format=Weather)
    resp = c.responses.parse(model="gpt-4o-mini", input="Weather?", text_format=Weather)
    assert chat.choices[0].message.parsed == Weather(city="Paris", temp=21)
    assert resp.output_parsed == Weather(city="Paris", temp=21)
    chat_span, resp_span = llm_spans(span_capture)
    assert chat_span.attributes["gen_ai.response.id"].startswith("chatcmpl-")
    assert resp_span.attributes["gen_ai.response.id"].startswith("resp_")
    for span in (chat_span, resp_span):
        assert span.name == "chat gpt-4o-mini"
        assert span.attributes["gen_ai.output.type"] == "json"
        assert span.attributes["gen_ai.usage.input_tokens"] > 0
        assert span.attributes["gen_ai.response.finish_reasons"] == ("stop",)
        assert span.status_code == "UNSET"
    durations = span_capture.metrics()["gen_ai.client.operation.duration"]
    assert histogram_totals(durations).count == 2


async def _async_parse(server: OpenAIServer) -> None:
    async with openai.AsyncOpenAI(
        base_url=server.base_url, api_key=server.api_key, max_retries=0
    ) as c:
        await c.chat.completions.parse(
            model="gpt-4o-mini", messages=MESSAGES, response_format=Weather
        )
        await c.responses.parse(model="gpt-4o-mini", input="Weather?", text_format=Weather)
        server.script(Reply(text="not json at all"))
        with pytest.raises(pydantic.ValidationError):
            await c.chat.completions.parse(
                model="gpt-4o-mini", messages=MESSAGES, response_format=Weather
            )


def test_async_structured_output_parse(
    llm: LLMSetup, openai_server: OpenAIServer, span_capture: SpanCapture
) -> None:
    import asyncio

    openai_server.script(Reply(text=WEATHER_JSON), Reply(text=WEATHER_JSON))
    asyncio.run(_async_parse(openai_server))
    spans = llm_spans(span_capture)
    assert [s.status_code for s in spans] == ["UNSET", "UNSET", "ERROR"]
    assert [s.attributes["gen_ai.output.type"] for s in spans] == ["json"] * 3
    assert spans[2].attributes["error.type"] == "ValidationError"


def test_responses_function_call_and_incomplete(
    llm: LLMSetup, openai_server: OpenAIServer, span_capture: SpanCapture
) -> None:
    calls = [{"name": "get_weather", "arguments": '{"city": "Paris"}'}]
    openai_server.script(
        Reply(tool_calls=calls),
        Reply(tool_calls=calls),
        Reply(finish_reason="length"),
        Reply(finish_reason="length"),
    )
    c = client(openai_server)
    assert c.responses.create(model="gpt-4o-mini", input="x").output[0].type == "function_call"
    list(c.responses.create(model="gpt-4o-mini", input="x", stream=True))
    assert c.responses.create(model="gpt-4o-mini", input="x").status == "incomplete"
    list(c.responses.create(model="gpt-4o-mini", input="x", stream=True))
    spans = llm_spans(span_capture)
    assert [s.attributes["gen_ai.response.finish_reasons"] for s in spans] == [
        ("tool_calls",),
        ("tool_calls",),
        ("length",),
        ("length",),
    ]
    statuses = [s.attributes.get("gen_ai.response.status") for s in spans]
    if llm.mode == "latest":
        assert statuses == ["completed", "completed", "incomplete", "incomplete"]
    else:
        assert statuses == [None] * 4
    assert all(s.status_code == "UNSET" for s in spans)  # incomplete is an answer, not an error
    assert "gen_ai.response.time_to_first_chunk" in spans[1].attributes  # argument deltas


def test_function_call_content_captured_when_enabled(
    llm_content: LLMSetup, openai_server: OpenAIServer, span_capture: SpanCapture
) -> None:
    calls = [{"name": "get_weather", "arguments": '{"city": "Paris"}'}]
    openai_server.script(Reply(tool_calls=calls))
    client(openai_server).responses.create(model="gpt-4o-mini", input="x")
    out = json.loads(only_span(span_capture).attributes["gen_ai.output.messages"])
    assert out[0]["parts"] == [
        {
            "type": "tool_call",
            "id": "call_0",
            "name": "get_weather",
            "arguments": '{"city": "Paris"}',
        }
    ]
