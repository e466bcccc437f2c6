"""Label names and panel helpers shared by the dashboards."""

from __future__ import annotations

from difytrace import semconv as sc

from .grafana import Target, Variable
from .promql import Scope, label, require

SERVICE = "job"
QUEUE = label(sc.MESSAGING_DESTINATION_NAME)
TASK = label(sc.CELERY_TASK_NAME)
STATE = label(sc.CELERY_TASK_STATE)
ROUTE = label(sc.HTTP_ROUTE)
METHOD = label(sc.HTTP_REQUEST_METHOD)
STATUS = label(sc.HTTP_RESPONSE_STATUS_CODE)
DEST = label(sc.OPS_TRACE_DESTINATION)
REASON = label(sc.OPS_TRACE_REASON)
RECORD_TYPE = label(sc.OPS_TRACE_RECORD_TYPE)
ERROR = label(sc.ERROR_TYPE)
PROVIDER = label(sc.GEN_AI_PROVIDER_NAME)
MODEL = label(sc.GEN_AI_REQUEST_MODEL)
TOKEN_TYPE = label(sc.GEN_AI_TOKEN_TYPE)
ESTIMATED = label(sc.GEN_AI_USAGE_ESTIMATED)
TENANT = label(sc.TENANT_ID)
APP = label(sc.APP_ID)
QUANTILES = (0.5, 0.95, 0.99)


def series(*specs: sc.MetricSpec) -> str:
    """A selector matching any series of ``specs`` (for ``label_values``)."""
    names: list[str] = []
    for spec in map(require, specs):
        suffix = "_count" if spec.instrument == "histogram" else ""
        names.append(spec.prometheus_name + suffix)
    return f'{{__name__=~"{"|".join(names)}"}}'


def legend(*labels: str) -> str:
    return " ".join("{{" + name + "}}" for name in labels)


def quantiles(scope: Scope, spec: sc.MetricSpec, by: tuple[str, ...]) -> tuple[Target, ...]:
    return tuple(
        Target(scope.quantile(spec, q, by), f"p{round(q * 100)} {legend(*by)}") for q in QUANTILES
    )


def service_var(*specs: sc.MetricSpec) -> Variable:
    return Variable("service", "Service", series(*specs), SERVICE)
