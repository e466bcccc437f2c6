"""Malformed, oversized, non-UTF-8, NaN and deeply nested records; dead letters; replay."""

from __future__ import annotations

import argparse
import json
import time

import pytest

from difytrace.ops_trace import cli, outbox
from difytrace.ops_trace.budget import MARKER_KEY
from difytrace.ops_trace.dlq import DeadLetters
from difytrace.ops_trace.view import build_view
from tests.ops_trace.conftest import OpsEnv, wait_until
from tests.ops_trace.factories import message

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
