"""Deterministic ids: the same record always yields the same trace, observation and run ids.

This is what makes at-least-once delivery safe: a retried, re-swept or replayed record upserts
the same entities at every destination instead of creating duplicates. Ids are namespaced by
tenant, so two tenants that reuse a record id never collide.

* trace id (32 hex): the live OpenTelemetry trace id when the record carries one, so the ops
  trace and the HTTP/Celery spans share one id; else derived from the root record's id.
* observation / span id (16 hex): from (tenant, record id, node key); ``""`` is the record's
  own root observation, so a child record can name its parent's span without having seen it.
* LangSmith run id (UUID): from the same key; its trace id is the root record's root run id.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime

_ZERO_SPAN = "0" * 16
_NAMESPACE = uuid.UUID("6b1d2f4e-9c3a-5e7b-8d10-4f2a6c8e0b13")


def _digest(*parts: str) -> bytes:
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=16).digest()


def trace_id_hex(tenant_id: str, root_record_id: str, live_trace_id: str | None) -> str:
    """The 32-hex trace id of a record (its live trace id when present)."""
    if live_trace_id:
        return live_trace_id
    value = _digest("trace", tenant_id, root_record_id).hex()
    return value if int(value, 16) else "1".rjust(32, "0")


def span_id_hex(tenant_id: str, record_id: str, node_key: str = "") -> str:
    """The 16-hex span / observation id of one node of a record (``""``: the record itself)."""
    # _digest("span", tenant_id, record_id, node_key), spelled out: one per observation.
    text = f"span\x1f{tenant_id}\x1f{record_id}\x1f{node_key}"
    value = hashlib.blake2b(text.encode(), digest_size=16).digest()[:8].hex()
    return value if value != _ZERO_SPAN else "1".rjust(16, "0")


def run_id(tenant_id: str, record_id: str, node_key: str = "") -> uuid.UUID:
    """The LangSmith run id of one node of a record (``""``: the record itself)."""
    return uuid.UUID(bytes=_digest("run", tenant_id, record_id, node_key), version=4)


def event_id(*parts: str) -> str:
    """A stable id for one ingestion event (Langfuse dedupes events by it)."""
    return str(uuid.uuid5(_NAMESPACE, "\x1f".join(("event", *parts))))


def dotted_segment(start_time: datetime, run: uuid.UUID) -> str:
    """One segment of LangSmith's ``dotted_order``: ``%Y%m%dT%H%M%S%fZ`` + the run id."""
    return start_time.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ") + str(run)
