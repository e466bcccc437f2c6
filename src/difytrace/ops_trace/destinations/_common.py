"""Small helpers the destinations share: JSON text, timestamps, span fields of a view."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pydantic_core

from difytrace.bootstrap import __version__
from difytrace.ops_trace.destinations import otlp_wire
from difytrace.ops_trace.records import Usage
from difytrace.ops_trace.view import Observation

SCOPE_NAME = "difytrace.ops_trace"
SCOPE_VERSION = __version__
RESOURCE = {
    "service.name": "difytrace-ops-trace",
    "telemetry.sdk.language": "python",
    "telemetry.distro.name": "difytrace",
    "telemetry.distro.version": __version__,
}


def to_json(value: Any) -> str:
    """Compact JSON text (non-JSON values as their ``str``)."""
    try:  # pydantic-core's serializer: several times faster than the json module
        return pydantic_core.to_json(value, fallback=str).decode("utf-8", "replace")
    except (ValueError, TypeError):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC with a ``Z`` (what Langfuse and LangSmith parse without guessing)."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def wire_span(trace_field: bytes, obs: Observation, attribute_pieces: list[bytes]) -> bytes:
    """Encode one observation as an OTLP span (``trace_field``: its record's
    :func:`otlp_wire.trace_id_field`; ``attribute_pieces``: from
    :func:`otlp_wire.attributes_into`)."""
    start = obs.start_time
    end = obs.end_time or start
    error = obs.status == "error"
    return otlp_wire.span(
        trace_field,
        obs.span_id,
        obs.parent_span_id,
        obs.name,
        start_ns=int(start.timestamp() * 1_000_000) * 1000,  # microseconds: what records keep
        end_ns=int(end.timestamp() * 1_000_000) * 1000,
        attribute_pieces=attribute_pieces,
        status_code=otlp_wire.STATUS_ERROR if error else otlp_wire.STATUS_UNSET,
        status_message=(obs.error or "") if error else "",
    )


def usage_details(obs: Observation) -> dict[str, int] | None:
    """Langfuse-style usage details (input / output / total)."""
    if obs.usage is None:
        return None
    return {
        "input": obs.usage.input_tokens,
        "output": obs.usage.output_tokens,
        "total": obs.usage.total,
    }


def usage_details_json(usage: Usage) -> str:
    """:func:`usage_details` as JSON text (the same text ``to_json`` writes, without the dict)."""
    return f'{{"input":{usage.input_tokens},"output":{usage.output_tokens},"total":{usage.total}}}'


def cost_details(obs: Observation) -> dict[str, float] | None:
    """Langfuse-style cost details, the parts that are known."""
    if obs.cost is None:
        return None
    parts = {"input": obs.cost.input, "output": obs.cost.output, "total": obs.cost.total}
    known = {k: v for k, v in parts.items() if v is not None}
    return known or None
