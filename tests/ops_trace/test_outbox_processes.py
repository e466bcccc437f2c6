"""The outbox across process boundaries: a Celery pool child's exit, and fork."""

from __future__ import annotations

import os
import signal
import threading
import time

from difytrace.instrumentation import celery_lifecycle
from difytrace.ops_trace import outbox
from difytrace.ops_trace.config import Runtime
from tests.ops_trace.conftest import OpsEnv, wait_until
from tests.ops_trace.factories import message


def test_a_pool_child_leaving_hands_its_records_over(ops_env: OpsEnv) -> None:
    """A prefork child exits by os._exit (no atexit): worker_process_shutdown flushes them."""
    ops_env.route({"default": [{"kind": "otlp", "endpoint": "http://127.0.0.1:9/v1/traces"}]})
    runtime = Runtime(ops_env.settings())
    outbox.configure(ops_env.settings())
    for i in range(3):
        assert outbox.submit(message(f"m{i}"))
    celery_lifecycle.flush_on_process_shutdown()
    assert outbox._outbox is None  # stopped: what it held is in Redis now
    assert runtime.store.counts()["pending"] == 3
    runtime.store.purge_all()


def test_a_forked_child_starts_empty_and_never_resends_the_parents_records(
    ops_env: OpsEnv,
) -> None:
    ops_env.route({"default": [{"kind": "otlp", "endpoint": "http://127.0.0.1:9/v1/traces"}]})
    box = outbox.configure(ops_env.settings())
    box.buffer.extend(outbox._Item(message(f"p{i}"), None) for i in range(3))  # not yet sent
    held = threading.Lock()
    held.acquire()
    outbox._lock = held  # as if a parent thread held it at the fork
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report what it inherited, then submit one record of its own
        try:
            inherited = len(outbox.current().buffer)
            ok = outbox.submit(message("child"))
            outbox.shutdown(5.0)
            os.write(write, f"{inherited} {ok}".encode())
        finally:
            os._exit(0)
    os.close(write)
    deadline = time.monotonic() + 15
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        if time.monotonic() > deadline:  # deadlocked on an inherited lock
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            break
        time.sleep(0.05)
    answer = os.read(read, 100).decode()
    os.close(read)
    held.release()
    outbox._lock = threading.Lock()
    assert answer == "0 True"
    assert len(box.buffer) == 3  # the parent still owns (and will send) its own
    runtime = Runtime(ops_env.settings())
    wait_until(lambda: runtime.store.counts()["pending"] >= 1, what="the child's record")
    assert runtime.store.counts()["pending"] == 1
    box.buffer.clear()
    runtime.store.purge_all()
