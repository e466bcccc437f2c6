"""The cost counter, summed in-process and observed: the same series a synchronous counter
would export, none of a parent's calls reported again by a forked child, and a bounded number
of series."""

from __future__ import annotations

import os

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from difytrace.instrumentation.llm.instruments import CostTotals, instruments
from difytrace.testing import MetricPoint, sum_value
from difytrace.testing._model import points_from_metrics_data

MINI = {"gen_ai.request.model": "gpt-4o-mini"}
BIG = {"gen_ai.request.model": "gpt-4o"}


def collect(reader: InMemoryMetricReader) -> list[MetricPoint]:
    data = reader.get_metrics_data()
    assert data is not None
    return [p for p in points_from_metrics_data(data) if p.name == "difytrace.gen_ai.client.cost"]


def test_cost_is_exported_as_a_monotonic_sum_per_attribute_set() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    cost = instruments(provider.get_meter("difytrace.llm")).cost
    cost.add(0.25, ("mini",), MINI)
    cost.add(0.5, ("big",), BIG)
    cost.add(0.125, ("mini",), MINI)
    points = collect(reader)
    assert {p.kind for p in points} == {"sum"}
    assert sum_value(points, MINI) == 0.375
    assert sum_value(points, BIG) == 0.5
    cost.add(1.0, ("mini",), MINI)
    assert sum_value(collect(reader), MINI) == 1.375  # cumulative, as Counter.add's would be
    provider.shutdown()


def test_the_instruments_of_a_meter_are_made_once() -> None:
    meter = MeterProvider().get_meter("difytrace.llm")
    assert instruments(meter) is instruments(meter)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX")
def test_a_forked_child_does_not_report_the_parents_cost_again() -> None:
    cost = CostTotals()
    cost.add(0.5, ("mini",), MINI)
    pid = os.fork()
    if pid == 0:  # the child: nothing of the parent's, and its own calls counted
        empty = list(cost.observe(None))  # type: ignore[arg-type]
        cost.add(0.25, ("mini",), MINI)
        own = [(o.value, dict(o.attributes or {})) for o in cost.observe(None)]  # type: ignore[arg-type]
        os._exit(0 if empty == [] and own == [(0.25, MINI)] else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert [o.value for o in cost.observe(None)] == [0.5]  # type: ignore[arg-type]


def test_series_past_the_limit_go_into_one_overflow_series(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cost = CostTotals(max_series=3)
    for i in range(5):
        cost.add(1.0, (i,), {"tenant.id": f"t{i}"})
    cost.add(1.0, (0,), {"tenant.id": "t0"})  # a known series still grows
    observed = {
        tuple(sorted((o.attributes or {}).items())): o.value
        for o in cost.observe(None)  # type: ignore[arg-type]
    }
    assert observed == {
        (("tenant.id", "t0"),): 2.0,
        (("tenant.id", "t1"),): 1.0,
        (("tenant.id", "t2"),): 1.0,
        (("otel.metric.overflow", True),): 2.0,
    }
