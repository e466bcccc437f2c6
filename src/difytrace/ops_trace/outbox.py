"""The request path: :func:`submit` validates, serialises and hands a record over, never blocking.

``submit()`` only appends the serialised record to a bounded in-process buffer; a background
thread (a greenlet under gevent) writes batches to the Redis outbox and publishes one queue
message per batch. While the broker is unreachable the buffer holds up to
``DIFYTRACE_OPS_TRACE_BUFFER_SIZE`` records and re-sends them when it returns; beyond that,
records are dropped and counted by reason. Nothing here raises into the app.

A record submitted inside a live span, without a ``trace_id`` of its own, takes the span's
trace id, so the ops trace and the HTTP / Celery spans share one trace id. ``submit()`` only
reads the id (an int) from the context; the record is copied with it on the outbox thread.
"""

from __future__ import annotations

import atexit
import collections
import itertools
import logging
import os
import threading
import time
from typing import Any

from opentelemetry.trace import get_current_span

from difytrace._guard import internal_errors
from difytrace.exceptions import RecordError
from difytrace.gevent import run_off_hub
from difytrace.ops_trace import budget, dlq, metrics
from difytrace.ops_trace.config import Runtime
from difytrace.ops_trace.records import RecordBase, parse_record, to_payload
from difytrace.settings import Settings, load_settings

logger = logging.getLogger("difytrace.ops_trace")

_MAX_BACKOFF_S = 5.0
_LINGER_S = 0.05


class _Item:
    __slots__ = ("kind", "live_trace_id", "payload", "record")

    def __init__(self, record: RecordBase, live_trace_id: int) -> None:
        self.kind = record.kind
        self.record: RecordBase | None = record
        self.payload: bytes | None = None
        self.live_trace_id = live_trace_id


def _live_trace_id(record: RecordBase) -> int:
    """The current span's trace id when the record names none (0: none to take)."""
    if record.trace_id is not None:
        return 0
    context = get_current_span().get_span_context()
    return context.trace_id if context.is_valid else 0


class Outbox:
    """One process's buffer and publisher thread."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.bound = runtime.settings.ops_trace_buffer_size
        self.byte_bound = runtime.settings.ops_trace_buffer_bytes
        #: payload bytes of the buffered records serialised so far (written by the thread)
        self.buffered_bytes = 0
        self.budget = runtime.settings.ops_trace_max_record_bytes
        self.buffer: collections.deque[_Item] = collections.deque()
        self.unpublished: list[list[str]] = []
        self.wake = threading.Event()
        self.idle = threading.Event()
        self.idle.set()
        self.stopping = False
        self.thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()
        self._last_flush = 0.0

    # --- request path ------------------------------------------------------------------
    def submit(self, record: RecordBase | dict[str, Any]) -> bool:
        """Queue one record; False when it was refused or dropped (and counted)."""
        # Models are validated at construction and frozen (containers copied by validation),
        # so serialising happens on the outbox thread, off the request path.
        if not isinstance(record, RecordBase):
            try:
                record = parse_record(record)  # type: ignore[arg-type]
            except RecordError as exc:
                _refused(exc, record)
                if self.thread is None:
                    self._start()  # the thread stores the dead letter
                return False
        if len(self.buffer) >= self.bound or self.buffered_bytes >= self.byte_bound:
            metrics.dropped("buffer_full")
            return False
        self.buffer.append(_Item(record, _live_trace_id(record)))
        if self.thread is None:
            self._start()
        if len(self.buffer) == 1:
            self.wake.set()
        return True

    def _serialise(self, record: RecordBase) -> bytes:
        try:
            payload = to_payload(record)
        except ValueError:  # lone surrogates and other text that is not UTF-8
            payload = _sanitised(record)
        if len(payload) > self.budget:
            # Cutting a large record takes ~1 s for 20 MB: never on gevent's hub.
            return run_off_hub(budget.fit, record.model_dump(mode="json"), self.budget)
        return payload

    def forget_parent(self) -> None:
        """In a forked child: nothing of the parent's (records, thread, locks, connections)."""
        self.buffer = collections.deque()
        self.buffered_bytes = 0
        self.unpublished = []
        self.wake, self.idle = threading.Event(), threading.Event()
        self.idle.set()
        self.thread = None
        self._thread_lock = threading.Lock()
        self.runtime.forget_parent()

    # --- background publisher ----------------------------------------------------------
    def _start(self) -> None:
        with self._thread_lock:
            if self.thread is None:
                self.thread = threading.Thread(
                    target=self._run, name="difytrace-ops-outbox", daemon=True
                )
                self.thread.start()

    def _run(self) -> None:
        backoff = 0.1
        while not self.stopping:
            if not self.buffer and not self.unpublished and not dlq.refused_queue:
                self.idle.set()
                self.wake.wait(0.5)
                self.wake.clear()
                continue
            self.idle.clear()
            self._linger()
            try:
                self._flush_once()
                self._last_flush = time.monotonic()
                backoff = 0.1
            except Exception as exc:  # broker or Redis unreachable: keep, back off, retry
                logger.debug("ops_trace outbox: broker unreachable (%s); retrying", exc)
                self._prepare_waiting()
                time.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_S)

    def _linger(self) -> None:
        """Gather a fuller batch: at most one message per ``_LINGER_S`` unless a batch is full.

        One message per record would cost the worker a round trip each; batching is what keeps
        the lag low under load.
        """
        if len(self.buffer) < self.runtime.settings.ops_trace_batch_size and not self.stopping:
            wait = self._last_flush + _LINGER_S - time.monotonic()
            if wait > 0:
                time.sleep(wait)

    def _flush_once(self) -> None:
        self._store_refused()
        while self.unpublished:
            self.runtime.publish(self.unpublished[0])
            self.unpublished.pop(0)
        # Peek, write, then pop: records stay counted against the bound until they are safe.
        items = list(itertools.islice(self.buffer, self.runtime.settings.ops_trace_batch_size))
        if not items:
            return
        ready = [item for item in items if self._prepared(item)]
        uids = [os.urandom(12).hex() for _ in ready]
        redeliver_at = time.time() + self.runtime.settings.ops_trace_redeliver_after_s
        if ready:
            self.runtime.store.put(
                [(u, i.payload or b"") for u, i in zip(uids, ready, strict=True)], redeliver_at
            )
        for item in items:
            self.buffer.popleft()  # only this thread pops; submit() appends on the right
            self.buffered_bytes -= len(item.payload or b"")
        if not ready:
            return
        for item in ready:
            metrics.submitted(item.kind)
        self.unpublished.append(uids)  # safe in the outbox now; publishing is the doorbell
        self.runtime.publish(uids)
        self.unpublished.pop()

    def _prepare_waiting(self) -> None:
        """While nothing can be stored, serialise what waits: the byte bound then holds."""
        for item in list(self.buffer):
            if self.stopping or self.buffered_bytes >= self.byte_bound:
                return
            self._prepared(item)

    def _prepared(self, item: _Item) -> bool:
        """Serialise once (kept for a retry); False for a record refused by the budget."""
        if item.payload is None and item.record is not None:
            record = item.record
            if item.live_trace_id:
                record = record.model_copy(update={"trace_id": f"{item.live_trace_id:032x}"})
            try:
                item.payload = self._serialise(record)
            except RecordError as exc:  # still over the budget with every field cut
                _refused(exc, item.record, "record_too_large")
                item.payload = b""
            item.record = None
            self.buffered_bytes += len(item.payload)
            time.sleep(0)  # hand the GIL to request threads between records
        return bool(item.payload)

    def _store_refused(self) -> None:
        """Dead-letter what ``submit()`` refused; off the queue only once Redis has it."""
        pending = list(dlq.refused_queue)
        if not pending:
            return
        letters = [
            dlq.new_letter(
                uid="",
                destination=None,
                kind="none",
                reason=refused.reason,
                error=refused.message,
                attempts=0,
                record=refused.preview,
                replayable=False,
            )
            for refused in pending
        ]
        limit = self.runtime.settings.ops_trace_dead_letters_max
        dlq.DeadLetters(self.runtime.store).add(letters, limit=limit)
        for refused in pending:
            # Only this thread pops; a full queue may have evicted some of ours meanwhile.
            if dlq.refused_queue and dlq.refused_queue[0] is refused:
                dlq.refused_queue.popleft()

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until the buffer is written and published; False on timeout."""
        deadline = time.monotonic() + timeout_s
        self.wake.set()
        while time.monotonic() < deadline:
            if not self.buffer and not self.unpublished and self.idle.is_set():
                return True
            self.wake.set()
            time.sleep(0.01)
        return False

    def stop(self, timeout_s: float = 2.0) -> None:
        """Flush what can be flushed within ``timeout_s``, then stop the thread."""
        if self.thread is not None:
            self.flush(timeout_s)
        self.stopping = True
        self.wake.set()
        if self.thread is not None:
            self.thread.join(timeout_s)
        self.runtime.close()
        left = len(self.buffer) + sum(len(u) for u in self.unpublished)
        if self.buffer:
            metrics.dropped("shutdown", len(self.buffer))
        if left:
            logger.warning("ops_trace: %d records not handed over at shutdown", left)


def _sanitised(record: RecordBase) -> bytes:
    import json

    text = json.dumps(record.model_dump(mode="json"), ensure_ascii=False)
    return text.encode("utf-8", "replace")


_refused_logged: set[str] = set()


def _refused(exc: RecordError, record: object, reason: str = "invalid_record") -> None:
    metrics.dropped(reason)
    message = str(exc)
    if message[:80] not in _refused_logged and len(_refused_logged) < 100:
        _refused_logged.add(message[:80])
        logger.error("ops_trace record refused: %s", message)
    try:
        preview = repr(record)[:4096]
    except Exception:
        preview = "<unprintable record>"
    dlq.remember_refused(message, preview, reason)


# --- module-level singleton ------------------------------------------------------------
_outbox: Outbox | None = None
_lock = threading.Lock()


def configure(settings: Settings | None = None) -> Outbox:
    """(Re)build this process's outbox from ``settings`` (default: the environment)."""
    global _outbox  # noqa: PLW0603 - one outbox per process, replaced as a whole
    with _lock:
        if _outbox is not None:
            _outbox.stop(0.5)
        _outbox = Outbox(Runtime(settings or load_settings()))
        return _outbox


def shutdown(timeout_s: float = 2.0) -> None:
    """Flush (up to ``timeout_s``) and drop this process's outbox; the next submit rebuilds it."""
    global _outbox  # noqa: PLW0603 - see configure()
    with _lock:
        if _outbox is not None:
            _outbox.stop(timeout_s)
            _outbox = None


def current() -> Outbox:
    """This process's outbox, built from the environment on first use (once, however many
    threads submit their first record at the same moment)."""
    global _outbox  # noqa: PLW0603 - see configure()
    outbox = _outbox
    if outbox is not None:
        return outbox
    with _lock:
        if _outbox is None:
            _outbox = Outbox(Runtime(load_settings()))
        return _outbox


def submit(record: RecordBase | dict[str, Any]) -> bool:
    """Hand a finished record to difytrace; never blocks, never raises.

    Accepts a record model or a dict (validated here). Returns True when the record was
    queued, False when it was refused (invalid: logged, counted and kept in the dead-letter
    store) or dropped (buffer full: counted).
    """
    outbox = _outbox
    if outbox is not None:
        try:
            return outbox.submit(record)
        except Exception as exc:
            with internal_errors("ops_trace.submit"):
                raise exc
            return False
    with internal_errors("ops_trace.submit"):
        return current().submit(record)
    return False


def flush(timeout_s: float = 5.0) -> bool:
    """Wait until every submitted record is in the outbox and announced on the queue."""
    return _outbox.flush(timeout_s) if _outbox is not None else True


def _after_fork_in_child() -> None:
    """A forked child starts with an empty outbox and fresh locks: the parent's thread
    publishes what the parent buffered (sending it from both would store it twice), and a
    lock a parent thread held at the fork is replaced, never waited on."""
    global _lock  # noqa: PLW0603 - the inherited lock may be held by a thread that is gone
    _lock = threading.Lock()
    dlq.refused_queue.clear()
    if _outbox is not None:
        _outbox.forget_parent()


# Every process that can fork has the hook: a child never sees the parent's thread or buffer.
os.register_at_fork(after_in_child=_after_fork_in_child)


@atexit.register
def _at_exit() -> None:
    if _outbox is not None:
        _outbox.stop(2.0)
