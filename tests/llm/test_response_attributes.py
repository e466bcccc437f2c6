"""The vendor mapping's hand-formatted values: ``cost_details`` is valid JSON equal to the
costs to the picodollar, and ``completion_start_time`` is what ``datetime.isoformat`` writes,
for any amounts and times (hypothesis)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from difytrace.instrumentation.llm.response_attributes import cost_details, iso_utc

USD = st.floats(min_value=0.0, max_value=5e8, allow_nan=False, allow_infinity=False)


@given(USD, USD)
def test_cost_details_is_json_of_the_amounts_to_the_picodollar(inp: float, out: float) -> None:
    parsed = json.loads(cost_details(inp, out))
    assert list(parsed) == ["input", "output", "total"]
    assert parsed["input"] == pytest.approx(inp, abs=1e-12, rel=1e-15)
    assert parsed["output"] == pytest.approx(out, abs=1e-12, rel=1e-15)
    assert parsed["total"] == pytest.approx(inp + out, abs=3e-12, rel=1e-15)


@given(st.floats(allow_nan=False).filter(lambda x: not 0.0 <= x < 1e9), USD)
def test_amounts_beyond_fixed_point_keep_their_float_repr(odd: float, usd: float) -> None:
    text = cost_details(odd, usd)
    assert text.startswith(f'{{"input":{odd!r},"output":{usd!r},')


@given(st.integers(min_value=0, max_value=4_000_000_000 * 10**9))
def test_completion_start_time_is_isoformat_to_the_microsecond(wall_ns: int) -> None:
    micros = wall_ns // 1000
    as_datetime = datetime.fromtimestamp(micros // 10**6, tz=UTC).replace(
        microsecond=micros % 10**6
    )
    assert iso_utc(wall_ns) == as_datetime.isoformat()
    assert iso_utc(wall_ns) == iso_utc(wall_ns)  # the cached second gives the same text
