"""gunicorn's ``worker_exit`` hook flushes the worker's telemetry after the app's own hook.

The end-to-end proof (a real gunicorn gevent worker whose interpreter shutdown exports nothing)
is ``tests/integration/test_e2e_processes.py::test_gunicorn_workers_flush_before_interpreter_
shutdown``; these tests pin the hook's manners with gunicorn's real ``Config``.
"""

from __future__ import annotations

import os
from types import SimpleNamespace
from typing import Any

import pytest
from gunicorn.config import Config

from difytrace.instrumentation import gunicorn_exit


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    monkeypatch.setattr(gunicorn_exit, "flush_before_exit", seen.append)
    gunicorn_exit.flush_when_workers_exit()
    gunicorn_exit.flush_when_workers_exit()  # a second set-up wraps nothing twice
    return seen


def _worker(pid: int | None = None) -> Any:
    return SimpleNamespace(pid=os.getpid() if pid is None else pid)


def test_the_default_hook_flushes_in_the_worker(calls: list[str]) -> None:
    Config().worker_exit(None, _worker())
    assert calls == ["gunicorn.worker_exit"]


def test_the_apps_hook_runs_first_and_keeps_its_name(calls: list[str]) -> None:
    def on_worker_exit(server: Any, worker: Any) -> None:
        calls.append("app")

    config = Config()
    config.set("worker_exit", on_worker_exit)
    assert config.worker_exit.__name__ == "on_worker_exit"
    config.worker_exit(None, _worker())
    assert calls == ["app", "gunicorn.worker_exit"]


def test_a_failing_app_hook_still_flushes_and_still_raises(calls: list[str]) -> None:
    def on_worker_exit(server: Any, worker: Any) -> None:
        raise ValueError("app bug")

    config = Config()
    config.set("worker_exit", on_worker_exit)
    with pytest.raises(ValueError, match="app bug"):  # gunicorn logs it, as without us
        config.worker_exit(None, _worker())
    assert calls == ["gunicorn.worker_exit"]


def test_the_master_calling_the_hook_for_a_dead_worker_flushes_nothing(
    calls: list[str],
) -> None:
    Config().worker_exit(None, _worker(pid=os.getpid() + 1))
    assert calls == []
