"""Documented synthetic series, backfilled with ``promtool tsdb create-blocks-from
openmetrics`` for what only the collector produces.

Which series are synthetic: ``SYNTHETIC`` in test_dashboards_panels_data.py, which is
``semconv.COLLECTOR_METRICS``: the agent collector's ``span_metrics`` connector output (calls
and durations by service, span name, kind and status). Every metric difytrace itself emits is
produced live by the workload; a test there keeps it so.
Shape: ``COMBOS`` label sets per metric, one point every 15 s for the last 10 minutes, counters
growing linearly, gauges flat, histograms with one observation value per label set. ``job``
cycles over the workload's service names (as the collector derives it from ``service.name``,
which span metrics also carry as ``service_name``) and every series carries
``synthetic="true"``, so it is told apart from live ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from difytrace import semconv as sc
from difytrace.semconv import MetricSpec

MARK = ("synthetic", "true")
STEP_S = 15
SPAN_S = 600
#: Values per attribute, cycled over label sets; None leaves the label out.
VALUES: dict[str, tuple[str | None, ...]] = {
    sc.SERVICE_NAME: ("dash-api", "dash-worker"),
    sc.SPAN_NAME: ("GET /ok", "process dash.ok"),
    sc.SPAN_KIND: ("SPAN_KIND_SERVER", "SPAN_KIND_CONSUMER"),
    sc.STATUS_CODE: ("STATUS_CODE_UNSET", "STATUS_CODE_ERROR"),
}
COMBOS = 6
SECONDS_BUCKETS = sc.DURATION_BUCKETS_S
COUNT_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384)
OBSERVED_S = (0.04, 0.3, 2.0, 0.8, 0.12, 9.0)
OBSERVED_COUNT = (3, 120, 900, 12, 40, 2500)


def _label_sets(spec: MetricSpec) -> list[dict[str, str]]:
    sets: list[dict[str, str]] = []
    for i in range(COMBOS):
        services = VALUES[sc.SERVICE_NAME]
        labels = {"job": str(services[i % len(services)]), "instance": f"backfill:{i % 2}"}
        labels[MARK[0]] = MARK[1]
        for attr in spec.attributes:
            values = VALUES.get(attr, ("x",))
            value = values[i % len(values)]
            if value is not None:
                labels[attr.replace(".", "_")] = value
        if labels not in sets:  # fewer distinct values than COMBOS: no duplicate series
            sets.append(labels)
    return sets


def _fmt(labels: dict[str, str]) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def _histogram_lines(
    spec: MetricSpec, labels: dict[str, str], i: int, k: int, ts: int
) -> Iterator[str]:
    seconds = spec.unit == "s"
    value = (OBSERVED_S if seconds else OBSERVED_COUNT)[i % COMBOS]
    count = (i + 1) * k
    name = spec.prometheus_name
    for bound in (*(SECONDS_BUCKETS if seconds else COUNT_BUCKETS), "+Inf"):
        le = bound if isinstance(bound, str) else repr(float(bound))
        hit = bound == "+Inf" or value <= float(bound)
        yield f"{name}_bucket{_fmt({**labels, 'le': le})} {count if hit else 0} {ts}"
    yield f"{name}_count{_fmt(labels)} {count} {ts}"
    yield f"{name}_sum{_fmt(labels)} {count * value} {ts}"


def _family(spec: MetricSpec, now: int) -> Iterator[str]:
    name = spec.prometheus_name
    family = name.removesuffix("_total") if spec.instrument == "counter" else name
    kind = {"up_down_counter": "gauge"}.get(spec.instrument, spec.instrument)
    yield f"# TYPE {family} {kind}"
    for i, labels in enumerate(_label_sets(spec)):
        for k in range(SPAN_S // STEP_S + 1):
            ts = now - SPAN_S + k * STEP_S
            if spec.instrument == "histogram":
                yield from _histogram_lines(spec, labels, i, k, ts)
            elif spec.instrument == "counter":
                yield f"{name}{_fmt(labels)} {(i + 1) * k} {ts}"
            else:
                yield f"{name}{_fmt(labels)} {10 * (i + 1) + k % 3} {ts}"


def openmetrics(specs: Iterable[MetricSpec], now: int) -> str:
    """An OpenMetrics text of synthetic series for ``specs`` ending at ``now`` (epoch s)."""
    lines = [line for spec in specs for line in _family(spec, now)]
    return "\n".join([*lines, "# EOF"]) + "\n"
