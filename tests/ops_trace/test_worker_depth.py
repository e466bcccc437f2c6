"""The sweeper reports queue depth, also for an empty queue (Redis keeps no key for it)."""

from __future__ import annotations

import dataclasses
import uuid

import pytest


def test_empty_redis_queue_has_depth_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    from difytrace.ops_trace import worker

    settings = dataclasses.replace(
        worker.runtime.settings, ops_trace_queue=f"ops_trace_empty_{uuid.uuid4().hex}"
    )
    monkeypatch.setattr(worker.runtime, "settings", settings)
    assert worker.Sweeper(worker.runtime, interval_s=1).queue_depth() == 0
