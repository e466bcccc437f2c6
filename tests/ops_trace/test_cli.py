"""``difytrace dlq list|show`` and ``difytrace worker``, run as a user runs them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from difytrace.ops_trace import outbox
from difytrace.ops_trace.dlq import DeadLetters
from difytrace.ops_trace.view import build_view
from tests.cli.cli_support import BIN, run_cli
from tests.ops_trace.conftest import OpsEnv, wait_until
from tests.ops_trace.factories import message
from tests.ops_trace.test_retries import _deliverer, _put

pytestmark = pytest.mark.integration

SECRET = "sk-lf-do-not-print"


def _langfuse(server) -> dict:
    server.add_project("pk-lf-cli", SECRET, "t")
    return {
        "kind": "langfuse",
        "host": server.endpoint,
        "public_key": "pk-lf-cli",
        "secret_key": SECRET,
    }


def test_dlq_list_and_show(ops_env: OpsEnv, fake_langfuse) -> None:
    d = _deliverer(ops_env, _langfuse(fake_langfuse))
    refused = message("refused-1")
    fake_langfuse.fail(400)
    d.deliver(_put(d, [refused]), None, 1)
    d.runtime.store.put([("unreadable-uid", b"{not json")], time.time() + 60)
    d.deliver(["unreadable-uid"], None, 1)
    letters = {e.reason: e for e in DeadLetters(d.runtime.store).entries()}
    bad, unreadable = letters["http_400"], letters["invalid_record"]
    project = fake_langfuse.project_id("t")
    url = f"{fake_langfuse.endpoint}/project/{project}/traces/{build_view(refused).trace_id}"

    listing = run_cli("dlq", "list", env=ops_env.env)
    assert listing.returncode == 0, listing.stderr
    rows = {line.split("│")[1].strip(): line for line in listing.stdout.splitlines() if "│" in line}
    assert bad.destination in rows[bad.id]
    assert "http_400" in rows[bad.id]
    assert "HTTP 400" in rows[bad.id]
    assert "invalid_record" in rows[unreadable.id]
    assert "Invalid JSON" in rows[unreadable.id]
    assert "2 dead letters" in listing.stdout

    as_json = run_cli("dlq", "list", "--json", env=ops_env.env)
    lines = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert {entry["id"]: entry["trace_url"] for entry in lines} == {
        bad.id: url,
        unreadable.id: None,
    }
    assert all("record" not in entry and entry["record_bytes"] > 0 for entry in lines)

    shown = run_cli("dlq", "show", bad.id, env=ops_env.env)
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["trace_url"] == url
    assert data["record"]["record_id"] == "refused-1"  # the record, as JSON
    assert data["reason"] == "http_400"
    assert json.loads(run_cli("dlq", "show", unreadable.id, env=ops_env.env).stdout)["record"] == (
        "{not json"
    )

    missing = run_cli("dlq", "show", "nope", env=ops_env.env)
    assert missing.returncode == 1
    assert missing.stderr == "difytrace: error: no dead letter 'nope'\n"
    for result in (listing, as_json, shown, missing):
        assert SECRET not in result.stdout + result.stderr


def test_difytrace_worker_starts_and_delivers(ops_env: OpsEnv, fake_langfuse, runtime) -> None:
    ops_env.route({"default": [_langfuse(fake_langfuse)]})
    log = ops_env.tmp / "difytrace-worker.log"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OTEL_", "DIFYTRACE_")) and k != "PYTEST_XDIST_WORKER"
    }
    env.update({**ops_env.env, "DIFYTRACE_STRICT": "1"})
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(BIN / "difytrace"), "worker", "--pool", "solo", "--hostname", "cli@%h"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"worker exited {proc.returncode}: {log.read_text()}")
            return " ready." in log.read_text(errors="replace")

        wait_until(ready, 60, "difytrace worker to be ready")
        box = outbox.configure(ops_env.settings())
        records = [message(f"cli-{i}") for i in range(5)]
        for record in records:
            assert box.submit(record)
        expected = {o.span_id for r in records for o in build_view(r).observations}
        wait_until(lambda: fake_langfuse.ids() == expected, 30, "records via difytrace worker")
        wait_until(lambda: runtime.store.counts()["pending"] == 0, 20, "the outbox to drain")
        text = log.read_text(errors="replace")
        assert ops_env.queue in text  # it consumes the configured queue
        assert SECRET not in text
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    assert proc.returncode == 0
