"""The span attributes of a finished :class:`Invocation`: response fields, usage, the estimate
flag, content (when captured) and the Langfuse mapping of usage.

Written as straight-line code on purpose: it runs once per LLM call, and a table of (name,
value) pairs rebuilt per call costs more than the checks themselves.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from difytrace import semconv_genai as g
from difytrace.instrumentation.llm.invocation import Invocation


def response_attributes(inv: Invocation, *, latest: bool) -> dict[str, Any]:
    """Attributes known once the response (or the error) is in."""
    attrs: dict[str, Any] = {}
    if inv.response_id is not None:
        attrs[g.RESPONSE_ID] = inv.response_id
    model = inv.response_model
    if model is not None:
        attrs[g.RESPONSE_MODEL] = model
    _usage(inv, attrs)
    if inv.dimension_count is not None:
        attrs[g.EMBEDDINGS_DIMENSION_COUNT] = inv.dimension_count
    if inv.service_tier is not None:
        attrs[g.OPENAI_RESPONSE_SERVICE_TIER] = inv.service_tier
    if inv.system_fingerprint is not None:
        attrs[g.OPENAI_RESPONSE_SYSTEM_FINGERPRINT] = inv.system_fingerprint
    if inv.finish_reasons:
        attrs[g.RESPONSE_FINISH_REASONS] = tuple(inv.finish_reasons)
    if latest and inv.response_status is not None:
        attrs[g.RESPONSE_STATUS] = inv.response_status
    if inv.usage_estimated:
        attrs[g.USAGE_ESTIMATED] = True
    if model and model != inv.request_model:
        attrs[g.LANGFUSE_MODEL_NAME] = model
    if inv.capture_content:
        _content(inv, attrs)
    details = usage_details(inv)
    if details is not None:
        attrs[g.LANGFUSE_USAGE_DETAILS] = details
    return attrs


def _usage(inv: Invocation, attrs: dict[str, Any]) -> None:
    if inv.input_tokens is not None:
        attrs[g.USAGE_INPUT_TOKENS] = inv.input_tokens
    if inv.output_tokens is not None:
        attrs[g.USAGE_OUTPUT_TOKENS] = inv.output_tokens
    if inv.cache_read_tokens is not None:
        attrs[g.USAGE_CACHE_READ_INPUT_TOKENS] = inv.cache_read_tokens
    if inv.cache_creation_tokens is not None:
        attrs[g.USAGE_CACHE_CREATION_INPUT_TOKENS] = inv.cache_creation_tokens
    if inv.reasoning_tokens is not None:
        attrs[g.USAGE_REASONING_OUTPUT_TOKENS] = inv.reasoning_tokens


def _content(inv: Invocation, attrs: dict[str, Any]) -> None:
    if inv.input_messages is not None:
        attrs[g.INPUT_MESSAGES] = _json(inv.input_messages)
    if inv.output_messages is not None:
        attrs[g.OUTPUT_MESSAGES] = _json(inv.output_messages)


def usage_details(inv: Invocation) -> str | None:
    """Langfuse's ``usage_details`` JSON object, or None without usage.

    Langfuse adds every key into the total and prices each key on its own: cached and
    reasoning tokens are therefore taken out of input/output, not counted twice.
    """
    inp, out = inv.input_tokens, inv.output_tokens
    cache_read = inv.cache_read_tokens or 0
    cache_creation = inv.cache_creation_tokens or 0
    reasoning = inv.reasoning_tokens or 0
    if inp is not None and out is not None and not (cache_read or cache_creation or reasoning):
        return f'{{"input":{inp},"output":{out},"total":{inp + out}}}'  # the common case
    parts = []
    if inp is not None:
        parts.append(f'"input":{max(inp - cache_read - cache_creation, 0)}')
    if out is not None:
        parts.append(f'"output":{max(out - reasoning, 0)}')
    if cache_read:
        parts.append(f'"input_cached_tokens":{cache_read}')
    if cache_creation:
        parts.append(f'"input_cache_creation":{cache_creation}')
    if reasoning:
        parts.append(f'"output_reasoning_tokens":{reasoning}')
    if not parts:
        return None
    parts.append(f'"total":{(inp or 0) + (out or 0)}')
    return "{" + ",".join(parts) + "}"


_PICO = 10**12
_FIXED_MAX = 1e9  # USD: amounts beyond (or negative, or not finite) keep the float repr


def cost_details(input_usd: float, output_usd: float) -> str:
    """Langfuse's ``cost_details`` JSON object, in USD to the picodollar.

    Written from integers: the shortest repr of a float (``repr``, ``json.dumps``) costs ~9k
    instructions a number, and there are three per call.
    """
    if 0.0 <= input_usd < _FIXED_MAX and 0.0 <= output_usd < _FIXED_MAX:
        inp, out = round(input_usd * _PICO), round(output_usd * _PICO)
        i_units, i_frac = divmod(inp, _PICO)
        o_units, o_frac = divmod(out, _PICO)
        t_units, t_frac = divmod(inp + out, _PICO)
        return (
            f'{{"input":{i_units}.{i_frac:012d},"output":{o_units}.{o_frac:012d},'
            f'"total":{t_units}.{t_frac:012d}}}'
        )
    total_usd = input_usd + output_usd
    return f'{{"input":{input_usd!r},"output":{output_usd!r},"total":{total_usd!r}}}'


#: (second, its ISO date and time of day): formatting a datetime costs ~15k instructions, and
#: most calls of a process start in a second an earlier one did. One tuple, swapped whole.
_ISO_SECOND: list[tuple[int, str]] = [(-1, "")]


def iso_utc(wall_ns: int) -> str:
    """ISO 8601 in UTC of a wall-clock time in nanoseconds, to the microsecond (what
    ``datetime.isoformat`` writes: no fraction when it is zero)."""
    second, rem = divmod(wall_ns, 1_000_000_000)
    cached = _ISO_SECOND[0]
    if cached[0] != second:
        text = datetime.fromtimestamp(second, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
        cached = _ISO_SECOND[0] = (second, text)
    micro = rem // 1000
    return f"{cached[1]}.{micro:06d}+00:00" if micro else f"{cached[1]}+00:00"


def error_type(exc: BaseException) -> str:
    """``error.type`` of a failed call: the HTTP status of an API error, else the class."""
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and type(exc).__name__ in {"APIStatusError", "APIError"}:
        return str(status)
    return type(exc).__qualname__


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":"))
