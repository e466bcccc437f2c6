"""submit() in this process → Redis outbox + queue → a real worker → fake Langfuse (OTLP)."""

from __future__ import annotations

import pytest

from difytrace.ops_trace import outbox
from difytrace.ops_trace.view import build_view
from tests.ops_trace.conftest import OpsEnv, wait_until
from tests.ops_trace.factories import message, workflow

pytestmark = pytest.mark.integration


def _langfuse_routes(
    ops_env: OpsEnv, server: object, tenants: dict[str, tuple[str, str]], api: str = "otlp"
) -> None:
    ops_env.route(
        {
            "tenants": {
                tenant: {
                    "destinations": [
                        {
                            "kind": "langfuse",
                            "host": server.endpoint,  # type: ignore[attr-defined]
                            "public_key": pk,
                            "secret_key": sk,
                            "api": api,
                        }
                    ]
                }
                for tenant, (pk, sk) in tenants.items()
            }
        }
    )


@pytest.mark.parametrize("api", ["otlp", "ingestion"])
def test_records_reach_langfuse_as_one_tree_each(ops_env, fake_langfuse, runtime, api) -> None:
    fake_langfuse.add_project("pk-a", "sk-a", "tenant-a")
    _langfuse_routes(ops_env, fake_langfuse, {"tenant-a": ("pk-a", "sk-a")}, api)
    ops_env.start_worker()
    box = outbox.configure(ops_env.settings())
    records = [workflow(f"run-{i}") for i in range(5)] + [message(f"msg-{i}") for i in range(5)]
    for record in records:
        assert box.submit(record)
    expected = {o.span_id for r in records for o in build_view(r).observations}
    if api == "ingestion":
        expected |= {"trace:" + build_view(r).trace_id for r in records}
    wait_until(lambda: fake_langfuse.ids("tenant-a") >= expected, what="every observation")
    assert fake_langfuse.ids() == expected
    assert fake_langfuse.rejected == []
    wait_until(lambda: runtime.store.counts()["pending"] == 0, what="the outbox to drain")
    if api == "otlp":
        _check_otlp_shape(fake_langfuse, records[0])


def _check_otlp_shape(server, record) -> None:
    view = build_view(record)
    stored = {sid: w.entity for (_, sid), w in server.entities.items()}
    root = stored[view.observations[0].span_id]
    assert root["parent"] is None
    assert root["trace_id"] == view.trace_id
    attrs = root["attributes"]
    assert attrs["langfuse.trace.name"] == "my workflow"
    assert attrs["user.id"] == "u-1"
    assert attrs["session.id"] == "conv-1"
    assert attrs["langfuse.version"] == "3"
    assert attrs["langfuse.observation.type"] == "chain"
    llm = next(o for o in view.observations if o.key == "node:n-llm-0")
    llm_attrs = stored[llm.span_id]["attributes"]
    assert llm_attrs["langfuse.observation.type"] == "generation"
    assert llm_attrs["langfuse.observation.model.name"] == "gpt-4o"
    assert llm_attrs["langfuse.observation.usage_details"] == '{"input":10,"output":5,"total":15}'
    iteration = next(o for o in view.observations if o.key == "node:n-iter")
    assert stored[llm.span_id]["parent"] == iteration.span_id
