"""Retries by error class, Retry-After, bisection, dead letters: the deliverer in process."""

from __future__ import annotations

import json
import random
import socket
import time

import pytest

from difytrace.ops_trace.config import Runtime
from difytrace.ops_trace.delivery import Deliverer
from difytrace.ops_trace.dlq import DeadLetters
from difytrace.ops_trace.routing import Router, load_resolver
from difytrace.ops_trace.store import RetryEntry
from difytrace.ops_trace.view import build_view
from tests.ops_trace.conftest import OpsEnv
from tests.ops_trace.factories import message, workflow


def _deliverer(
    ops_env: OpsEnv, destination: dict, *, timeout_s: float = 10.0, **extra: str
) -> Deliverer:
    # A generous timeout: on a loaded CI machine the fake server can take over a second.
    ops_env.route({"default": [destination]})
    ops_env.extra.update(extra)
    settings = ops_env.settings()
    router = Router(load_resolver(settings.ops_trace_destinations, ""), timeout_s=timeout_s)
    return Deliverer(Runtime(settings), router, rng=random.Random(7))


def _put(deliverer: Deliverer, records) -> list[str]:
    uids = [f"uid-{i}-{time.monotonic_ns()}" for i in range(len(records))]
    deliverer.runtime.store.put(
        [(u, r.model_dump_json().encode()) for u, r in zip(uids, records, strict=True)],
        time.time() + 60,
    )
    return uids


def _retries(deliverer: Deliverer) -> list[tuple[RetryEntry, float]]:
    raw = deliverer.runtime.store.client.zrange(
        deliverer.runtime.store.retry_key, 0, -1, withscores=True
    )
    return [(RetryEntry.decode(m), score) for m, score in raw]


def _langfuse(server) -> dict:
    server.add_project("pk", "sk", "t")
    return {"kind": "langfuse", "host": server.endpoint, "public_key": "pk", "secret_key": "sk"}


def test_5xx_is_retried_then_confirmed(ops_env, fake_langfuse) -> None:
    d = _deliverer(ops_env, _langfuse(fake_langfuse))
    uids = _put(d, [message("m1"), message("m2")])
    fake_langfuse.fail(503)
    d.deliver(uids, None, 1)
    assert fake_langfuse.ids() == set()
    ((entry, _), (entry2, _)) = _retries(d)
    assert {entry.uid, entry2.uid} == set(uids)
    assert entry.attempt == 2
    d.runtime.store.client.delete(d.runtime.store.retry_key)
    d.deliver(uids, list(entry.dests), 2)
    assert len(fake_langfuse.ids()) == 2
    assert d.runtime.store.counts() == {"pending": 0, "retries": 0}


def test_429_retry_after_is_honoured(ops_env, fake_langsmith) -> None:
    fake_langsmith.credentials["key"] = "t"
    d = _deliverer(
        ops_env, {"kind": "langsmith", "endpoint": fake_langsmith.endpoint, "api_key": "key"}
    )
    uids = _put(d, [message()])
    fake_langsmith.fail(429, retry_after="30")
    before = time.time()
    d.deliver(uids, None, 1)
    ((entry, due),) = _retries(d)
    assert due >= before + 30
    assert entry.attempt == 2


def test_backoff_doubles_with_jitter_and_is_capped(ops_env) -> None:
    d = _deliverer(ops_env, {"kind": "otlp", "endpoint": "http://127.0.0.1:9/v1/traces"})
    delays = [d.backoff(a, None) for a in range(1, 8)]
    for attempt, delay in enumerate(delays, 1):
        nominal = min(0.1 * 2 ** (attempt - 1), 1.0)
        assert nominal * 0.5 <= delay <= nominal
    assert d.backoff(1, 7.0) == 7.0


@pytest.mark.parametrize("fault", ["timeout", "connection"])
def test_timeouts_and_connection_errors_are_retryable(ops_env, fake_langfuse, fault) -> None:
    destination = _langfuse(fake_langfuse)
    if fault == "connection":
        with socket.socket() as sock:  # a port nobody listens on
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        destination["host"] = f"http://127.0.0.1:{port}"
    else:
        fake_langfuse.delay(1.5)
    d = _deliverer(ops_env, destination, timeout_s=1.0)
    uids = _put(d, [message()])
    d.deliver(uids, None, 1)
    ((entry, _),) = _retries(d)
    assert entry.attempt == 2
    assert DeadLetters(d.runtime.store).count() == 0


def test_bad_record_is_bisected_out_of_its_batch(ops_env, fake_langsmith) -> None:
    fake_langsmith.credentials["key"] = "t"
    d = _deliverer(
        ops_env, {"kind": "langsmith", "endpoint": fake_langsmith.endpoint, "api_key": "key"}
    )
    records = [message(f"m{i}") for i in range(5)]
    bad = build_view(records[3]).observations[0].run_id
    fake_langsmith.poison.add(str(bad))
    uids = _put(d, records)
    d.deliver(uids, None, 1)
    assert len(fake_langsmith.ids()) == 4
    (letter,) = DeadLetters(d.runtime.store).entries()
    assert letter.uid == uids[3]
    assert letter.reason == "http_422"
    assert "poisoned" in letter.error
    assert json.loads(letter.record)["record_id"] == "m3"
    assert d.runtime.store.counts() == {"pending": 0, "retries": 0}


def test_ingestion_207_partial_failure_dead_letters_only_the_failed_record(
    ops_env, fake_langfuse
) -> None:
    destination = {**_langfuse(fake_langfuse), "api": "ingestion"}
    d = _deliverer(ops_env, destination)
    records = [message(f"m{i}") for i in range(3)]
    fake_langfuse.poison.add(build_view(records[1]).observations[0].span_id)
    d.deliver(_put(d, records), None, 1)
    (letter,) = DeadLetters(d.runtime.store).entries()
    assert json.loads(letter.record)["record_id"] == "m1"
    assert letter.reason == "http_400"
    good = {o.span_id for r in (records[0], records[2]) for o in build_view(r).observations}
    assert good <= fake_langfuse.ids()


def test_exhausted_retries_dead_letter_with_the_last_error(ops_env, fake_langfuse) -> None:
    d = _deliverer(ops_env, _langfuse(fake_langfuse), DIFYTRACE_OPS_TRACE_MAX_ATTEMPTS="2")
    uids = _put(d, [message()])
    fake_langfuse.fail(500, times=2)
    d.deliver(uids, None, 1)
    d.deliver(uids, None, 2)
    (letter,) = DeadLetters(d.runtime.store).entries()
    assert letter.reason == "retries_exhausted"
    assert "HTTP 500" in letter.error
    assert letter.attempts == 2
    assert d.runtime.store.counts()["pending"] == 0


def test_duplicate_message_after_confirmation_sends_nothing(ops_env, fake_langfuse) -> None:
    d = _deliverer(ops_env, _langfuse(fake_langfuse))
    uids = _put(d, [message()])
    d.deliver(uids, None, 1)
    sent = len(fake_langfuse.requests)
    d.deliver(uids, None, 1)  # e.g. kombu restoring an unacked message an hour later
    assert len(fake_langfuse.requests) == sent


def test_langsmith_409_for_one_existing_record_loses_none_of_its_batch_mates(
    ops_env, fake_langsmith
) -> None:
    fake_langsmith.credentials["key"] = "t"
    fake_langsmith.conflict_on_existing = True  # 409 and nothing of the request stored
    d = _deliverer(
        ops_env, {"kind": "langsmith", "endpoint": fake_langsmith.endpoint, "api_key": "key"}
    )
    old = message("old")
    d.deliver(_put(d, [old]), None, 1)
    fresh = [workflow(f"w{i}", nodes=4) for i in range(3)] + [message(f"n{i}") for i in range(3)]
    d.deliver(_put(d, [*fresh[:3], old, *fresh[3:]]), None, 1)  # e.g. a re-sent batch
    expected = {str(o.run_id) for r in [old, *fresh] for o in build_view(r).observations}
    assert fake_langsmith.ids() == expected
    assert 409 in [status for _, _, status, _ in fake_langsmith.requests]
    assert DeadLetters(d.runtime.store).count() == 0
    assert d.runtime.store.counts() == {"pending": 0, "retries": 0}


def test_ingestion_whole_batch_413_is_bisected(ops_env, fake_langfuse) -> None:
    d = _deliverer(ops_env, {**_langfuse(fake_langfuse), "api": "ingestion"})
    records = [message(f"m{i}") for i in range(3)]
    fake_langfuse.fail(413)  # the batch is over the size limit; each half is not
    d.deliver(_put(d, records), None, 1)
    assert DeadLetters(d.runtime.store).count() == 0
    spans = {o.span_id for r in records for o in build_view(r).observations}
    assert spans <= fake_langfuse.ids()
    assert [status for _, _, status, _ in fake_langfuse.requests] == [413, 207, 207]


def test_a_redirect_is_a_permanent_error_not_a_success(ops_env) -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    seen: list[str] = []

    class LoginProxy(BaseHTTPRequestHandler):  # an SSO proxy in front of the collector
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            seen.append("POST")
            self.send_response(302)
            self.send_header("Location", "/login")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            seen.append("GET")
            self.send_response(200)
            self.send_header("Content-Length", "5")
            self.end_headers()
            self.wfile.write(b"login")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), LoginProxy)
    Thread(target=server.serve_forever, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
        d = _deliverer(ops_env, {"kind": "otlp", "endpoint": endpoint})
        d.deliver(_put(d, [message()]), None, 1)
    finally:
        server.shutdown()
        server.server_close()
    assert seen == ["POST"]
    (letter,) = DeadLetters(d.runtime.store).entries()
    assert letter.reason == "http_302"
    assert "redirect not followed" in letter.error


def test_a_destination_that_cannot_be_built_holds_up_no_other(
    ops_env, fake_langfuse, monkeypatch
) -> None:
    from difytrace.ops_trace import routing

    built = routing.build_destination

    def build(config, timeout_s):
        if config.kind == "langsmith":
            raise ValueError("Invalid IPv6 URL https://user:hunter2-secret@[typo")
        return built(config, timeout_s)

    monkeypatch.setattr(routing, "build_destination", build)
    ops_env.route(
        {
            "default": [
                _langfuse(fake_langfuse),
                {"kind": "langsmith", "endpoint": "https://ls.invalid", "api_key": "k"},
            ]
        }
    )
    settings = ops_env.settings()
    router = Router(load_resolver(settings.ops_trace_destinations, ""), timeout_s=10.0)
    d = Deliverer(Runtime(settings), router, rng=random.Random(7))
    record = message()
    d.deliver(_put(d, [record]), None, 1)
    assert {o.span_id for o in build_view(record).observations} <= fake_langfuse.ids()
    (letter,) = DeadLetters(d.runtime.store).entries()
    assert (letter.destination_kind, letter.reason) == ("langsmith", "build_error")
    assert "ValueError" in letter.error
    assert "hunter2-secret" not in letter.error
    assert d.runtime.store.counts() == {"pending": 0, "retries": 0}


def test_a_record_that_keeps_killing_workers_is_dead_lettered(ops_env, fake_langfuse) -> None:
    from difytrace.ops_trace.delivery import MAX_LEASES

    d = _deliverer(ops_env, _langfuse(fake_langfuse))
    poison, fine = _put(d, [message("oom"), message("fine")])
    lease = d.runtime.settings.ops_trace_redeliver_after_s
    for _ in range(MAX_LEASES):  # a worker took it, then died before finishing its pass
        d.runtime.store.load([poison], lease)
    d.runtime.store.load([fine], lease)  # died once: an ordinary kill, delivered next time
    d.deliver([poison, fine], None, 1)
    (letter,) = DeadLetters(d.runtime.store).entries()
    assert (letter.uid, letter.reason) == (poison, "worker_lost")
    assert json.loads(letter.record)["record_id"] == "oom"
    assert {o.span_id for o in build_view(message("fine")).observations} <= fake_langfuse.ids()
    assert {
        o.span_id for o in build_view(message("oom")).observations
    } & fake_langfuse.ids() == set()
    assert d.runtime.store.counts() == {"pending": 0, "retries": 0}
    assert d.runtime.store.client.hlen(d.runtime.store.lease_key) == 0


def test_a_finished_pass_resets_the_lease_count(ops_env, fake_langfuse) -> None:
    from difytrace.ops_trace.delivery import MAX_LEASES

    d = _deliverer(ops_env, _langfuse(fake_langfuse))
    (uid,) = _put(d, [message()])
    for attempt in range(1, MAX_LEASES + 3):  # more passes than MAX_LEASES, each one finished
        fake_langfuse.fail(503)
        d.deliver([uid], None, attempt)
    assert DeadLetters(d.runtime.store).count() == 0
    assert d.runtime.store.counts()["pending"] == 1  # still retrying, not given up on


def test_two_sweepers_reading_the_same_due_retries_take_each_once(runtime) -> None:
    from difytrace.ops_trace.store import OutboxStore

    store = runtime.store
    store.schedule_retries([(RetryEntry(f"u{i}", ("k",), 2), 1.0) for i in range(20)], 60)
    other = OutboxStore(store.client, store.prefix)  # a second worker's sweeper
    taken_by_other: list[RetryEntry] = []

    class Interleaved:  # the other sweeper runs between this one's read and its removal
        def __init__(self, client) -> None:
            self._client = client

        def zrangebyscore(self, *args, **kwargs):
            raw = self._client.zrangebyscore(*args, **kwargs)
            taken_by_other.extend(other.take_due_retries(time.time(), 100))
            return raw

        def __getattr__(self, name):
            return getattr(self._client, name)

    mine = OutboxStore(Interleaved(store.client), store.prefix).take_due_retries(time.time(), 100)
    assert len(taken_by_other) == 20
    assert mine == []


def test_a_sweep_that_fails_midway_puts_back_only_what_it_did_not_publish(runtime) -> None:
    from difytrace.ops_trace.worker import Sweeper

    entries = [RetryEntry(f"u{i}", ("k",), 2 + i % 2) for i in range(6)]  # two groups
    published: list[list[str]] = []

    def publish(uids, dests=None, attempt=1):
        if published:  # the broker goes away after the first message
            raise ConnectionError("broker down")
        published.append(list(uids))

    runtime.publish = publish  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        Sweeper(runtime)._republish_retries(entries)
    (sent,) = published
    left = {e.uid for e, _ in _retries_of(runtime)}
    assert left == {e.uid for e in entries} - set(sent)
    assert len(sent) == 3


def _retries_of(runtime) -> list[tuple[RetryEntry, float]]:
    raw = runtime.store.client.zrange(runtime.store.retry_key, 0, -1, withscores=True)
    return [(RetryEntry.decode(m), score) for m, score in raw]
