"""The Flask instrumentation on a real Flask app, in process: server spans, errors, metrics."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterator

import flask
import pytest
from opentelemetry import metrics, trace
from werkzeug.exceptions import InternalServerError

from difytrace import semconv
from difytrace.instrumentation.flask import FlaskInstrumentor
from difytrace.testing import S, SpanCapture, assert_tree

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"
tracer = trace.get_tracer("tests.flask")


@pytest.fixture
def instrumented() -> Iterator[FlaskInstrumentor]:
    instrumentor = FlaskInstrumentor()
    instrumentor.instrument()
    yield instrumentor
    instrumentor.uninstrument()


def make_app() -> flask.Flask:
    app = flask.Flask("test_flask")

    @app.post("/apps/<uuid:app_id>/chat")
    def chat(app_id: object) -> dict[str, str]:
        with tracer.start_as_current_span("llm call"):
            pass
        return {"answer": "hi"}

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("view failed")

    @app.get("/handled")
    def handled() -> str:
        raise KeyError("missing")

    @app.errorhandler(KeyError)
    def on_key_error(exc: KeyError) -> tuple[str, int]:
        return "handled", 409

    @app.get("/forbidden")
    def forbidden() -> str:
        flask.abort(403)

    @app.get("/unavailable")
    def unavailable() -> tuple[str, int]:
        return "later", 503

    return app


@pytest.fixture
def client(instrumented: FlaskInstrumentor) -> flask.testing.FlaskClient:
    return make_app().test_client()


def server_span(capture: SpanCapture) -> object:
    (span,) = [s for s in capture.spans() if s.kind == "SERVER"]
    return span


def test_route_template_names_the_span_and_children_nest(client, span_capture):
    response = client.post(
        "/apps/3fa85f64-5717-4562-b3fc-2c963f66afa6/chat?token=secret",
        headers={"User-Agent": "pytest-ua", "Host": "api.example.com:8443"},
        environ_base={"REMOTE_ADDR": "10.1.2.3"},
    )
    assert response.status_code == 200
    span = assert_tree(
        span_capture.spans(),
        S(
            "POST /apps/<uuid:app_id>/chat",
            kind="SERVER",
            status="UNSET",
            children=[S("llm call", kind="INTERNAL")],
        ),
    )
    assert span.attributes == {
        semconv.HTTP_REQUEST_METHOD: "POST",
        semconv.HTTP_ROUTE: "/apps/<uuid:app_id>/chat",
        semconv.HTTP_RESPONSE_STATUS_CODE: 200,
        semconv.URL_PATH: "/apps/3fa85f64-5717-4562-b3fc-2c963f66afa6/chat",
        semconv.URL_SCHEME: "http",
        semconv.SERVER_ADDRESS: "api.example.com",
        semconv.SERVER_PORT: 8443,
        semconv.CLIENT_ADDRESS: "10.1.2.3",
        semconv.USER_AGENT_ORIGINAL: "pytest-ua",
        semconv.NETWORK_PROTOCOL_VERSION: "1.1",
        semconv.APP_ID: "3fa85f64-5717-4562-b3fc-2c963f66afa6",
    }
    assert span.parent_span_id is None
    assert span.scope_name == "difytrace.flask"


def test_no_route_is_named_by_method_alone(client, span_capture):
    assert client.get("/nowhere").status_code == 404
    assert client.put("/boom").status_code == 405
    spans = span_capture.spans()
    assert [s.name for s in spans] == ["GET", "PUT"]
    assert all(semconv.HTTP_ROUTE not in s.attributes for s in spans)
    assert [s.attributes[semconv.ERROR_TYPE] for s in spans] == ["404", "405"]
    assert [s.status_code for s in spans] == ["UNSET", "UNSET"]


def test_unknown_method_is_other(client, span_capture):
    client.open("/boom", method="PURGE")
    span = server_span(span_capture)
    assert span.name == "HTTP"
    assert span.attributes[semconv.HTTP_REQUEST_METHOD] == "_OTHER"
    assert span.attributes[semconv.HTTP_REQUEST_METHOD_ORIGINAL] == "PURGE"


def test_unhandled_exception_is_an_error_and_flask_still_answers_500(client, span_capture, caplog):
    with caplog.at_level(logging.ERROR, logger="test_flask"):
        response = client.get("/boom")
    assert response.status_code == 500
    assert "Exception on /boom [GET]" in caplog.text  # Flask's own logging still happens
    span = server_span(span_capture)
    assert span.status_code == "ERROR"
    assert span.status_description == "RuntimeError: view failed"
    assert span.attributes[semconv.ERROR_TYPE] == "RuntimeError"
    assert span.attributes[semconv.HTTP_RESPONSE_STATUS_CODE] == 500
    ((event, attrs),) = span.events
    assert event == "exception"
    assert attrs["exception.type"] == "RuntimeError"


def test_propagated_exception_reaches_the_caller_untouched(instrumented, span_capture):
    app = make_app()
    app.testing = True  # PROPAGATE_EXCEPTIONS: the exception leaves wsgi_app
    with pytest.raises(RuntimeError, match="view failed"):
        app.test_client().get("/boom")
    span = server_span(span_capture)
    assert span.status_code == "ERROR"
    assert span.attributes[semconv.ERROR_TYPE] == "RuntimeError"
    assert semconv.HTTP_RESPONSE_STATUS_CODE not in span.attributes
    assert [name for name, _ in span.events] == ["exception"]


def test_500_handler_keeps_its_response_and_the_error(instrumented, span_capture):
    app = make_app()

    @app.errorhandler(InternalServerError)
    def on_500(exc: InternalServerError) -> tuple[dict[str, str], int]:
        return {"error": type(exc.original_exception).__name__}, 500

    response = app.test_client().get("/boom")
    assert response.json == {"error": "RuntimeError"}
    span = server_span(span_capture)
    assert span.status_code == "ERROR"
    assert span.attributes[semconv.ERROR_TYPE] == "RuntimeError"


def test_handled_error_and_abort_are_not_span_errors(client, span_capture):
    assert client.get("/handled").status_code == 409
    assert client.get("/forbidden").status_code == 403
    handled, forbidden = span_capture.spans()
    for span, code in ((handled, 409), (forbidden, 403)):
        assert span.status_code == "UNSET"
        assert span.attributes[semconv.ERROR_TYPE] == str(code)
        assert span.attributes[semconv.HTTP_RESPONSE_STATUS_CODE] == code
        assert span.events == []


def test_5xx_response_without_exception_is_an_error(client, span_capture):
    assert client.get("/unavailable").status_code == 503
    span = server_span(span_capture)
    assert span.status_code == "ERROR"
    assert span.attributes[semconv.ERROR_TYPE] == "503"


def test_incoming_traceparent_is_continued(client, span_capture):
    client.post(
        "/apps/3fa85f64-5717-4562-b3fc-2c963f66afa6/chat",
        headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"},
    )
    span = server_span(span_capture)
    assert (span.trace_id, span.parent_span_id) == (TRACE_ID, PARENT_ID)
    (child,) = [s for s in span_capture.spans() if s.name == "llm call"]
    assert (child.trace_id, child.parent_span_id) == (TRACE_ID, span.span_id)


def test_forwarded_for_and_proxy_fix(instrumented, span_capture):
    from werkzeug.middleware.proxy_fix import ProxyFix

    app = make_app()
    headers = {
        "X-Forwarded-For": "203.0.113.9, 10.0.0.1",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "public.example.com",
    }
    app.test_client().get("/unavailable", headers=headers)
    plain = server_span(span_capture)
    assert plain.attributes[semconv.CLIENT_ADDRESS] == "203.0.113.9"
    assert plain.attributes[semconv.URL_SCHEME] == "http"

    span_capture.clear()
    # Wrapped after the class was patched, as Dify's ext_proxy_fix does: the span still
    # starts outside the middleware, and what ProxyFix rewrote is read at the end.
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1)  # type: ignore[method-assign]
    app.test_client().get("/unavailable", headers=headers)
    fixed = server_span(span_capture)
    assert fixed.attributes[semconv.CLIENT_ADDRESS] == "10.0.0.1"
    assert fixed.attributes[semconv.URL_SCHEME] == "https"
    assert fixed.attributes[semconv.SERVER_ADDRESS] == "public.example.com"
    assert fixed.attributes[semconv.SERVER_PORT] == 443


def test_duration_metric(client, span_capture):
    client.post("/apps/3fa85f64-5717-4562-b3fc-2c963f66afa6/chat")
    client.get("/boom")
    client.get("/forbidden")
    points = {
        (p.attributes.get(semconv.HTTP_ROUTE), p.attributes.get(semconv.ERROR_TYPE)): p
        for p in span_capture.metrics()[semconv.HTTP_SERVER_DURATION.name]
    }
    assert set(points) == {
        ("/apps/<uuid:app_id>/chat", None),
        ("/boom", "RuntimeError"),
        ("/forbidden", "403"),
    }
    chat = points[("/apps/<uuid:app_id>/chat", None)]
    assert chat.attributes == {
        semconv.HTTP_REQUEST_METHOD: "POST",
        semconv.HTTP_ROUTE: "/apps/<uuid:app_id>/chat",
        semconv.HTTP_RESPONSE_STATUS_CODE: 200,
        semconv.URL_SCHEME: "http",
    }
    assert chat.count == 1
    assert chat.unit == "s"
    assert chat.sum == pytest.approx(server_span_duration(span_capture, "POST"))
    if (
        "explicit_bucket_boundaries_advisory"
        in inspect.signature(metrics.get_meter("x").create_histogram).parameters
    ):
        assert chat.explicit_bounds == semconv.HTTP_DURATION_BUCKETS_S


def server_span_duration(capture: SpanCapture, method: str) -> float:
    (span,) = [s for s in capture.spans() if s.name.startswith(method + " ")]
    return span.duration_s


def test_metrics_disabled_records_no_metric(monkeypatch, span_capture):
    from difytrace import bootstrap
    from difytrace.settings import load_settings

    monkeypatch.setattr(bootstrap._STATE, "settings", load_settings({"DIFYTRACE_METRICS": "0"}))
    instrumentor = FlaskInstrumentor()
    instrumentor.instrument()
    try:
        make_app().test_client().get("/forbidden")
    finally:
        instrumentor.uninstrument()
    assert len(span_capture.spans()) == 1
    assert semconv.HTTP_SERVER_DURATION.name not in span_capture.metrics()


def test_instrument_and_uninstrument_twice(span_capture):
    original_call = flask.Flask.__call__
    original_dispatch = flask.Flask.full_dispatch_request
    app = make_app()  # created before instrumenting: still covered (class-level patch)
    instrumentor = FlaskInstrumentor()
    instrumentor.instrument()
    instrumentor.instrument()
    app.test_client().get("/forbidden")
    assert len(span_capture.spans()) == 1  # one span, not two
    instrumentor.uninstrument()
    instrumentor.uninstrument()
    assert flask.Flask.__call__ is original_call
    assert flask.Flask.full_dispatch_request is original_dispatch
    app.test_client().get("/forbidden")
    assert len(span_capture.spans()) == 1
    instrumentor.instrument()
    try:
        app.test_client().get("/forbidden")
    finally:
        instrumentor.uninstrument()
    assert len(span_capture.spans()) == 2


def test_subclass_and_instrumentation_dependencies(instrumented, span_capture):
    class DifyApp(flask.Flask):
        pass

    app = DifyApp("dify")
    app.add_url_rule("/console/api/ping", view_func=lambda: "pong")
    assert app.test_client().get("/console/api/ping").text == "pong"
    assert server_span(span_capture).name == "GET /console/api/ping"
    assert tuple(instrumented.instrumentation_dependencies()) == ("flask >= 3.0",)


def test_app_instrumented_by_contrib_gets_one_server_span(instrumented, span_capture):
    contrib = pytest.importorskip("opentelemetry.instrumentation.flask")
    ContribInstrumentor = contrib.FlaskInstrumentor

    app = make_app()
    ContribInstrumentor.instrument_app(app)  # what Dify's ext_otel does
    try:
        app.test_client().get("/forbidden")
    finally:
        ContribInstrumentor.uninstrument_app(app)
    (span,) = span_capture.spans()
    assert span.scope_name == "opentelemetry.instrumentation.flask"


@pytest.mark.parametrize(
    ("host", "address", "port"),
    [("[::1]:8080", "::1", 8080), ("[::1]", "::1", 80), ("example.com", "example.com", 80)],
)
def test_server_address_from_host_header(client, span_capture, host, address, port):
    client.get("/forbidden", headers={"Host": host})
    attrs = server_span(span_capture).attributes
    assert (attrs[semconv.SERVER_ADDRESS], attrs[semconv.SERVER_PORT]) == (address, port)


def test_non_ascii_path_is_utf8(client, span_capture):
    client.get("/süß")
    assert server_span(span_capture).attributes[semconv.URL_PATH] == "/süß"


def test_internal_error_falls_back_to_the_plain_app(client, span_capture, monkeypatch, caplog):
    from difytrace import _guard
    from difytrace.instrumentation import wsgi_environ

    def broken(environ: object, method: str) -> dict[str, object]:
        raise RuntimeError("difytrace bug")

    monkeypatch.setattr(_guard, "STRICT", False)
    monkeypatch.setattr(_guard, "_reported", set())
    monkeypatch.setattr(wsgi_environ, "request_attributes", broken)
    with caplog.at_level(logging.WARNING, logger="difytrace"):
        response = client.post("/apps/3fa85f64-5717-4562-b3fc-2c963f66afa6/chat")
    assert response.json == {"answer": "hi"}
    assert "difytrace internal error in flask request start" in caplog.text
    assert [s.name for s in span_capture.spans()] == ["llm call"]
