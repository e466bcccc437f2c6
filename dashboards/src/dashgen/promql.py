"""PromQL builders over :class:`~difytrace.semconv.MetricSpec`: names never typed by hand."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from difytrace import semconv
from difytrace.semconv import MetricSpec

#: Labels every series carries without being a metric attribute (set by Prometheus / the
#: collector's prometheus exporter from service.name and service.instance.id).
RESOURCE_LABELS = ("job", "instance")
RATE_WINDOW = "$__rate_interval"
KNOWN_SPECS: tuple[MetricSpec, ...] = (*semconv.METRICS, *semconv.COLLECTOR_METRICS)


class UnknownMetric(LookupError):
    """A dashboard or rule refers to a metric (or attribute) that difytrace does not emit."""


def label(attribute: str) -> str:
    """The Prometheus label name of an OTel attribute (``tenant.id`` → ``tenant_id``)."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", attribute)


def require(spec: MetricSpec) -> MetricSpec:
    """``spec`` itself, if it is in the catalogue; else :class:`UnknownMetric`."""
    if spec not in KNOWN_SPECS:
        raise UnknownMetric(f"{spec.name} is not in difytrace.semconv.METRICS")
    return spec


def labels_of(spec: MetricSpec) -> tuple[str, ...]:
    """Every label a series of ``spec`` may carry."""
    return (*RESOURCE_LABELS, *(label(a) for a in spec.attributes))


def _check_labels(spec: MetricSpec, names: Iterable[str]) -> None:
    allowed = set(labels_of(spec)) | {"le"}
    missing = [n for n in names if n not in allowed]
    if missing:
        raise UnknownMetric(f"{spec.name} has no attribute(s) {missing}; it has {allowed}")


class Scope:
    """The template-variable filters of one dashboard: ``{label: variable}``.

    A filter is applied to a metric only when the metric carries that label, so one dashboard
    can mix metrics with and without ``tenant_id``.
    """

    def __init__(self, filters: Mapping[str, str]) -> None:
        self.filters = dict(filters)

    def selector(
        self, spec: MetricSpec, suffix: str = "", matchers: Mapping[str, str] | None = None
    ) -> str:
        """``name{label=~"$var", ...}`` for ``spec`` (``suffix``: _bucket, _sum, _count)."""
        require(spec)
        extra = dict(matchers or {})
        _check_labels(spec, extra)
        parts = [f'{lbl}=~"${var}"' for lbl, var in self.filters.items() if lbl in labels_of(spec)]
        parts += [f'{lbl}=~"{value}"' for lbl, value in extra.items()]
        name = spec.prometheus_name + suffix
        return f"{name}{{{', '.join(parts)}}}" if parts else name

    def rate(
        self,
        spec: MetricSpec,
        by: Sequence[str] = (),
        suffix: str = "",
        *,
        matchers: Mapping[str, str] | None = None,
        func: str = "rate",
        window: str = RATE_WINDOW,
    ) -> str:
        """``sum by (...) (rate(counter[window]))``; ``suffix`` _count/_sum for histograms."""
        if spec.instrument == "counter" and suffix:
            raise ValueError("counters take no suffix")
        if spec.instrument == "histogram" and suffix not in {"_count", "_sum"}:
            raise ValueError("rate of a histogram needs suffix _count or _sum")
        _check_labels(spec, by)
        inner = f"{func}({self.selector(spec, suffix, matchers)}[{window}])"
        return f"sum by ({', '.join(by)}) ({inner})" if by else f"sum({inner})"

    def quantile(
        self,
        spec: MetricSpec,
        q: float,
        by: Sequence[str] = (),
        matchers: Mapping[str, str] | None = None,
        window: str = RATE_WINDOW,
    ) -> str:
        """``histogram_quantile(q, sum by (le, ...) (rate(x_bucket[window])))``."""
        if spec.instrument != "histogram":
            raise ValueError(f"{spec.name} is not a histogram")
        _check_labels(spec, by)
        inner = f"rate({self.selector(spec, '_bucket', matchers)}[{window}])"
        return f"histogram_quantile({q}, sum by (le, {', '.join(by)}) ({inner}))".replace(
            "(le, )", "(le)"
        )

    def gauge(
        self,
        spec: MetricSpec,
        by: Sequence[str] = (),
        agg: str = "sum",
        matchers: Mapping[str, str] | None = None,
    ) -> str:
        """``sum by (...) (gauge)`` for gauges and up-down counters."""
        if spec.instrument not in {"gauge", "up_down_counter"}:
            raise ValueError(f"{spec.name} is not a gauge; use rate()")
        _check_labels(spec, by)
        sel = self.selector(spec, "", matchers)
        return f"{agg} by ({', '.join(by)}) ({sel})" if by else f"{agg}({sel})"


def with_label(expr: str, name: str, value: str) -> str:
    """``sum by (name) (expr)`` with ``name`` set to ``value`` on every series.

    For a metric shown beside series of another metric that carry ``name`` while it does not
    (``label_replace`` with an empty source matches every series).
    """
    if "$" in value or '"' in value:
        raise ValueError(f"label value {value!r} must not hold $ or quotes")
    return f'sum by ({name}) (label_replace({expr}, "{name}", "{value}", "", ""))'


def total(a: str, b: str) -> str:
    """``a + b`` over the same ``by`` labels, where a label set only one side has counts as
    that side (PromQL's ``+`` drops it: a destination that never delivered has no series)."""
    return f"(({a}) + ({b})) or ({a}) or ({b})"


def ratio(numerator: str, denominator: str) -> str:
    """``numerator / denominator`` over the same ``by`` labels.

    A label set with no numerator series counts as 0 (``or 0 * denominator``), and a zero
    denominator yields no sample instead of NaN.
    """
    return f"(({numerator}) or (0 * ({denominator}))) / (({denominator}) > 0)"
