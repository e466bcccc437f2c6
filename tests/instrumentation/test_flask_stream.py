"""Streamed (server-sent events) responses: the span covers the whole stream.

The WSGI app is driven the way gunicorn drives it: call it, iterate the body, close it (early,
when the client went away).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import flask
import pytest
from opentelemetry import baggage, trace
from werkzeug.test import EnvironBuilder

from difytrace import semconv
from difytrace.instrumentation.flask import FlaskInstrumentor
from difytrace.instrumentation.identity import set_identity
from difytrace.testing import CapturedSpan, S, SpanCapture, assert_tree

tracer = trace.get_tracer("tests.flask.stream")


class Probe:
    """What the generator saw while it ran."""

    def __init__(self) -> None:
        self.started_ns = 0
        self.ended_ns = 0
        self.closed = False
        self.between_chunks: list[trace.Span] = []
        self.baggage: list[dict[str, object]] = []


def make_app(probe: Probe) -> flask.Flask:
    app = flask.Flask("test_flask_stream")

    @app.get("/apps/<app_id>/chat-messages")
    def chat(app_id: str) -> flask.Response:
        def events() -> Iterator[str]:
            probe.started_ns = time.time_ns()
            try:
                for i in range(3):
                    with tracer.start_as_current_span(f"llm chunk {i}"):
                        pass
                    probe.baggage.append(dict(baggage.get_all()))
                    if i == 0:
                        set_identity(user_id="end-user-7")
                    if flask.request.args.get("fail") == str(i):
                        raise ValueError("model went away")
                    yield f"data: {i}\n\n"
                probe.ended_ns = time.time_ns()
            finally:
                probe.closed = True

        return flask.Response(flask.stream_with_context(events()), mimetype="text/event-stream")

    @app.get("/plain-generator")
    def plain() -> flask.Response:
        def numbers() -> Iterator[str]:
            for i in range(2):
                yield str(i)

        return flask.Response(numbers())

    @app.get("/empty-stream")
    def empty() -> tuple[flask.Response, int]:
        return flask.Response(iter(())), 204

    return app


@pytest.fixture
def probe() -> Probe:
    return Probe()


@pytest.fixture
def app(probe: Probe) -> Iterator[flask.Flask]:
    instrumentor = FlaskInstrumentor()
    instrumentor.instrument()
    yield make_app(probe)
    instrumentor.uninstrument()


def call(app: flask.Flask, path: str, **headers: str) -> tuple[Any, list[str]]:
    status: list[str] = []

    def start_response(s: str, h: list[tuple[str, str]], exc_info: Any = None) -> Any:
        status.append(s)
        return lambda data: None

    environ = EnvironBuilder(path=path, headers=headers).get_environ()
    return app(environ, start_response), status


def server_span(capture: SpanCapture) -> CapturedSpan:
    (span,) = [s for s in capture.spans() if s.kind == "SERVER"]
    return span


def test_span_covers_the_whole_stream(app, probe, span_capture):
    body, status = call(app, "/apps/app-1/chat-messages")
    assert span_capture.spans() == []  # the view returned; the stream has not run yet
    assert trace.get_current_span() is trace.INVALID_SPAN
    chunks = []
    for chunk in body:
        chunks.append(chunk)
        # Between chunks the request's context is not current.
        assert trace.get_current_span() is trace.INVALID_SPAN
        assert baggage.get_all() == {}
    body.close()
    assert chunks == [b"data: 0\n\n", b"data: 1\n\n", b"data: 2\n\n"]
    assert status == ["200 OK"]
    span = assert_tree(
        span_capture.spans(),
        S(
            "GET /apps/<app_id>/chat-messages",
            kind="SERVER",
            status="UNSET",
            children=[S(f"llm chunk {i}") for i in range(3)],
        ),
    )
    assert span.start_time_ns <= probe.started_ns
    assert span.end_time_ns >= probe.ended_ns > 0
    assert span.attributes[semconv.HTTP_STREAM] is True
    assert span.attributes[semconv.HTTP_STREAM_CHUNKS] == 3
    assert span.attributes[semconv.HTTP_STREAM_DISCONNECTED] is False
    ttfb = span.attributes[semconv.HTTP_TIME_TO_FIRST_BYTE]
    assert 0 < ttfb <= span.duration_s
    assert span.attributes[semconv.HTTP_RESPONSE_STATUS_CODE] == 200


def test_stream_metrics(app, span_capture):
    body, _ = call(app, "/apps/app-1/chat-messages")
    list(body)
    body.close()
    span = server_span(span_capture)
    found = span_capture.metrics()
    (stream,) = found[semconv.HTTP_STREAM_DURATION.name]
    assert stream.attributes == {
        semconv.HTTP_REQUEST_METHOD: "GET",
        semconv.HTTP_ROUTE: "/apps/<app_id>/chat-messages",
        semconv.HTTP_RESPONSE_STATUS_CODE: 200,
    }
    assert stream.count == 1
    ttfb = span.attributes[semconv.HTTP_TIME_TO_FIRST_BYTE]
    assert stream.sum == pytest.approx(span.duration_s - ttfb, abs=1e-6)
    (total,) = found[semconv.HTTP_SERVER_DURATION.name]
    assert total.sum == pytest.approx(span.duration_s)


def test_client_disconnect_closes_the_generator_and_ends_the_span(app, probe, span_capture):
    body, _ = call(app, "/apps/app-1/chat-messages")
    assert next(body) == b"data: 0\n\n"
    assert span_capture.spans()[-1].name == "llm chunk 0"
    body.close()  # what gunicorn does when the client has gone
    assert probe.closed
    span = server_span(span_capture)
    assert span.attributes[semconv.HTTP_STREAM_DISCONNECTED] is True
    assert span.attributes[semconv.HTTP_STREAM_CHUNKS] == 1
    assert span.status_code == "UNSET"
    body.close()  # closing twice is harmless
    assert len([s for s in span_capture.spans() if s.kind == "SERVER"]) == 1


def test_exception_mid_stream_is_an_error(app, probe, span_capture):
    body, _ = call(app, "/apps/app-1/chat-messages?fail=1")
    assert next(body) == b"data: 0\n\n"
    with pytest.raises(ValueError, match="model went away"):
        next(body)
    body.close()
    span = [s for s in span_capture.spans() if s.kind == "SERVER"][-1]
    assert span.status_code == "ERROR"
    assert span.attributes[semconv.ERROR_TYPE] == "ValueError"
    assert span.attributes[semconv.HTTP_STREAM_CHUNKS] == 1
    assert [name for name, _ in span.events] == ["exception"]
    assert probe.closed


def test_identity_reaches_the_stream_and_set_identity_updates_it(app, probe, span_capture):
    body, _ = call(app, "/apps/app-1/chat-messages", **{"X-Tenant-Id": "tenant-9"})
    list(body)
    body.close()
    assert probe.baggage[0] == {"app.id": "app-1", "tenant.id": "tenant-9"}
    # set_identity inside the first chunk: the later chunks carry the user too.
    assert (
        probe.baggage[1]
        == probe.baggage[2]
        == {"app.id": "app-1", "tenant.id": "tenant-9", "user.id": "end-user-7"}
    )
    span = server_span(span_capture)
    assert span.attributes[semconv.USER_ID] == "end-user-7"
    assert span.attributes[semconv.TENANT_ID] == "tenant-9"


def test_generator_without_stream_with_context(app, span_capture):
    body, _ = call(app, "/plain-generator")
    assert list(body) == [b"0", b"1"]
    body.close()
    span = server_span(span_capture)
    assert span.name == "GET /plain-generator"
    assert span.attributes[semconv.HTTP_STREAM_CHUNKS] == 2


def test_empty_stream_ends_without_first_byte(app, span_capture):
    body, status = call(app, "/empty-stream")
    assert list(body) == []
    body.close()
    assert status == ["204 NO CONTENT"]
    span = server_span(span_capture)
    assert span.attributes[semconv.HTTP_STREAM_CHUNKS] == 0
    assert semconv.HTTP_TIME_TO_FIRST_BYTE not in span.attributes
    assert semconv.HTTP_STREAM_DURATION.name not in span_capture.metrics()


def test_buffered_response_is_not_a_stream(app, span_capture):
    body, _ = call(app, "/nowhere")
    # Ended as soon as Flask returned: the body (an error page) is in memory.
    assert server_span(span_capture).name == "GET"
    assert semconv.HTTP_STREAM not in server_span(span_capture).attributes
    list(body)
    body.close()


def test_server_file_wrapper_is_passed_through_for_sendfile(app, span_capture):
    from io import BytesIO

    from werkzeug.wsgi import FileWrapper

    @app.get("/download")
    def download() -> flask.Response:
        return flask.send_file(BytesIO(b"x" * 10), mimetype="text/plain")

    environ = EnvironBuilder(path="/download").get_environ()
    environ["wsgi.file_wrapper"] = FileWrapper
    body = app(environ, lambda status, headers, exc_info=None: None)
    assert isinstance(body, FileWrapper)  # the server can still use sendfile()
    assert server_span(span_capture).name == "GET /download"
    body.close()


def test_head_of_a_stream_and_the_test_client(app, probe, span_capture):
    response = app.test_client().head("/apps/app-1/chat-messages")
    assert response.status_code == 200
    response.close()
    span = server_span(span_capture)
    assert span.attributes[semconv.HTTP_STREAM_CHUNKS] == 0
    assert probe.started_ns == 0  # HEAD: the generator never ran

    span_capture.clear()
    streamed = app.test_client().get("/apps/app-1/chat-messages")
    assert streamed.data == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"
    streamed.close()
    assert server_span(span_capture).attributes[semconv.HTTP_STREAM_CHUNKS] == 3


def test_span_open_across_yields_stays_the_parent_in_later_chunks(app, span_capture):
    @app.get("/llm-stream")
    def llm_stream() -> flask.Response:
        def tokens() -> Iterator[str]:
            with tracer.start_as_current_span("llm stream"):
                for i in range(3):
                    with tracer.start_as_current_span(f"token {i}"):
                        pass
                    yield f"data: {i}\n\n"
            with tracer.start_as_current_span("after llm"):
                pass

        return flask.Response(flask.stream_with_context(tokens()), mimetype="text/event-stream")

    body, _ = call(app, "/llm-stream")
    for _ in body:
        assert trace.get_current_span() is trace.INVALID_SPAN
    body.close()
    assert_tree(
        span_capture.spans(),
        S(
            "GET /llm-stream",
            children=[
                S("llm stream", children=[S(f"token {i}") for i in range(3)], exact=True),
                S("after llm"),
            ],
            exact=True,
        ),
    )
