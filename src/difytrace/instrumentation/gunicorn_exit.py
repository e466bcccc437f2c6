"""Flush a gunicorn worker's telemetry in its ``worker_exit`` hook, before interpreter shutdown.

A gunicorn worker leaves by ``sys.exit`` once its run loop ends; the SDK flushes from
``atexit``, during interpreter shutdown. On Python 3.12 no thread may start then, and under
gevent workers an exporter's first connection needs one (gevent resolves host names on its
thread pool): a worker's last export failed with "can't create new thread at interpreter
shutdown" and its points were lost. gunicorn runs the ``worker_exit`` server hook in the worker
just before, with the interpreter whole, so difytrace flushes there, after the app's own hook.

The app's hook is a gunicorn setting. difytrace wraps what the setting hands out
(``WorkerExit.get``) instead of replacing its value, so an app's ``worker_exit`` stays as
configured and still runs first.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any

from difytrace.forksafe import after_fork_in_child
from difytrace.process_exit import flush_before_exit

_WRAPPED = "_difytrace_flushes"

Hook = Callable[[Any, Any], Any]


def flush_when_workers_exit() -> None:
    """Make gunicorn's ``worker_exit`` hook flush this process's telemetry (idempotent).

    Done now when gunicorn's config is imported, else in every process forked from now on: a
    master under ``opentelemetry-instrument`` sets difytrace up before it imports gunicorn.
    """
    if not _wrap_worker_exit_setting():
        after_fork_in_child(_wrap_worker_exit_setting)


def _wrap_worker_exit_setting() -> bool:
    setting = getattr(sys.modules.get("gunicorn.config"), "WorkerExit", None)
    if setting is None:
        return False
    if not getattr(setting.get, _WRAPPED, False):
        setting.get = _flushing_get(setting.get)
    return True


def _flushing_get(get: Callable[[Any], Hook]) -> Callable[[Any], Hook]:
    def flushing_get(setting: Any) -> Hook:
        return _flushing_after(get(setting))

    setattr(flushing_get, _WRAPPED, True)
    return flushing_get


def _flushing_after(hook: Hook) -> Hook:
    @functools.wraps(hook)
    def worker_exit(server: Any, worker: Any) -> Any:
        try:
            return hook(server, worker)
        finally:
            # The master calls the hook too, for a worker that died before it was killed.
            if getattr(worker, "pid", None) == os.getpid():
                flush_before_exit("gunicorn.worker_exit")

    return worker_exit
