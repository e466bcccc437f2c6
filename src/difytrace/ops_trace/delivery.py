"""One delivery message, end to end: load → build → route → send per destination → account.

The steps, in order, each its own small function:

1. load the records of the message from the outbox (already-confirmed ones are skipped);
2. read and build each (a record that cannot be built is dead-lettered, reason
   ``invalid_record``);
3. resolve its destinations, drop those already done (and, for a retry message, those not
   being retried);
4. send per destination in batches; classify each record's outcome;
5. account, in one Redis transaction: dead letters, "done" marks, retries (backoff with
   jitter, at least the server's Retry-After) and the confirmation of records every
   destination took.

A crash between any two steps re-sends at worst, never loses: the outbox still holds the record.
"""

from __future__ import annotations

import logging
import random
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from difytrace.exceptions import ConfigurationError, RecordError
from difytrace.ops_trace import dlq, metrics
from difytrace.ops_trace.config import Runtime
from difytrace.ops_trace.destinations.base import Destination, Outcome
from difytrace.ops_trace.links import DeliveryLog
from difytrace.ops_trace.records import parse_record
from difytrace.ops_trace.routing import DestinationConfig, Router
from difytrace.ops_trace.store import Loaded, RetryEntry
from difytrace.ops_trace.view import TraceView, build_view
from difytrace.scrub import Scrubber

logger = logging.getLogger("difytrace.ops_trace")
_SECRETS = Scrubber()  # the built-in secret rules, for error texts of unknown origin


@dataclass
class _Pending:
    uid: str
    payload: bytes
    view: TraceView
    targets: Mapping[str, DestinationConfig]
    done: set[str]


@dataclass
class _Ledger:
    letters: list[dlq.DeadLetter] = field(default_factory=list)
    done: list[tuple[str, str]] = field(default_factory=list)
    retries: dict[str, tuple[set[str], float]] = field(default_factory=dict)
    confirm: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)


#: A record taken by workers this many times without a finished delivery pass is killing them
#: (out of memory, a crash): it is dead-lettered instead of taking the next worker down too.
MAX_LEASES = 5


class Deliverer:
    """Delivers messages for one worker process."""

    def __init__(self, runtime: Runtime, router: Router, rng: random.Random | None = None) -> None:
        self.runtime = runtime
        self.router = router
        self.rng = rng or random.Random()
        self.letters = dlq.DeadLetters(runtime.store)
        self.log = DeliveryLog()

    def deliver(self, uids: Sequence[str], dests: Sequence[str] | None, attempt: int) -> None:
        """Deliver one message's records (``dests``: only these destinations, for retries)."""
        ledger = _Ledger()
        lease = self.runtime.settings.ops_trace_redeliver_after_s
        loaded = self.runtime.store.load(uids, lease)
        pending = self._prepare(loaded, ledger)
        work: dict[str, list[_Pending]] = defaultdict(list)
        for item in pending:
            todo = set(item.targets) - item.done
            for key in todo if dests is None else todo & set(dests):
                work[key].append(item)
        for key, items in work.items():
            self._send(key, items, attempt, ledger)
        for item in pending:
            if item.uid not in ledger.retries and set(item.targets) <= item.done:
                ledger.confirm.append(item.uid)
        ledger.finished = [item.uid for item in loaded]  # this pass ran to its end
        self._commit(ledger, attempt)

    def _prepare(self, loaded: list[Loaded], ledger: _Ledger) -> list[_Pending]:
        out: list[_Pending] = []
        for item in loaded:
            if item.payload is None:
                continue  # confirmed already: a duplicate message
            if item.leases > MAX_LEASES:
                self._dead(
                    ledger,
                    item.uid,
                    key=None,
                    kind="none",
                    reason="worker_lost",
                    error=f"taken by a worker {item.leases - 1} times without a finished pass "
                    "(the worker died while delivering it: out of memory? a crash?)",
                    attempts=item.leases - 1,
                    payload=item.payload,
                )
                ledger.confirm.append(item.uid)
                continue
            try:
                view = build_view(parse_record(item.payload))
            except RecordError as exc:
                self._dead(
                    ledger,
                    item.uid,
                    key=None,
                    kind="none",
                    reason="invalid_record",
                    error=str(exc),
                    attempts=0,
                    payload=item.payload,
                )
                ledger.confirm.append(item.uid)
                continue
            try:
                configs = self.router.targets(view.record.tenant_id, view.record.app_id)
            except ConfigurationError as exc:  # left in the outbox: the sweeper re-sends it
                logger.error(
                    "ops_trace resolver failed for tenant %s: %s",
                    view.record.tenant_id,
                    _SECRETS.redact(str(exc)),
                )
                continue
            targets = _scoped(configs, item.scope)
            if not targets:
                metrics.dropped("no_destination")
                ledger.confirm.append(item.uid)
                continue
            out.append(_Pending(item.uid, item.payload, view, targets, set(item.done)))
        return out

    def _send(self, key: str, items: list[_Pending], attempt: int, ledger: _Ledger) -> None:
        config = items[0].targets[key]
        try:
            dest = self.router.destination(config)
        except Exception as exc:  # one tenant's unusable config must not hold up the others
            self._unbuildable(
                key, kind=config.kind, items=items, exc=exc, attempt=attempt, ledger=ledger
            )
            return
        size = self.runtime.settings.ops_trace_batch_size
        for start in range(0, len(items), size):
            chunk = items[start : start + size]
            try:
                outcomes = dest.send([(p.uid, p.view) for p in chunk])
            except Exception as exc:  # a destination bug must not stop the worker
                error = dest.redact(f"{type(exc).__name__}: {exc}")
                logger.error("ops_trace destination %s failed: %s", dest.kind, error[:300])
                logger.debug("ops_trace destination failure", exc_info=True)
                outcomes = {p.uid: Outcome(False, True, type(exc).__name__, error) for p in chunk}
            metrics.batch_size(dest.kind, len(chunk))
            accepted: list[_Pending] = []
            for item in chunk:
                outcome = outcomes.setdefault(item.uid, Outcome(False, True, "no_outcome"))
                if outcome.message:
                    outcome = replace(outcome, message=dest.redact(outcome.message)[:300])
                if outcome.accepted:
                    item.done.add(key)
                    ledger.done.append((item.uid, key))
                    accepted.append(item)
                else:
                    self._refused(key, item, outcome, dest=dest, attempt=attempt, ledger=ledger)
            self._delivered(dest.kind, accepted)
            self.log.delivered(key, dest, [p.view for p in accepted])

    def _unbuildable(
        self,
        key: str,
        *,
        kind: str,
        items: list[_Pending],
        exc: Exception,
        attempt: int,
        ledger: _Ledger,
    ) -> None:
        """Records for a destination that cannot be built: dead letters, named by the error."""
        error = _SECRETS.redact(f"destination cannot be built: {type(exc).__name__}: {exc}")[:300]
        logger.error("ops_trace %s %s", kind, error)
        metrics.failed(kind, "build_error", len(items))
        for item in items:
            self._dead(
                ledger,
                item.uid,
                key=key,
                kind=kind,
                reason="build_error",
                error=error,
                attempts=attempt,
                payload=item.payload,
            )
            item.done.add(key)
            ledger.done.append((item.uid, key))

    @staticmethod
    def _delivered(kind: str, accepted: list[_Pending]) -> None:
        """Metrics of the records a destination accepted: once per request, lag per record."""
        if not accepted:
            return
        metrics.delivered(kind, len(accepted))
        now = time.time()
        metrics.lags(
            kind,
            [
                now - (p.view.record.end_time or p.view.record.start_time).timestamp()
                for p in accepted
            ],
        )

    def _refused(
        self,
        key: str,
        item: _Pending,
        outcome: Outcome,
        *,
        dest: Destination,
        attempt: int,
        ledger: _Ledger,
    ) -> None:
        """A record the destination did not take: a retry, or a dead letter."""
        kind = dest.kind
        metrics.failed(kind, outcome.error_type, 1)
        if outcome.retryable and attempt < self.runtime.settings.ops_trace_max_attempts:
            delay = self.backoff(attempt, outcome.retry_after_s)
            keys, prev = ledger.retries.get(item.uid, (set(), 0.0))
            keys.add(key)
            ledger.retries[item.uid] = (keys, max(prev, delay))
            metrics.retried(kind, outcome.error_type, 1)
            return
        reason = outcome.error_type if not outcome.retryable else "retries_exhausted"
        self._dead(
            ledger,
            item.uid,
            key=key,
            kind=kind,
            reason=reason,
            error=outcome.message or outcome.error_type,
            attempts=attempt,
            payload=item.payload,
            trace_url=dest.trace_url(item.view),
        )
        item.done.add(key)
        ledger.done.append((item.uid, key))

    def backoff(self, attempt: int, retry_after_s: float | None) -> float:
        """Exponential backoff with jitter, never shorter than the server's Retry-After."""
        settings = self.runtime.settings
        cap = settings.ops_trace_retry_max_ms / 1000
        base = min(cap, settings.ops_trace_retry_base_ms / 1000 * 2.0 ** (attempt - 1))
        delay = base * self.rng.uniform(0.5, 1.0)
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, 3600.0))
        return delay

    def _dead(
        self,
        ledger: _Ledger,
        uid: str,
        *,
        key: str | None,
        kind: str,
        reason: str,
        error: str,
        attempts: int,
        payload: bytes,
        trace_url: str | None = None,
    ) -> None:
        ledger.letters.append(
            dlq.new_letter(
                uid=uid,
                destination=key,
                kind=kind,
                reason=reason,
                error=error,
                attempts=attempts,
                record=payload,
                trace_url=trace_url,
            )
        )
        metrics.dead_lettered(kind, reason)
        logger.warning("ops_trace record dead-lettered (%s at %s): %s", reason, kind, error[:200])

    def _commit(self, ledger: _Ledger, attempt: int) -> None:
        """One atomic transaction: dead letters, done marks, retries, confirmations.

        Records confirmed now get no done marks (the confirmation deletes them anyway);
        a crash before the transaction leaves the outbox as the message found it.
        """
        store = self.runtime.store
        now = time.time()
        confirmed = set(ledger.confirm)
        pipe = store.client.pipeline(transaction=True)
        self.letters.stage(pipe, ledger.letters)
        store.stage_done(pipe, [(uid, key) for uid, key in ledger.done if uid not in confirmed])
        store.stage_retries(
            pipe,
            [
                (RetryEntry(uid, tuple(keys), attempt + 1), now + delay)
                for uid, (keys, delay) in ledger.retries.items()
            ],
            self.runtime.settings.ops_trace_redeliver_after_s,
        )
        store.stage_finished(pipe, ledger.finished)
        store.stage_confirm(pipe, ledger.confirm)
        pipe.execute()
        if ledger.letters:
            self.letters.trim(self.runtime.settings.ops_trace_dead_letters_max)


def _scoped(
    targets: Mapping[str, DestinationConfig], scope: str | None
) -> Mapping[str, DestinationConfig]:
    """A replayed record goes to the destination it failed at; if that config has changed
    since (fixed credentials change the key), to the destinations of the same kind."""
    if scope is None:
        return targets
    if scope in targets:
        return {scope: targets[scope]}
    kind = scope.split(":", 1)[0]
    return {k: v for k, v in targets.items() if v.kind == kind}
