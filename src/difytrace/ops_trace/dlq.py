"""The dead-letter store in Redis: records a destination refused, or that could not be built.

Keys (next to the outbox's): ``{prefix}:dlq`` HASH id → entry JSON and ``{prefix}:dlq:idx``
ZSET id → time. An entry keeps the record JSON, the destination key it failed at (None for a
record that cannot be read at all), the reason and the last error. :meth:`DeadLetters.replay`
puts entries back into the outbox, scoped to the destination that refused them, and announces
them on the queue: after the destination is fixed, replay delivers them.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

from difytrace.ops_trace import metrics
from difytrace.ops_trace.store import OutboxStore

logger = logging.getLogger("difytrace.ops_trace")

_PREVIEW_BYTES = 64 * 1024


class Refused(NamedTuple):
    """A record refused before enqueue: why, and a preview of it."""

    reason: str
    message: str
    preview: str


#: Records refused before enqueue, waiting for the outbox thread to store them (bounded).
refused_queue: collections.deque[Refused] = collections.deque(maxlen=1000)


def remember_refused(message: str, preview: str = "", reason: str = "invalid_record") -> None:
    """Keep a refused record's error for the dead-letter store (no I/O on the request path)."""
    refused_queue.append(Refused(reason, message, preview[:_PREVIEW_BYTES]))


@dataclass(frozen=True)
class DeadLetter:
    """One dead-lettered (record, destination)."""

    id: str
    uid: str
    destination: str | None
    destination_kind: str
    reason: str
    error: str
    attempts: int
    at: float
    record: str
    replayable: bool = True
    #: Where the record's trace is (or would be) in the vendor's UI, when the vendor has one.
    trace_url: str | None = None

    def summary(self) -> dict[str, Any]:
        """The entry without the record body (for listings)."""
        data = asdict(self)
        data["record_bytes"] = len(data.pop("record").encode("utf-8", "replace"))
        return data


def _text(payload: bytes | str) -> str:
    return payload if isinstance(payload, str) else payload.decode("utf-8", "replace")


# KEYS: letters, their index, outbox records, outbox due times, replay scopes.
# ARGV: due time, then (letter id, new uid) pairs. Returns the uids of the letters claimed.
_CLAIM = """
local out = {}
for i = 2, #ARGV, 2 do
  local id, uid = ARGV[i], ARGV[i + 1]
  if redis.call('ZREM', KEYS[2], id) == 1 then
    local raw = redis.call('HGET', KEYS[1], id)
    redis.call('HDEL', KEYS[1], id)
    if raw then
      local letter = cjson.decode(raw)
      redis.call('HSET', KEYS[3], uid, letter['record'])
      redis.call('ZADD', KEYS[4], ARGV[1], uid)
      local destination = letter['destination']
      if destination and destination ~= cjson.null then
        redis.call('HSET', KEYS[5], uid, destination)
      end
      table.insert(out, uid)
    end
  end
end
return out
"""


# KEYS: letters, their index (by time). ARGV: how many to keep. Returns how many were dropped.
_TRIM = """
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[1])
if over <= 0 then return 0 end
local ids = redis.call('ZRANGE', KEYS[2], 0, over - 1)
redis.call('ZREMRANGEBYRANK', KEYS[2], 0, over - 1)
for _, id in ipairs(ids) do redis.call('HDEL', KEYS[1], id) end
return over
"""


class DeadLetters:
    """List, show, replay and purge dead letters."""

    def __init__(self, store: OutboxStore) -> None:
        self.store = store
        self.key = f"{store.prefix}:dlq"
        self.index = f"{store.prefix}:dlq:idx"
        self.scope_key = f"{store.prefix}:scope"

    def add(self, letters: Iterable[DeadLetter], limit: int | None = None) -> None:
        """Store dead letters (then keep at most ``limit``: see :meth:`trim`)."""
        letters = list(letters)
        if not letters:
            return
        pipe = self.store.client.pipeline(transaction=True)
        self.stage(pipe, letters)
        pipe.execute()
        if limit is not None:
            self.trim(limit)

    def trim(self, limit: int) -> int:
        """Drop the oldest entries beyond ``limit``; returns how many (counted and logged).

        Dead letters keep whole records in the Redis that is usually the broker too: a tenant
        whose key was revoked would otherwise fill it until every tenant stops.
        """
        evicted = int(self.store.client.eval(_TRIM, 2, self.key, self.index, limit))
        if evicted:
            metrics.dropped("dead_letters_full", evicted)
            logger.warning(
                "ops_trace: %d oldest dead letter(s) dropped: the store keeps at most %d "
                "(DIFYTRACE_OPS_TRACE_DEAD_LETTERS_MAX)",
                evicted,
                limit,
            )
        return evicted

    def stage(self, pipe: Any, letters: Sequence[DeadLetter]) -> None:
        """Queue the storing of ``letters`` on a Redis pipeline (committed with other work)."""
        if letters:
            pipe.hset(self.key, mapping={d.id: json.dumps(asdict(d)) for d in letters})
            pipe.zadd(self.index, {d.id: d.at for d in letters})

    def count(self) -> int:
        """How many entries there are."""
        return int(self.store.client.zcard(self.index))

    def entries(self, limit: int = 50, offset: int = 0) -> list[DeadLetter]:
        """Entries, oldest first (none for a ``limit`` below 1)."""
        if limit < 1:
            return []
        ids = self.store.client.zrange(self.index, offset, offset + limit - 1)
        return self._get([i.decode() for i in ids])

    def show(self, entry_id: str) -> DeadLetter | None:
        """One entry with its record."""
        found = self._get([entry_id])
        return found[0] if found else None

    def _get(self, ids: Sequence[str]) -> list[DeadLetter]:
        if not ids:
            return []
        raw = self.store.client.hmget(self.key, list(ids))
        return [DeadLetter(**json.loads(r)) for r in raw if r is not None]

    def replay(
        self,
        ids: Sequence[str] | None,
        publish: Callable[[list[str]], None],
        batch: int = 200,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Re-queue entries (all present now when ``ids`` is None); returns how many.

        Entries that are not replayable (records refused at submit: only an error and a
        preview were kept) are skipped and stay.
        """
        if ids is None:
            ids = [i.decode() for i in self.store.client.zrange(self.index, 0, -1)]
        done = 0
        for start in range(0, len(ids), batch):
            chunk = list(ids[start : start + batch])
            done += self._replay_chunk(self._get(chunk), publish)
            if progress is not None:
                progress(len(chunk))
        return done

    def _replay_chunk(self, letters: list[DeadLetter], publish: Callable[[list[str]], None]) -> int:
        letters = [d for d in letters if d.replayable]
        if not letters:
            return 0
        # Claimed and put back in the outbox in one step: a replay run twice (or by two
        # operators at once) re-queues each letter once, and a publish that fails afterwards
        # loses nothing (the sweeper sends what the outbox holds).
        pairs = [value for d in letters for value in (d.id, os.urandom(12).hex())]
        keys = [self.key, self.index, self.store.rec_key, self.store.due_key, self.scope_key]
        claimed = self.store.client.eval(_CLAIM, len(keys), *keys, time.time() + 120, *pairs)
        uids = [u.decode() if isinstance(u, bytes) else str(u) for u in claimed or ()]
        if uids:
            publish(uids)
        return len(uids)

    def purge(self, ids: Sequence[str] | None = None) -> int:
        """Delete entries (all when ``ids`` is None); returns how many."""
        if ids is None:
            count = self.count()
            self.store.client.delete(self.key, self.index)
            return count
        if not ids:
            return 0
        pipe = self.store.client.pipeline(transaction=True)
        pipe.hdel(self.key, *ids)
        pipe.zrem(self.index, *ids)
        removed, _ = pipe.execute()
        return int(removed)


def new_letter(
    *,
    uid: str,
    destination: str | None,
    kind: str,
    reason: str,
    error: str,
    attempts: int,
    record: bytes | str,
    replayable: bool = True,
    trace_url: str | None = None,
) -> DeadLetter:
    """A dead letter with a fresh id and the current time."""
    return DeadLetter(
        id=os.urandom(8).hex(),
        uid=uid,
        destination=destination,
        destination_kind=kind,
        reason=reason,
        error=error[:2000],
        attempts=attempts,
        at=time.time(),
        record=_text(record),
        replayable=replayable,
        trace_url=trace_url,
    )
