"""The Celery worker of the ``ops_trace`` queue.

Run it with ``celery -A difytrace.ops_trace.worker worker -Q ops_trace`` or
``difytrace worker``. Messages carry record ids; the task delivers them (see
:mod:`difytrace.ops_trace.delivery`) and is acknowledged after the destinations answered
(``acks_late``). A sweeper thread in each worker's main process (one active at a time across
all workers, by a Redis lock) re-publishes due retries and unconfirmed records whose message
was lost, and samples the queue depth for the metric.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from collections import defaultdict
from typing import Any

from celery import signals

from difytrace.ops_trace import metrics
from difytrace.ops_trace.config import DELIVER_TASK, Runtime
from difytrace.ops_trace.delivery import Deliverer
from difytrace.ops_trace.routing import Router, load_resolver
from difytrace.ops_trace.store import RetryEntry
from difytrace.settings import load_settings

logger = logging.getLogger("difytrace.ops_trace")

runtime = Runtime(load_settings())
app = runtime.app

_deliverer: dict[int, Deliverer] = {}


def deliverer() -> Deliverer:
    """This process's deliverer (built after fork, once)."""
    pid = os.getpid()
    if pid not in _deliverer:
        settings = runtime.settings
        resolver = load_resolver(settings.ops_trace_destinations, settings.ops_trace_resolver)
        router = Router(resolver, timeout_s=settings.ops_trace_http_timeout_ms / 1000)
        _deliverer.clear()
        _deliverer[pid] = Deliverer(runtime, router)
    return _deliverer[pid]


@app.task(name=DELIVER_TASK, acks_late=True, ignore_result=True)  # type: ignore[untyped-decorator]  # celery has no types
def deliver(uids: list[str], dests: list[str] | None = None, attempt: int = 1) -> None:
    """Deliver the records of one message."""
    deliverer().deliver(uids, dests, attempt)


class Sweeper(threading.Thread):
    """Re-publishes due retries and records whose message was lost; samples queue depth."""

    def __init__(self, rt: Runtime, interval_s: float = 1.0) -> None:
        super().__init__(name="difytrace-ops-sweeper", daemon=True)
        self.rt = rt
        self.interval_s = interval_s
        self.token = f"{os.uname().nodename}:{os.getpid()}:{id(self)}"
        self.stop_event = threading.Event()
        self._last_depth = 0.0

    def run(self) -> None:
        """Sweep every ``interval_s`` until stopped; Redis errors are logged and retried."""
        while not self.stop_event.wait(self.interval_s):
            try:
                self.sweep_once()
            except Exception as exc:
                logger.warning("ops_trace sweeper: %s", exc)

    def sweep_once(self) -> int:
        """One pass; returns how many records were re-published."""
        store = self.rt.store
        settings = self.rt.settings
        if not store.try_lock(self.token, max(self.interval_s * 5, 5.0)):
            return 0
        now = time.time()
        count = self._republish_retries(store.take_due_retries(now, 2000))
        stale = store.take_stale(now, 5000, settings.ops_trace_redeliver_after_s)
        size = settings.ops_trace_batch_size
        for start in range(0, len(stale), size):
            self.rt.publish(stale[start : start + size])
        if stale:
            logger.info("ops_trace sweeper: re-sent %d unconfirmed records", len(stale))
        if now - self._last_depth > 5:
            self._last_depth = now
            metrics.set_queue_depth(settings.ops_trace_queue, self.queue_depth())
        return count + len(stale)

    def _republish_retries(self, entries: list[RetryEntry]) -> int:
        groups: dict[tuple[tuple[str, ...], int], list[RetryEntry]] = defaultdict(list)
        for entry in entries:
            groups[(entry.dests, entry.attempt)].append(entry)
        size = self.rt.settings.ops_trace_batch_size
        published = 0
        try:
            for (dests, attempt), group in groups.items():
                for start in range(0, len(group), size):
                    chunk = group[start : start + size]
                    uids = [e.uid for e in chunk]
                    self.rt.publish(uids, dests=list(dests), attempt=attempt)
                    published += len(chunk)
        except Exception:  # put back what was not published; the next pass tries again
            in_order = [e for group in groups.values() for e in group]  # as published above
            left = in_order[published:]
            self.rt.store.schedule_retries(
                [(e, time.time() + 1) for e in left],
                self.rt.settings.ops_trace_redeliver_after_s,
            )
            raise
        return len(entries)

    def queue_depth(self) -> int:
        """Messages waiting in the queue (Redis and AMQP both answer a passive declare)."""
        with self.rt.app.connection_for_read() as conn:
            channel: Any = conn.default_channel
            try:
                declared = channel.queue_declare(
                    queue=self.rt.settings.ops_trace_queue, passive=True
                )
            except Exception as exc:
                # Redis keeps no key for an empty queue: kombu answers "NOT_FOUND" (404).
                if "NOT_FOUND" in str(exc) or getattr(exc, "code", None) == 404:
                    return 0
                raise
            return int(declared.message_count)


_sweeper: list[Sweeper] = []


#: Net tracked allocations between two young-generation collections in a worker process.
#: A message of 200 records holds ~30,000 objects (records, views) until it is committed; at
#: Python's default of 700 the young and middle generations were collected ~150 and ~15
#: times per message, walking the message's live objects each time, and the survivors
#: triggered full collections of the whole heap.
GC_YOUNG_THRESHOLD = 50_000

_worker_state: dict[str, bool] = {}


def tune_gc() -> None:
    """Garbage-collector settings of an ops_trace worker process (never of a host app).

    Objects alive after start-up (Celery, kombu, pydantic schemas: ~10^5) live as long as
    the process: frozen, full collections no longer walk them (and they stay shared after a
    prefork fork). A message's objects are freed by reference counting when it is done;
    the higher young threshold lets that happen before a collection walks them.
    """
    gc.collect()
    gc.freeze()
    young, middle, old = gc.get_threshold()
    gc.set_threshold(max(young, GC_YOUNG_THRESHOLD), middle, old)


@signals.worker_init.connect  # type: ignore[untyped-decorator]  # celery has no types
def _claim_worker(sender: Any = None, **_: Any) -> None:
    if getattr(sender, "app", None) is app:
        _worker_state["ours"] = True


@signals.worker_process_init.connect  # type: ignore[untyped-decorator]  # celery has no types
def _tune_pool_process(**_: Any) -> None:
    if _worker_state.get("ours"):  # set before the pool forks: inherited by its processes
        tune_gc()


@signals.worker_ready.connect  # type: ignore[untyped-decorator]  # celery has no types
def _start_sweeper(sender: Any = None, **_: Any) -> None:
    if getattr(sender, "app", None) is not app or _sweeper:
        return
    tune_gc()
    sweeper = Sweeper(runtime, interval_s=runtime.settings.ops_trace_sweep_interval_ms / 1000)
    sweeper.start()
    _sweeper.append(sweeper)
    metrics.worker_running(runtime.settings.ops_trace_queue, 1)


@signals.worker_shutdown.connect  # type: ignore[untyped-decorator]  # celery has no types
def _stop_sweeper(sender: Any = None, **_: Any) -> None:
    for sweeper in _sweeper:
        sweeper.stop_event.set()
    if _sweeper:
        metrics.worker_running(runtime.settings.ops_trace_queue, -1)
    _sweeper.clear()
    for d in _deliverer.values():
        d.router.close()
