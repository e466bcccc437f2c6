"""Malformed, oversized, non-UTF-8, NaN and deeply nested records; dead letters; replay."""

from __future__ import annotations

import argparse
import json
import logging
import time

import pytest

from difytrace.ops_trace import cli, dlq, outbox
from difytrace.ops_trace.budget import MARKER_KEY
from difytrace.ops_trace.config import Runtime
from difytrace.ops_trace.dlq import DeadLetters
from difytrace.ops_trace.records import parse_record
from difytrace.ops_trace.view import build_view
from tests.ops_trace.conftest import OpsEnv, OwnRedis, cleanup_redis, wait_until
from tests.ops_trace.factories import message, workflow

pytestmark = pytest.mark.integration


def _nested(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth):
        value = {"x": value}
    return value


def test_bad_records_are_dead_lettered_and_replay_delivers_after_the_fix(
    ops_env: OpsEnv, fake_langsmith, runtime, monkeypatch, capsys
) -> None:
    ops_env.route(
        {
            "default": [
                {
                    "kind": "langsmith",
                    "endpoint": fake_langsmith.endpoint,
                    "api_key": "not-yet-valid",
                }
            ]
        }
    )
    worker = ops_env.start_worker()
    box = outbox.configure(ops_env.settings())
    letters = DeadLetters(runtime.store)

    # 1. payloads no record can be built from, put straight into the outbox + queue
    raw = {
        "bad-json": b"{not json",
        "bad-utf8": b'{"kind":"message","x":"\xff\xfe"}',
        "bad-version": json.dumps(
            {**json.loads(message().model_dump_json()), "schema_version": 99}
        ).encode(),
    }
    runtime.store.put(list(raw.items()), time.time() + 60)
    runtime.publish(list(raw))
    # 2. refused at submit: NaN, 5000 levels deep, a naive timestamp (a dict from the app)
    as_dict = json.loads(message().model_dump_json())
    refused = [
        {**as_dict, "inputs": {"v": float("nan")}},
        {**as_dict, "inputs": _nested(5000)},
        {**as_dict, "start_time": "2026-01-02T03:04:05"},
    ]
    assert [box.submit(r) for r in refused] == [False, False, False]
    # 3. accepted but awkward: 10 MB of input, a lone surrogate
    big = message("big", inputs={"doc": "x" * 10_000_000})
    odd = message("odd", inputs={"text": "caf\udce9"})
    assert box.submit(big)
    assert box.submit(odd)

    wait_until(lambda: letters.count() >= 8, 30, "8 dead letters")
    by_reason: dict[str, list] = {}
    for entry in letters.entries(100):
        by_reason.setdefault(entry.reason, []).append(entry)
    assert len(by_reason["invalid_record"]) == 6  # 3 unreadable + 3 refused at submit
    assert any("schema_version 99" in e.error for e in by_reason["invalid_record"])
    assert any("timezone" in e.error for e in by_reason["invalid_record"])
    assert len(by_reason["http_401"]) == 2  # big and odd: the key is not valid yet
    assert worker.poll() is None

    # fix the destination, then replay everything replayable
    fake_langsmith.credentials["not-yet-valid"] = "tenant-a"
    for name, value in ops_env.env.items():  # the CLI reads its settings from the environment
        monkeypatch.setenv(name, value)
    assert cli.dlq_replay(argparse.Namespace(ids=[], all=True)) == 0
    assert "replayed 5 dead letters" in capsys.readouterr().out
    runs = {str(build_view(r).observations[0].run_id) for r in (big, odd)}
    wait_until(lambda: runs <= fake_langsmith.ids(), 30, "replayed records delivered")
    stored = {w.entity["id"]: w.entity for w in fake_langsmith.entities.values()}
    big_inputs = stored[str(build_view(big).observations[0].run_id)]["inputs"]
    assert big_inputs[MARKER_KEY] is True  # the field is cut, a preview kept
    assert big_inputs["original_bytes"] > 9_000_000
    assert big_inputs["preview"].startswith('{"doc":"xxx')
    odd_inputs = stored[str(build_view(odd).observations[0].run_id)]["inputs"]
    assert odd_inputs["text"].startswith("caf")
    # the unreadable ones came back as dead letters; the refused ones stay (not replayable)
    wait_until(lambda: letters.count() == 6, 20, "unreadable records dead-lettered again")
    assert worker.poll() is None
    assert box.submit(message("after"))
    after = str(build_view(message("after")).observations[0].run_id)
    wait_until(lambda: after in fake_langsmith.ids(), 20, "a later record")
    assert cli.dlq_purge(argparse.Namespace(ids=[], all=True)) == 0
    assert letters.count() == 0


def test_records_refused_while_redis_is_down_are_dead_lettered_when_it_returns(
    tmp_path, own_redis: OwnRedis, caplog
) -> None:
    dlq.refused_queue.clear()
    caplog.set_level(logging.DEBUG, logger="difytrace.ops_trace")
    env = OpsEnv(tmp=tmp_path, broker_url=own_redis.url)  # nothing listens there yet
    try:
        box = outbox.configure(env.settings())
        naive = {**json.loads(message().model_dump_json()), "start_time": "2026-01-02T03:04:05"}
        assert box.submit(naive) is False
        wait_until(lambda: "broker unreachable" in caplog.text, 20, "an attempt to store it")
        own_redis.start()
        letters = DeadLetters(Runtime(env.settings()).store)
        wait_until(lambda: letters.count() == 1, 30, "the dead letter once Redis is back")
        (letter,) = letters.entries()
        assert letter.reason == "invalid_record"
        assert "timezone" in letter.error
        assert not dlq.refused_queue
    finally:
        outbox.shutdown(0)
        cleanup_redis(own_redis.url, env)


def test_a_record_over_budget_after_truncation_is_dead_lettered_with_the_reason(
    ops_env: OpsEnv, runtime, span_capture
) -> None:
    ops_env.extra["DIFYTRACE_OPS_TRACE_MAX_RECORD_BYTES"] = "20000"
    box = outbox.configure(ops_env.settings())
    assert box.submit(workflow("huge", nodes=400))  # accepted; refused on the outbox thread
    assert box.submit(message("fits", inputs={"doc": "x" * 50_000}))  # cut to fit, kept
    letters = DeadLetters(runtime.store)
    wait_until(lambda: letters.count() == 1, 20, "the dead letter")
    (letter,) = letters.entries()
    assert letter.reason == "record_too_large"
    assert "after cutting" in letter.error
    assert "the budget is 20000 bytes" in letter.error
    assert "huge" in letter.record
    assert letter.replayable is False
    wait_until(lambda: runtime.store.counts()["pending"] == 1, 20, "the record that fits")
    points = span_capture.metrics()["difytrace.ops_trace.dropped"]
    assert {p.attributes["difytrace.ops_trace.reason"]: p.value for p in points} == {
        "record_too_large": 1
    }


def test_replay_requeues_each_letter_once_even_if_publishing_fails(runtime) -> None:
    letters = DeadLetters(runtime.store)
    entries = [
        dlq.new_letter(
            uid=f"u{i}",
            destination="langfuse:abc" if i else None,
            kind="langfuse",
            reason="http_401",
            error="HTTP 401",
            attempts=1,
            record=message(f"m{i}").model_dump_json(),
        )
        for i in range(3)
    ]
    letters.add(entries)

    def broker_down(uids: list[str]) -> None:
        raise ConnectionError("broker down")

    with pytest.raises(ConnectionError):
        letters.replay(None, broker_down)
    published: list[str] = []
    assert letters.replay(None, published.extend) == 0  # already claimed: nothing twice
    assert letters.count() == 0
    assert runtime.store.counts()["pending"] == 3  # in the outbox: the sweeper sends them
    loaded = runtime.store.load(
        [u.decode() for u in runtime.store.client.hkeys(runtime.store.rec_key)]
    )
    assert sorted(parse_record(item.payload).record_id for item in loaded) == ["m0", "m1", "m2"]
    assert sorted(item.scope or "" for item in loaded) == ["", "langfuse:abc", "langfuse:abc"]
    runtime.store.purge_all()


def test_the_dead_letter_store_keeps_the_newest_up_to_its_limit(runtime, span_capture) -> None:
    letters = DeadLetters(runtime.store)

    def letter(i: int) -> dlq.DeadLetter:
        entry = dlq.new_letter(
            uid=f"u{i}",
            destination=None,
            kind="langfuse",
            reason="http_401",
            error="HTTP 401",
            attempts=1,
            record="{}",
        )
        return dlq.DeadLetter(**{**entry.__dict__, "at": 1000.0 + i})

    letters.add([letter(i) for i in range(5)], limit=3)
    assert [e.uid for e in letters.entries()] == ["u2", "u3", "u4"]
    assert runtime.store.client.hlen(letters.key) == 3  # the records went with them
    points = span_capture.metrics()["difytrace.ops_trace.dropped"]
    assert {p.attributes["difytrace.ops_trace.reason"]: p.value for p in points} == {
        "dead_letters_full": 2
    }
    runtime.store.purge_all()
