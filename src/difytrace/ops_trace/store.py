"""The Redis outbox: the source of truth of every record until all its destinations took it.

Celery on Redis is not loss-free by itself (a message popped but not yet recorded as unacked is
lost on ``kill -9``, celery#7950; unacked ones come back only after ``visibility_timeout``).
So the queue message carries only record ids, and the records live here::

    {prefix}:rec           HASH  uid → record JSON             (written before publishing)
    {prefix}:due           ZSET  uid → time the sweeper re-sends it unless confirmed
    {prefix}:done:{uid}    SET   destination keys that accepted (or dead-lettered) it
    {prefix}:retry         ZSET  {"u", "d", "a"} → when to retry those destinations
    {prefix}:scope         HASH  uid → the one destination a replayed record goes to
    {prefix}:leases        HASH  uid → times a worker took it since its last finished pass

A record is *confirmed* (all its keys removed) once every destination it routes to is done.
The sweeper re-publishes due records, so a lost message, a killed worker or a Redis restart
(with persistence) delays a record but never loses it; destinations upsert by deterministic id.
The lease count bounds the one case that would loop for ever: a record whose delivery kills
the worker (out of memory, a crash) comes back until the deliverer dead-letters it.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis

_DONE_TTL_S = 7 * 24 * 3600

# The done sets of many records in one command: [[index, members], ...] of the non-empty ones.
_DONE_SETS = """
local found = {}
for i, key in ipairs(KEYS) do
  local members = redis.call('SMEMBERS', key)
  if #members > 0 then found[#found + 1] = {i - 1, members} end
end
return found
"""
# KEYS: the lease counts. ARGV: uids. Each uid's count, incremented (one command, not one each).
_TAKE_LEASES = """
local counts = {}
for i, uid in ipairs(ARGV) do counts[i] = redis.call('HINCRBY', KEYS[1], uid, 1) end
return counts
"""


def redis_client(url: str, *, sentinel_master: str = "mymaster", timeout_s: float = 2.0) -> Any:
    """A Redis client for a redis://, rediss:// or ``;``-separated sentinel:// URL."""
    if url.startswith("sentinel://"):
        from redis.sentinel import Sentinel

        nodes, password, db = [], None, 0
        for part in url.split(";"):
            parts = urllib.parse.urlsplit(part.strip())
            nodes.append((parts.hostname or "localhost", parts.port or 26379))
            password = parts.password or password
            db = int(parts.path.strip("/") or db)
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            nodes, socket_timeout=timeout_s, password=password
        )
        return sentinel.master_for(  # type: ignore[no-untyped-call]
            sentinel_master, db=db, socket_timeout=timeout_s
        )
    return redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)


@dataclass(frozen=True)
class Loaded:
    """A record as the worker reads it back from the outbox."""

    uid: str
    payload: bytes | None
    done: set[str]
    scope: str | None
    #: times a worker took it (this time included) since its last finished delivery pass
    leases: int = 1


@dataclass(frozen=True)
class RetryEntry:
    """Destinations of one record to try again, and the attempt number that will be."""

    uid: str
    dests: tuple[str, ...]
    attempt: int

    def encode(self) -> str:
        """The ZSET member (stable, so re-scheduling the same entry does not duplicate it)."""
        return json.dumps(
            {"u": self.uid, "d": sorted(self.dests), "a": self.attempt}, separators=(",", ":")
        )

    @classmethod
    def decode(cls, raw: bytes | str) -> RetryEntry:
        """Inverse of :meth:`encode`."""
        data = json.loads(raw)
        return cls(uid=data["u"], dests=tuple(data["d"]), attempt=int(data["a"]))


class OutboxStore:
    """All Redis operations of the outbox (see the module docstring for the keys)."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        # redis-py's return types differ between 6.x and 8.x: handled as Any here.
        self.client: Any = client
        self.prefix = prefix
        self.rec_key = f"{prefix}:rec"
        self.due_key = f"{prefix}:due"
        self.retry_key = f"{prefix}:retry"
        self.scope_key = f"{prefix}:scope"
        self.lock_key = f"{prefix}:lock:sweep"
        self.lease_key = f"{prefix}:leases"

    def _done_key(self, uid: str) -> str:
        return f"{self.prefix}:done:{uid}"

    def put(self, items: Sequence[tuple[str, bytes]], redeliver_at: float) -> None:
        """Store records (uid, JSON) and schedule their safety-net re-send."""
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self.rec_key, mapping=dict(items))
        pipe.zadd(self.due_key, {uid: redeliver_at for uid, _ in items})
        pipe.execute()

    def load(self, uids: Sequence[str], lease_s: float | None = None) -> list[Loaded]:
        """Each record's JSON (None once confirmed), destinations done, replay scope.

        With ``lease_s``, the records' re-send time moves to ``now + lease_s``: the safety net
        counts from the moment a worker took them, not from submit (a long queue is no loss).
        One round trip; the done sets come back from one script call, only the non-empty
        ones (a record seen for the first time has none).
        """
        pipe = self.client.pipeline(transaction=False)
        pipe.hmget(self.rec_key, list(uids))
        pipe.hmget(self.scope_key, list(uids))
        pipe.eval(_DONE_SETS, len(uids), *[self._done_key(u) for u in uids])
        if lease_s is not None:
            pipe.zadd(self.due_key, dict.fromkeys(uids, time.time() + lease_s), xx=True)
            pipe.eval(_TAKE_LEASES, 1, self.lease_key, *uids)
        results = pipe.execute()
        payloads, scopes, found = results[:3]
        leases = [int(n) for n in results[4]] if lease_s is not None else [1] * len(uids)
        done: dict[int, set[str]] = {int(i): {d.decode() for d in members} for i, members in found}
        return [
            Loaded(uid, p, done.get(i, set()), s.decode() if s else None, n)
            for i, (uid, p, s, n) in enumerate(zip(uids, payloads, scopes, leases, strict=True))
        ]

    def stage_finished(self, pipe: Any, uids: Sequence[str]) -> None:
        """Queue on ``pipe``: a delivery pass over these records ran to its end."""
        if uids:
            pipe.hdel(self.lease_key, *uids)

    def stage_done(self, pipe: Any, pairs: Iterable[tuple[str, str]]) -> None:
        """Queue on ``pipe``: destination key ``d`` accepted (or dead-lettered) record ``uid``."""
        for uid, dest in pairs:
            pipe.sadd(self._done_key(uid), dest)
            pipe.expire(self._done_key(uid), _DONE_TTL_S)

    def stage_retries(
        self, pipe: Any, entries: Sequence[tuple[RetryEntry, float]], redeliver_after_s: float
    ) -> None:
        """Queue on ``pipe``: retry these destinations at the given times, and push the
        safety net past them."""
        if entries:
            pipe.zadd(self.retry_key, {e.encode(): at for e, at in entries})
            pipe.zadd(self.due_key, {e.uid: at + redeliver_after_s for e, at in entries}, xx=True)

    def stage_confirm(self, pipe: Any, uids: Sequence[str]) -> None:
        """Queue on ``pipe``: every destination took these records, forget them."""
        if uids:
            pipe.hdel(self.rec_key, *uids)
            pipe.zrem(self.due_key, *uids)
            pipe.hdel(self.scope_key, *uids)
            pipe.hdel(self.lease_key, *uids)
            pipe.delete(*[self._done_key(u) for u in uids])

    def mark_done(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Record that destination key ``d`` accepted (or dead-lettered) record ``uid``."""
        pipe = self.client.pipeline(transaction=False)
        self.stage_done(pipe, pairs)
        pipe.execute()

    def confirm(self, uids: Sequence[str]) -> None:
        """Every destination took these records: forget them."""
        if not uids:
            return
        pipe = self.client.pipeline(transaction=True)
        self.stage_confirm(pipe, uids)
        pipe.execute()

    def schedule_retries(
        self, entries: Sequence[tuple[RetryEntry, float]], redeliver_after_s: float
    ) -> None:
        """Retry these destinations at the given times; push the safety net past them."""
        if not entries:
            return
        pipe = self.client.pipeline(transaction=True)
        self.stage_retries(pipe, entries, redeliver_after_s)
        pipe.execute()

    def take_due_retries(self, now: float, limit: int) -> list[RetryEntry]:
        """Remove and return retries whose time has come.

        Only the entries this call removed are returned: a second sweeper reading the same
        range at the same moment gets the others, never the same ones twice.
        """
        raw = self.client.zrangebyscore(self.retry_key, "-inf", now, start=0, num=limit)
        if not raw:
            return []
        pipe = self.client.pipeline(transaction=False)
        for member in raw:
            pipe.zrem(self.retry_key, member)
        removed = pipe.execute()
        return [RetryEntry.decode(r) for r, gone in zip(raw, removed, strict=True) if gone]

    def take_stale(self, now: float, limit: int, redeliver_after_s: float) -> list[str]:
        """Unconfirmed records past their re-send time; their next one is pushed back."""
        raw = self.client.zrangebyscore(self.due_key, "-inf", now, start=0, num=limit)
        uids = [r.decode() for r in raw]
        if uids:
            self.client.zadd(self.due_key, {u: now + redeliver_after_s for u in uids}, xx=True)
        return uids

    def try_lock(self, token: str, ttl_s: float) -> bool:
        """Sweeper leadership: one sweeper at a time across all workers."""
        if self.client.set(self.lock_key, token, nx=True, px=int(ttl_s * 1000)):
            return True
        current = self.client.get(self.lock_key)
        if current is not None and current.decode() == token:
            self.client.pexpire(self.lock_key, int(ttl_s * 1000))
            return True
        return False

    def counts(self) -> dict[str, int]:
        """Records in the outbox, retries scheduled (for metrics and the CLI)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hlen(self.rec_key)
        pipe.zcard(self.retry_key)
        pending, retries = pipe.execute()
        return {"pending": int(pending), "retries": int(retries)}

    def purge_all(self) -> None:
        """Delete every outbox key of this prefix (tests and `dlq purge --all`)."""
        keys: list[Any] = list(self.client.scan_iter(match=f"{self.prefix}:*", count=1000))
        for start in range(0, len(keys), 500):
            self.client.delete(*keys[start : start + 500])


def now_s() -> float:
    """Wall-clock seconds (records and scores use wall time; they cross machines)."""
    return time.time()
