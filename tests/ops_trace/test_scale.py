"""Scale out and broker outages: three workers on one queue (Redis, RabbitMQ); broker down."""

from __future__ import annotations

import uuid

import pytest

from difytrace.ops_trace import outbox
from difytrace.ops_trace.config import Runtime
from difytrace.ops_trace.view import build_view
from tests.ops_trace.conftest import REDIS_DB, OpsEnv, OwnRedis, cleanup_redis, wait_until
from tests.ops_trace.factories import message, workflow

pytestmark = pytest.mark.integration

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"


def _amqp_up() -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", 5672)) == 0


def _delete_amqp_queue(queue: str) -> None:
    from kombu import Connection

    with Connection(AMQP_URL, connect_timeout=3) as conn:
        conn.default_channel.queue_delete(queue)


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_three_workers_deliver_each_record_once(ops_env: OpsEnv, fake_langfuse, broker) -> None:
    if broker == "rabbitmq":
        if not _amqp_up():
            pytest.skip("RabbitMQ is not listening on 127.0.0.1:5672")
        ops_env.extra["DIFYTRACE_OPS_TRACE_BROKER_URL"] = AMQP_URL
        ops_env.extra["DIFYTRACE_OPS_TRACE_OUTBOX_URL"] = ops_env.broker_url
    ops_env.extra.update(
        {"DIFYTRACE_OPS_TRACE_BATCH_SIZE": "5", "DIFYTRACE_OPS_TRACE_REDELIVER_AFTER": "60"}
    )
    fake_langfuse.add_project("pk", "sk", "tenant-a")
    ops_env.route(
        {
            "default": [
                {
                    "kind": "langfuse",
                    "host": fake_langfuse.endpoint,
                    "public_key": "pk",
                    "secret_key": "sk",
                }
            ]
        }
    )
    try:
        workers = ops_env.start_workers(3)
        box = outbox.configure(ops_env.settings())
        records = [(workflow if i % 3 == 0 else message)(f"r-{i}") for i in range(300)]
        for record in records:
            assert box.submit(record)
        expected = {o.span_id for r in records for o in build_view(r).observations}
        wait_until(lambda: len(fake_langfuse.entities) >= len(expected), 90, "all entities")
        assert fake_langfuse.ids() == expected
        assert fake_langfuse.rewrites.total() == 0  # no record was delivered twice
        runtime = Runtime(ops_env.settings())
        wait_until(lambda: runtime.store.counts()["pending"] == 0, 30, "the outbox to drain")
        busy = [w for w in workers if "succeeded in" in w.log.read_text(errors="replace")]
        assert len(busy) >= 2  # the queue is shared, not owned by one worker
    finally:
        ops_env.stop_workers()
        if broker == "rabbitmq":
            _delete_amqp_queue(ops_env.queue)


def test_broker_down_at_submit_records_arrive_after_it_returns(
    tmp_path, own_redis: OwnRedis, fake_langfuse
) -> None:
    env = OpsEnv(tmp=tmp_path, broker_url=own_redis.url)  # nothing listens there yet
    fake_langfuse.add_project("pk", "sk", "tenant-a")
    env.route(
        {
            "default": [
                {
                    "kind": "langfuse",
                    "host": fake_langfuse.endpoint,
                    "public_key": "pk",
                    "secret_key": "sk",
                }
            ]
        }
    )
    try:
        box = outbox.configure(env.settings())
        records = [message(f"down-{i}") for i in range(100)]
        assert all(box.submit(r) for r in records)  # the request path never waits
        assert box.flush(0.5) is False  # nothing could be handed over
        own_redis.start()
        env.start_worker()
        expected = {o.span_id for r in records for o in build_view(r).observations}
        wait_until(lambda: fake_langfuse.ids() >= expected, 60, "records after the outage")
    finally:
        env.stop_workers()
        outbox.shutdown(0)
        cleanup_redis(own_redis.url, env)


def test_beyond_the_buffer_bound_records_are_dropped_and_counted(tmp_path, span_capture) -> None:
    env = OpsEnv(tmp=tmp_path, broker_url="redis://127.0.0.1:1/0")  # never reachable
    env.extra["DIFYTRACE_OPS_TRACE_BUFFER_SIZE"] = "20"
    try:
        box = outbox.configure(env.settings())
        accepted = [box.submit(message(f"m-{i}")) for i in range(30)]
        assert accepted.count(False) == 10
        points = span_capture.metrics()["difytrace.ops_trace.dropped"]
        assert {p.attributes["difytrace.ops_trace.reason"]: p.value for p in points} == {
            "buffer_full": 10
        }
    finally:
        outbox.shutdown(0)


def test_the_buffer_is_bounded_in_bytes_too(tmp_path, span_capture) -> None:
    """Large records while the broker is down: memory stays near the byte bound."""
    env = OpsEnv(tmp=tmp_path, broker_url="redis://127.0.0.1:1/0")  # never reachable
    env.extra["DIFYTRACE_OPS_TRACE_BUFFER_BYTES"] = str(1_000_000)
    try:
        box = outbox.configure(env.settings())
        big = [message(f"big-{i}", outputs="x" * 100_000) for i in range(12)]
        assert all(box.submit(r) for r in big)  # under the count bound; bytes not known yet
        wait_until(lambda: box.buffered_bytes >= 1_000_000, 20, "the waiting records serialised")
        assert box.submit(message("one-more", outputs="x" * 100_000)) is False
        assert box.buffered_bytes < 12 * 110_000  # the 12 accepted, nothing more
        points = span_capture.metrics()["difytrace.ops_trace.dropped"]
        assert {p.attributes["difytrace.ops_trace.reason"]: p.value for p in points} == {
            "buffer_full": 1
        }
    finally:
        outbox.shutdown(0)


def test_worker_on_unknown_redis_db_prefix_is_isolated() -> None:
    # Two deployments on one Redis never see each other's outbox: keys carry prefix and queue.
    a = Runtime(
        OpsEnv(
            tmp=None,
            broker_url=f"redis://127.0.0.1:6379/{REDIS_DB}",  # type: ignore[arg-type]
            queue=f"q{uuid.uuid4().hex[:6]}",
        ).settings()
    )
    b = Runtime(
        OpsEnv(
            tmp=None,
            broker_url=f"redis://127.0.0.1:6379/{REDIS_DB}",  # type: ignore[arg-type]
            queue=f"q{uuid.uuid4().hex[:6]}",
        ).settings()
    )
    assert a.store.rec_key != b.store.rec_key
