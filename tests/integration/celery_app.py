"""The Celery app of the Celery instrumentation tests and benchmark.

Configured by environment only, as workers run it under ``opentelemetry-instrument``:
``CT_BROKER`` and ``CT_BACKEND`` (Redis URLs; DB 12 is the tests', the benchmark uses its
own; an empty ``CT_BACKEND`` means no result backend) and ``CT_QUEUE``. Tasks that fail or
retry declare their exception in ``throws`` so that the worker logs them without a traceback:
the tests assert that no log has one.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from celery import Celery, Task
from opentelemetry import baggage

app = Celery(
    "celery_app",
    broker=os.environ.get("CT_BROKER", "redis://127.0.0.1:6379/12"),
    backend=os.environ.get("CT_BACKEND", "redis://127.0.0.1:6379/12") or None,
)
app.conf.update(
    task_default_queue=os.environ.get("CT_QUEUE", "ct"),
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    worker_prefetch_multiplier=1,
    result_expires=300,
)


class FlakyError(RuntimeError):
    """Raised by :func:`flaky` on its first run."""


@app.task(name="ct.add")
def add(x: int, y: int) -> int:
    """A task that succeeds."""
    return x + y


@app.task(name="ct.baggage")
def seen_baggage() -> dict[str, Any]:
    """The baggage the task's own code sees (only allow-listed entries should survive)."""
    return {key: str(value) for key, value in baggage.get_all().items()}


@app.task(name="ct.fail", throws=(ValueError,))
def fail(message: str) -> None:
    """A task that always fails."""
    raise ValueError(message)


@app.task(name="ct.flaky", bind=True, max_retries=3, throws=(FlakyError,))
def flaky(self: Task, value: int) -> int:
    """Fails once, is retried (no countdown), then succeeds."""
    if self.request.retries == 0:
        raise self.retry(exc=FlakyError("first attempt fails"), countdown=0)
    return value


@app.task(name="ct.slow")
def slow(marker: str, seconds: float) -> str:
    """Writes ``marker`` when it starts, then works for ``seconds`` (a task caught by SIGTERM)."""
    Path(marker).write_text("started")
    time.sleep(seconds)
    return "done"


@app.task(name="ct.noop", ignore_result=True)
def noop() -> None:
    """The benchmark's task: nothing but the round trip."""
