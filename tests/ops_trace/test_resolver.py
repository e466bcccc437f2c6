"""The host's resolver (``DIFYTRACE_OPS_TRACE_RESOLVER=module:callable``) in a real worker."""

from __future__ import annotations

import textwrap

import pytest

from difytrace.exceptions import ConfigurationError
from difytrace.ops_trace import outbox
from difytrace.ops_trace.routing import Router, load_resolver
from difytrace.ops_trace.view import build_view
from tests.ops_trace.conftest import OpsEnv, wait_until
from tests.ops_trace.factories import message

RESOLVER = '''
import os

def resolve(tenant_id, app_id):
    """Destinations as a host app would read them from its database."""
    if tenant_id == "flaky" and not os.path.exists(os.environ["DB_UP_FILE"]):
        raise RuntimeError("database is down")
    if tenant_id == "unrouted":
        return []
    return [{
        "kind": "langfuse",
        "host": os.environ["LF_HOST"],
        "public_key": "pk-" + tenant_id,
        "secret_key": "sk-" + tenant_id + "-" + (app_id or ""),
    }]
'''


@pytest.mark.integration
def test_a_host_callable_routes_per_tenant_and_app(ops_env: OpsEnv, fake_langfuse, runtime) -> None:
    (ops_env.tmp / "host_routes.py").write_text(textwrap.dedent(RESOLVER))
    db_up = ops_env.tmp / "db-up"
    ops_env.extra.update(
        {
            "DIFYTRACE_OPS_TRACE_RESOLVER": "host_routes:resolve",
            "PYTHONPATH": str(ops_env.tmp),
            "LF_HOST": fake_langfuse.endpoint,
            "DB_UP_FILE": str(db_up),
        }
    )
    for tenant, app in (("t1", "app-1"), ("t1", "app-2"), ("t2", "app-1"), ("flaky", "app-1")):
        fake_langfuse.add_project(f"pk-{tenant}", f"sk-{tenant}-{app}", f"{tenant}/{app}")
    ops_env.start_worker()
    box = outbox.configure(ops_env.settings())
    flaky = message("m-flaky", "flaky")
    records = {
        "t1/app-1": message("m1", "t1", app="app-1"),
        "t1/app-2": message("m2", "t1", app="app-2"),
        "t2/app-1": message("m3", "t2", app="app-1"),
    }
    # the outbox sends its first record alone, then batches: flaky shares a message with others
    first, *rest = records.values()
    for record in (message("m-none", "unrouted"), first, flaky, *rest):
        assert box.submit(record)
    spans = {label: {o.span_id for o in build_view(r).observations} for label, r in records.items()}
    wait_until(
        lambda: all(fake_langfuse.ids(label) == ids for label, ids in spans.items()),
        30,
        "each record at the project its tenant and app resolve to",
    )
    # the resolver raised for one tenant: its record waits in the outbox, the rest went on
    wait_until(lambda: runtime.store.counts()["pending"] == 1, 20, "only the flaky record left")
    assert fake_langfuse.ids("flaky/app-1") == set()
    db_up.touch()  # the database is back: the sweeper re-sends, the resolver answers
    flaky_spans = {o.span_id for o in build_view(flaky).observations}
    wait_until(lambda: fake_langfuse.ids("flaky/app-1") == flaky_spans, 30, "the flaky record")
    wait_until(lambda: runtime.store.counts()["pending"] == 0, 20, "the outbox to drain")
    assert all(proc.poll() is None for proc in ops_env.workers)


def test_a_resolver_that_cannot_be_imported_is_named() -> None:
    with pytest.raises(ConfigurationError, match=r"DIFYTRACE_OPS_TRACE_RESOLVER='nope\.mod:fn'"):
        load_resolver("", "nope.mod:fn")


def test_a_resolver_answer_that_is_not_a_destination_is_named() -> None:
    router = Router(lambda tenant, app: [{"kind": "carrier-pigeon"}], timeout_s=1)
    with pytest.raises(ConfigurationError, match=r"resolver\('t1'\)"):
        router.resolve("t1", "a1")
    failing = Router(lambda tenant, app: 1 / 0, timeout_s=1)
    with pytest.raises(ConfigurationError, match="ZeroDivisionError"):
        failing.resolve("t1", "a1")


def test_destination_objects_are_kept_least_recently_used_first_out(monkeypatch) -> None:
    from difytrace.ops_trace import routing

    monkeypatch.setattr(routing, "MAX_DESTINATIONS", 2)
    router = Router(lambda tenant, app: [], timeout_s=1.0)
    a, b, c = (
        routing.parse_configs([{"kind": "otlp", "endpoint": f"http://{h}:4318/v1/traces"}], h)[0]
        for h in ("a", "b", "c")
    )
    first_a = router.destination(a)
    router.destination(b)
    assert router.destination(a) is first_a  # used again: now the most recent
    router.destination(c)  # over the cap: b, the least recently used, goes
    assert router.destination(a) is first_a
    assert len(router._built) == 2
    assert b.key not in router._built
