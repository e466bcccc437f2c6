"""0 lost, 0 duplicated: faults at every destination, a worker kill -9 mid-batch, a Redis crash.

Runs ``DIFYTRACE_CHAOS_RECORDS`` records (default 10,000, the issue's count; about 100-170 s on
a loaded 2-core machine, set it lower for a quick run) through three destinations — Langfuse
OTLP, LangSmith runs (which answers 409 and keeps nothing of a request re-sending a stored
run), a generic OTLP endpoint — while 15% of requests fail (503, 429 with Retry-After, answers
slower than the client timeout). The first worker runs alone and is killed with SIGKILL from
inside the destination while it holds one of that worker's requests (answered once the worker
is dead); Redis is SIGKILLed and restarted (AOF persistence) with records arriving meanwhile.
Afterwards every destination holds exactly the expected ids.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid

import pytest

from difytrace.ops_trace import outbox
from difytrace.ops_trace.config import Runtime
from difytrace.ops_trace.view import build_view
from difytrace.testing.vendors import FakeLangfuse, Fault, basic_auth
from tests.ops_trace.conftest import OpsEnv, OwnRedis, cleanup_redis, wait_until
from tests.ops_trace.factories import message, workflow

pytestmark = pytest.mark.integration

N = int(os.environ.get("DIFYTRACE_CHAOS_RECORDS", "10000"))
TENANTS = 5
FAULTS = (Fault(503), Fault(429, retry_after="1"), Fault(0, delay_s=0.8))


def _routes(fake_langfuse, fake_langsmith, sink) -> dict:
    tenants = {}
    for n in range(TENANTS):
        tenant = f"t{n}"
        pk, sk, key, token = (uuid.uuid4().hex for _ in range(4))
        fake_langfuse.add_project(pk, sk, tenant)
        fake_langsmith.credentials[key] = tenant
        sink.credentials[basic_auth("otlp", token)] = tenant
        tenants[tenant] = {
            "destinations": [
                {
                    "kind": "langfuse",
                    "host": fake_langfuse.endpoint,
                    "public_key": pk,
                    "secret_key": sk,
                },
                {"kind": "langsmith", "endpoint": fake_langsmith.endpoint, "api_key": key},
                {
                    "kind": "otlp",
                    "endpoint": sink.endpoint + "/api/public/otel/v1/traces",
                    "headers": {"Authorization": basic_auth("otlp", token)},
                },
            ]
        }
    return {"tenants": tenants}


def _records(start: int, stop: int) -> list:
    return [
        (workflow if i % 2 else message)(
            f"r{i}", f"t{i % TENANTS}", **({"nodes": 4} if i % 2 else {})
        )
        for i in range(start, stop)
    ]


def test_chaos_every_record_exactly_once_per_destination(
    tmp_path, own_redis: OwnRedis, fake_langfuse, fake_langsmith
) -> None:
    began = time.monotonic()
    own_redis.start()
    sink = FakeLangfuse().start()
    env = OpsEnv(tmp=tmp_path, broker_url=own_redis.url)
    env.extra.update(
        {
            "DIFYTRACE_OPS_TRACE_HTTP_TIMEOUT_MS": "500",
            "DIFYTRACE_OPS_TRACE_REDELIVER_AFTER": "8",
            "DIFYTRACE_OPS_TRACE_MAX_ATTEMPTS": "100",
        }
    )
    env.route(_routes(fake_langfuse, fake_langsmith, sink))
    for server in (fake_langfuse, fake_langsmith, sink):
        server.chaos(0.15, FAULTS, seed=hash(server.endpoint) % 1000)
    fake_langsmith.conflict_on_existing = True  # a re-sent run: 409, nothing of the request kept
    restarts = []
    try:
        victim = env.start_worker()  # alone at first: every request is one of its batches
        box = outbox.configure(env.settings())
        records = _records(0, N)
        third = N // 3

        # 1. kill -9 the worker while a request of its batch is held by the destination
        killed, fired = threading.Event(), threading.Lock()

        def kill_mid_request() -> None:
            if len(fake_langfuse.entities) > third // 2 and fired.acquire(blocking=False):
                os.kill(victim.pid, signal.SIGKILL)
                victim.wait(10)  # the request is answered only once its worker is dead
                killed.set()

        fake_langfuse.on_request = kill_mid_request
        for record in records[:third]:
            assert box.submit(record)
        wait_until(killed.is_set, 60, "the worker kill")
        fake_langfuse.on_request = None
        assert victim.returncode == -signal.SIGKILL
        env.start_workers(2)

        # 2. Redis crashes with records in flight; more records arrive while it is down
        for record in records[third : 2 * third]:
            assert box.submit(record)
        own_redis.kill()
        for record in records[2 * third :]:
            assert box.submit(record)  # held in the process's bounded buffer
        assert len(box.buffer) > 0
        own_redis.start()

        # 3. everything arrives exactly once; workers that died are restarted (a supervisor's job)
        expected_spans = {o.span_id for r in records for o in build_view(r).observations}
        expected_runs = {str(o.run_id) for r in records for o in build_view(r).observations}

        def all_there() -> bool:
            for proc in list(env.workers):
                if proc.poll() is not None and proc is not victim:
                    env.workers.remove(proc)
                    restarts.append(proc.returncode)
                    env.start_worker()
            return (
                len(fake_langfuse.entities) >= len(expected_spans)
                and len(sink.entities) >= len(expected_spans)
                and len(fake_langsmith.entities) >= len(expected_runs)
            )

        wait_until(all_there, 480, "every record at every destination")
        assert fake_langfuse.ids() == expected_spans
        assert sink.ids() == expected_spans
        assert fake_langsmith.ids() == expected_runs
        assert fake_langfuse.rejected == []
        assert sink.rejected == []
        runtime = Runtime(env.settings())
        wait_until(
            lambda: runtime.store.counts() == {"pending": 0, "retries": 0},
            60,
            "the outbox to drain",
        )
        resent = sum(s.rewrites.total() for s in (fake_langfuse, fake_langsmith, sink))
        conflicts = sum(1 for _, _, status, _ in fake_langsmith.requests if status == 409)
        print(
            f"\nchaos: {N} records x 3 destinations in {time.monotonic() - began:.0f} s, "
            f"0 lost, 0 duplicate ids; {resent} idempotent re-writes, {conflicts} LangSmith "
            f"409s resolved; worker restarts after the Redis crash: {len(restarts)}"
        )
    finally:
        sink.stop()
        env.stop_workers()
        outbox.shutdown(0)
        if own_redis.proc is not None and own_redis.proc.poll() is None:
            cleanup_redis(own_redis.url, env)
