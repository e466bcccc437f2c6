"""Routing per tenant / app and isolation: 50 tenants, three destination kinds, one worker."""

from __future__ import annotations

import uuid

import pytest

from difytrace.exceptions import ConfigurationError
from difytrace.ops_trace import outbox
from difytrace.ops_trace.routing import LangfuseConfig, StaticResolver
from difytrace.ops_trace.view import build_view
from difytrace.testing.vendors import FakeLangfuse, basic_auth
from tests.ops_trace.conftest import OpsEnv, wait_until
from tests.ops_trace.factories import message, workflow

TENANTS = 50


def test_static_resolver_app_overrides_tenant_and_expands_env() -> None:
    doc = {
        "default": [{"kind": "otlp", "endpoint": "http://c:4318/v1/traces"}],
        "tenants": {
            "t1": {
                "destinations": [
                    {"kind": "langfuse", "public_key": "pk", "secret_key": "${LF_SECRET}"}
                ],
                "apps": {"a2": [{"kind": "langsmith", "api_key": "k"}]},
            }
        },
    }
    resolve = StaticResolver(doc, env={"LF_SECRET": "s3cret"})
    (lf,) = resolve("t1", "a1")
    assert isinstance(lf, LangfuseConfig)
    assert lf.secret_key.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(lf)
    assert "s3cret" not in lf.key
    assert [c.kind for c in resolve("t1", "a2")] == ["langsmith"]
    assert [c.kind for c in resolve("other", None)] == ["otlp"]
    with pytest.raises(ConfigurationError, match=r"tenants\.t1\.destinations"):
        StaticResolver({"tenants": {"t1": {"destinations": [{"kind": "nope"}]}}})


def test_same_config_same_key_other_credentials_other_key() -> None:
    a = LangfuseConfig(public_key="pk", secret_key="s1")
    assert a.key == LangfuseConfig(public_key="pk", secret_key="s1").key
    assert a.key != LangfuseConfig(public_key="pk", secret_key="s2").key


@pytest.mark.integration
def test_fifty_tenants_each_request_carries_only_its_own_data(
    ops_env: OpsEnv, fake_langfuse, fake_langsmith, runtime
) -> None:
    otlp_sink = FakeLangfuse().start()
    try:
        routes = {}
        for n in range(TENANTS):
            tenant = f"tenant-{n:02d}"
            pk, sk, ls_key, token = (uuid.uuid4().hex for _ in range(4))
            fake_langfuse.add_project(pk, sk, tenant)
            fake_langsmith.credentials[ls_key] = tenant
            otlp_sink.credentials[basic_auth("otlp", token)] = tenant
            routes[tenant] = {
                "destinations": [
                    {
                        "kind": "langfuse",
                        "host": fake_langfuse.endpoint,
                        "public_key": pk,
                        "secret_key": sk,
                    },
                    {
                        "kind": "langsmith",
                        "endpoint": fake_langsmith.endpoint,
                        "api_key": ls_key,
                        "project": tenant,
                    },
                    {
                        "kind": "otlp",
                        "endpoint": otlp_sink.endpoint + "/api/public/otel/v1/traces",
                        "headers": {"Authorization": basic_auth("otlp", token)},
                    },
                ]
            }
        ops_env.route({"tenants": routes})
        ops_env.start_worker()
        box = outbox.configure(ops_env.settings())
        views = {}
        for n in range(TENANTS):
            tenant = f"tenant-{n:02d}"
            # the same host record ids in every tenant: ids must still never collide
            for record in (workflow("run-1", tenant, nodes=4), message("msg-1", tenant)):
                assert box.submit(record)
                views.setdefault(tenant, []).append(build_view(record))
        assert box.submit(message("msg-x", "unrouted-tenant"))
        spans = {t: {o.span_id for v in vs for o in v.observations} for t, vs in views.items()}
        runs = {t: {str(o.run_id) for v in vs for o in v.observations} for t, vs in views.items()}
        total = sum(len(s) for s in spans.values())
        for server in (fake_langfuse, otlp_sink, fake_langsmith):
            wait_until(lambda s=server: len(s.entities) >= total, 60, "every entity")
        for tenant in views:
            assert fake_langfuse.ids(tenant) == spans[tenant]
            assert otlp_sink.ids(tenant) == spans[tenant]
            assert fake_langsmith.ids(tenant) == runs[tenant]
            assert {r["session_name"] for r in fake_langsmith.by_tenant()[tenant]} == {tenant}
            assert {e["attributes"]["tenant.id"] for e in fake_langfuse.by_tenant()[tenant]} == {
                tenant
            }
        assert len(fake_langfuse.entities) == total  # nothing else, nothing twice
        assert fake_langfuse.rejected == []
        assert otlp_sink.rejected == []
        assert all(status < 300 for _, _, status, _ in fake_langsmith.requests)
        wait_until(lambda: runtime.store.counts()["pending"] == 0, what="outbox to drain")
    finally:
        otlp_sink.stop()


@pytest.mark.integration
def test_generic_otlp_spans_decode_with_the_official_classes(ops_env, otlp_receiver) -> None:
    ops_env.route(
        {
            "default": [
                {
                    "kind": "otlp",
                    "endpoint": otlp_receiver.endpoint + "/v1/traces",
                    "headers": {"x-team": "ops"},
                }
            ]
        }
    )
    ops_env.start_worker()
    record = workflow("run-otlp", nodes=4)
    assert outbox.configure(ops_env.settings()).submit(record)
    view = build_view(record)
    otlp_receiver.wait_for(count=len(view.observations), timeout=20)
    spans = {s.span_id: s for s in otlp_receiver.spans()}
    assert set(spans) == {o.span_id for o in view.observations}
    llm = spans[next(o.span_id for o in view.observations if o.key == "node:n-llm-0")]
    assert llm.trace_id == view.trace_id
    assert llm.attributes["gen_ai.request.model"] == "gpt-4o"
    assert llm.attributes["gen_ai.usage.input_tokens"] == 10
    assert llm.attributes["gen_ai.operation.name"] == "chat"
    assert llm.attributes["tenant.id"] == "tenant-a"
    assert llm.resource["service.name"] == "difytrace-ops-trace"
    assert otlp_receiver.requests()[0].headers["x-team"] == "ops"
