"""Identity ids of a Flask request: extractor, allow-listed baggage, ``set_identity``."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping

import flask
import pytest
from opentelemetry import baggage, trace

from difytrace import _guard, bootstrap, semconv
from difytrace.instrumentation import identity
from difytrace.instrumentation.flask import FlaskInstrumentor
from difytrace.instrumentation.identity import set_identity, set_identity_extractor
from difytrace.settings import load_settings
from difytrace.testing import CapturedSpan, SpanCapture

tracer = trace.get_tracer("tests.flask.identity")


def from_query(request: flask.Request) -> Mapping[str, str]:
    """An extractor named by DIFYTRACE_IDENTITY_EXTRACTOR in a test below."""
    return {semconv.USER_ID: request.args.get("user", ""), "session.id": "s-1"}


def make_app() -> flask.Flask:
    app = flask.Flask("test_flask_identity")

    @app.get("/console/api/workspaces/<tenant_id>/apps/<app_id>")
    def app_detail(tenant_id: str, app_id: str) -> dict[str, object]:
        return {"baggage": dict(baggage.get_all())}

    @app.post("/v1/chat-messages")
    def service_api() -> dict[str, object]:
        before = dict(baggage.get_all())
        set_identity(user_id="u-1", tenant_id="t-1", app_id="a-1")
        with tracer.start_as_current_span("celery publish"):
            during = dict(baggage.get_all())
        return {"before": before, "after": during}

    return app


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    def start(env: dict[str, str]) -> flask.testing.FlaskClient:
        monkeypatch.setattr(bootstrap._STATE, "settings", load_settings(env))
        set_identity_extractor(None)
        instrumentor.instrument()
        return make_app().test_client()

    instrumentor = FlaskInstrumentor()
    yield start
    instrumentor.uninstrument()
    set_identity_extractor(None)


def server_span(capture: SpanCapture) -> CapturedSpan:
    (span,) = [s for s in capture.spans() if s.kind == "SERVER"]
    return span


def test_default_extractor_reads_route_and_headers(client, span_capture):
    response = client({}).get(
        "/console/api/workspaces/t-9/apps/a-9", headers={"X-User-Id": "u-9", "X-App-Id": "a-0"}
    )
    # The route's app_id wins over the header's.
    assert response.json == {"baggage": {"tenant.id": "t-9", "app.id": "a-9", "user.id": "u-9"}}
    attrs = server_span(span_capture).attributes
    assert (attrs[semconv.TENANT_ID], attrs[semconv.APP_ID], attrs[semconv.USER_ID]) == (
        "t-9",
        "a-9",
        "u-9",
    )


def test_baggage_allow_list_and_incoming_baggage(client, span_capture):
    response = client({"DIFYTRACE_BAGGAGE_KEYS": "tenant.id"}).get(
        "/console/api/workspaces/t-9/apps/a-9", headers={"baggage": "feature=beta"}
    )
    assert response.json == {"baggage": {"feature": "beta", "tenant.id": "t-9"}}
    assert server_span(span_capture).attributes[semconv.APP_ID] == "a-9"  # span: all ids


def test_set_identity_after_auth(client, span_capture):
    response = client({}).post("/v1/chat-messages")
    ids = {"user.id": "u-1", "tenant.id": "t-1", "app.id": "a-1"}
    assert response.json == {"before": {}, "after": ids}
    attrs = server_span(span_capture).attributes
    assert {k: attrs[k] for k in ids} == ids


def test_extractor_from_setting(client, span_capture):
    extractor = "tests.instrumentation.test_flask_identity:from_query"
    response = client({"DIFYTRACE_IDENTITY_EXTRACTOR": extractor}).get(
        "/console/api/workspaces/t-9/apps/a-9?user=" + "x" * 200
    )
    # The route's ids are the default extractor's: not used. Over-long ids are dropped.
    assert response.json == {"baggage": {}}
    attrs = server_span(span_capture).attributes
    assert attrs["session.id"] == "s-1"
    assert semconv.USER_ID not in attrs
    assert semconv.APP_ID not in attrs


def test_programmatic_extractor_wins(client, span_capture):
    start = client({"DIFYTRACE_IDENTITY_EXTRACTOR": "os.path:join"})
    set_identity_extractor(lambda request: {semconv.TENANT_ID: request.headers["X-Org"]})
    response = start.get("/console/api/workspaces/t-9/apps/a-9", headers={"X-Org": "org-3"})
    assert response.json == {"baggage": {"tenant.id": "org-3"}}


def test_failing_extractor_never_breaks_the_request(client, span_capture, monkeypatch, caplog):
    monkeypatch.setattr(_guard, "STRICT", False)
    monkeypatch.setattr(_guard, "_reported", set())
    start = client({})

    def broken(request: flask.Request) -> Mapping[str, str]:
        raise LookupError("extractor bug")

    set_identity_extractor(broken)
    with caplog.at_level(logging.WARNING, logger="difytrace"):
        response = start.get("/console/api/workspaces/t-9/apps/a-9")
    assert response.status_code == 200
    assert "identity extractor" in caplog.text
    assert semconv.TENANT_ID not in server_span(span_capture).attributes


def test_set_identity_outside_a_request_touches_the_current_span_only(span_capture):
    with tracer.start_as_current_span("job"):
        set_identity(user_id="u-2", app_id="")
        assert baggage.get_all() == {}
    (span,) = span_capture.spans()
    assert span.attributes == {semconv.USER_ID: "u-2"}
    set_identity()  # nothing to set, no span: a no-op


def test_clean_keeps_short_string_ids():
    assert identity.clean({"user.id": 42, "app.id": None, 3: "x", "": "y", "t": "z" * 129}) == {
        "user.id": "42"
    }
