"""Folding raw metric points into one point per (metric, attribute set).

Delta points are added up; of a cumulative stream (one process, one start time) only the
latest point counts, and streams of several processes are then added up. The result reads
the same whether the points came from the in-process reader (delta) or from child processes
through the OTLP receiver (usually cumulative).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from difytrace.testing._model import HistogramTotals, MetricPoint


def _key(attributes: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, repr(v)) for k, v in attributes.items()))


def _latest_per_stream(points: Iterable[MetricPoint]) -> list[MetricPoint]:
    latest: dict[tuple[Any, ...], MetricPoint] = {}
    out: list[MetricPoint] = []
    for p in points:
        if p.temporality != "cumulative":
            out.append(p)
            continue
        stream = (p.name, _key(p.attributes), _key(p.resource), p.start_time_ns)
        if stream not in latest or latest[stream].time_ns <= p.time_ns:
            latest[stream] = p
    return out + list(latest.values())


def _add(a: MetricPoint, b: MetricPoint) -> MetricPoint:
    later = b if b.time_ns >= a.time_ns else a
    if a.kind == "gauge":
        return later
    if a.kind == "sum":
        return replace(
            later,
            value=(a.value or 0) + (b.value or 0),
            start_time_ns=min(a.start_time_ns, b.start_time_ns),
        )
    buckets = a.bucket_counts
    if (
        a.bucket_counts is not None
        and b.bucket_counts is not None
        and len(a.bucket_counts) == len(b.bucket_counts)
    ):
        buckets = tuple(x + y for x, y in zip(a.bucket_counts, b.bucket_counts, strict=True))
    mins = [v for v in (a.min, b.min) if v is not None]
    maxs = [v for v in (a.max, b.max) if v is not None]
    return replace(
        later,
        count=(a.count or 0) + (b.count or 0),
        sum=(a.sum or 0) + (b.sum or 0),
        bucket_counts=buckets,
        min=min(mins) if mins else None,
        max=max(maxs) if maxs else None,
        start_time_ns=min(a.start_time_ns, b.start_time_ns),
    )


def merge_points(points: Iterable[MetricPoint]) -> dict[str, list[MetricPoint]]:
    """``{metric name: [one point per attribute set]}``, in first-seen order.

    >>> from difytrace.testing import MetricPoint
    >>> points = [MetricPoint("jobs", "sum", {"q": "a"}, value=v, temporality="delta")
    ...           for v in (1, 2)]
    >>> [(p.attributes, p.value) for p in merge_points(points)["jobs"]]
    [({'q': 'a'}, 3)]
    """
    merged: dict[tuple[str, tuple[tuple[str, str], ...]], MetricPoint] = {}
    for p in _latest_per_stream(points):
        key = (p.name, _key(p.attributes))
        merged[key] = _add(merged[key], p) if key in merged else p
    out: dict[str, list[MetricPoint]] = {}
    for p in merged.values():
        out.setdefault(p.name, []).append(p)
    return out


def matching(
    points: Iterable[MetricPoint], attributes: Mapping[str, Any] | None = None
) -> list[MetricPoint]:
    """The points whose attributes include every item of ``attributes``.

    >>> from difytrace.testing import MetricPoint
    >>> points = [MetricPoint("jobs", "sum", {"q": q, "ok": True}, value=1) for q in "ab"]
    >>> [p.attributes["q"] for p in matching(points, {"q": "b"})]
    ['b']
    """
    wanted = dict(attributes or {})
    return [
        p
        for p in points
        if all(k in p.attributes and p.attributes[k] == v for k, v in wanted.items())
    ]


def histogram_totals(
    points: Iterable[MetricPoint], attributes: Mapping[str, Any] | None = None
) -> HistogramTotals:
    """Count and sum over the histogram points whose attributes include ``attributes``.

    >>> from difytrace.testing import MetricPoint
    >>> points = [MetricPoint("wait", "histogram", {"q": q}, count=2, sum=0.5) for q in "ab"]
    >>> histogram_totals(points), histogram_totals(points, {"q": "a"})
    (HistogramTotals(count=4, sum=1.0), HistogramTotals(count=2, sum=0.5))
    """
    selected = [
        p for p in matching(points, attributes) if p.kind in ("histogram", "exponential_histogram")
    ]
    return HistogramTotals(
        count=sum(p.count or 0 for p in selected), sum=sum(p.sum or 0.0 for p in selected)
    )


def sum_value(points: Iterable[MetricPoint], attributes: Mapping[str, Any] | None = None) -> float:
    """Total of the counter / up-down-counter points whose attributes include ``attributes``.

    >>> from difytrace.testing import MetricPoint
    >>> points = [MetricPoint("sent", "sum", {"to": d}, value=v) for d, v in [("lf", 3), ("ls", 4)]]
    >>> sum_value(points), sum_value(points, {"to": "ls"})
    (7, 4)
    """
    return sum((p.value or 0) for p in matching(points, attributes) if p.kind == "sum")
