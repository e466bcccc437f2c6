"""The ops_trace runtime of one process: settings, Celery app, outbox store; built lazily.

Nothing connects at import or construction: the Celery app and Redis clients open their
connections on first use, so building a runtime before ``fork`` is safe.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.instrumentation.utils import suppress_instrumentation

from difytrace.exceptions import ConfigurationError
from difytrace.ops_trace.store import OutboxStore, redis_client
from difytrace.settings import Settings

#: The Celery task name of a delivery message.
DELIVER_TASK = "difytrace.ops_trace.deliver"


def outbox_url(settings: Settings) -> str:
    """The outbox Redis URL: the explicit one, else the broker when the broker is Redis."""
    if settings.ops_trace_outbox_url:
        return settings.ops_trace_outbox_url
    broker = settings.ops_trace_broker_url
    if broker.split("://", 1)[0] in {"redis", "rediss", "sentinel"}:
        return broker
    raise ConfigurationError(
        "DIFYTRACE_OPS_TRACE_OUTBOX_URL is required when the ops_trace broker is not Redis "
        "(the outbox, retries and dead letters live in Redis)"
    )


def store_prefix(settings: Settings) -> str:
    """The Redis key prefix of the outbox and dead letters: one per prefix and queue."""
    return f"{settings.ops_trace_key_prefix}:{settings.ops_trace_queue}"


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings of the ops_trace app (publisher and worker)."""
    options: dict[str, Any] = {"visibility_timeout": 3600}
    if settings.ops_trace_broker_url.startswith("sentinel://"):
        options["master_name"] = settings.ops_trace_sentinel_master
    return {
        "broker_url": settings.ops_trace_broker_url,
        "broker_transport_options": options,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "broker_connection_timeout": 2.0,
        "task_default_queue": settings.ops_trace_queue,
        "task_routes": {DELIVER_TASK: {"queue": settings.ops_trace_queue}},
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_backend": None,
        "task_ignore_result": True,
        # Acknowledge after delivery; a lost worker's message is re-queued, and the sweeper
        # covers the windows where Redis loses it anyway.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 2,
        "worker_hijack_root_logger": False,
        "worker_cancel_long_running_tasks_on_connection_loss": False,
    }


@dataclass
class Runtime:
    """Settings plus the lazily built Celery app and outbox of this process."""

    settings: Settings
    _app: Any = None
    _store: OutboxStore | None = None
    _pid: int = field(default_factory=os.getpid)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def forget_parent(self) -> None:
        """In a forked child: a fresh lock (a parent thread may have held it) and no sockets."""
        self._lock = threading.Lock()
        self._check_pid()

    def _check_pid(self) -> None:
        if self._pid != os.getpid():  # forked: never share sockets with the parent
            self._app, self._store, self._pid = None, None, os.getpid()

    @property
    def app(self) -> Any:
        """The Celery app used to publish (and, in workers, to consume)."""
        with self._lock:
            self._check_pid()
            if self._app is None:
                from celery import Celery

                app = Celery("difytrace_ops_trace", set_as_current=False)
                app.conf.update(celery_config(self.settings))
                self._app = app
            return self._app

    @property
    def store(self) -> OutboxStore:
        """The Redis outbox."""
        with self._lock:
            self._check_pid()
            if self._store is None:
                client = redis_client(
                    outbox_url(self.settings),
                    sentinel_master=self.settings.ops_trace_sentinel_master,
                )
                self._store = OutboxStore(client, store_prefix(self.settings))
            return self._store

    def close(self) -> None:
        """Close the broker and Redis connections of this process (they reopen on use)."""
        with self._lock:
            if self._pid == os.getpid():
                if self._app is not None:
                    self._app.close()
                if self._store is not None:
                    self._store.client.close()
            self._app, self._store = None, None

    def publish(self, uids: list[str], *, dests: list[str] | None = None, attempt: int = 1) -> None:
        """Put one delivery message on the queue; raises when the broker is unreachable."""
        # difytrace's own plumbing: no "send" span (it would be a root trace per batch).
        with suppress_instrumentation():
            self.app.send_task(
                DELIVER_TASK,
                kwargs={"uids": uids, "dests": dests, "attempt": attempt},
                queue=self.settings.ops_trace_queue,
                retry=False,
                ignore_result=True,
            )
