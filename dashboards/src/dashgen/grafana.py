"""A small Grafana 11 dashboard model: just what difytrace's dashboards use."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
SCHEMA_VERSION = 39  # Grafana 11.0


@dataclass(frozen=True)
class Target:
    """One PromQL query of a panel; ``legend`` is Grafana's legendFormat."""

    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    """A time series (default) or stat panel; ``unit`` is a Grafana unit id (s, short, ...)."""

    title: str
    unit: str
    targets: tuple[Target, ...]
    description: str = ""
    kind: str = "timeseries"
    width: int = 12


@dataclass(frozen=True)
class Variable:
    """A query template variable: ``label_values(<series>, <label>)``, multi-select with All."""

    name: str
    label: str
    series: str
    source_label: str
    #: The regex "All" stands for; None = every value found. ``.*`` also matches series
    #: without the label (an LLM call outside any tenant's request still counts by model).
    all_value: str | None = None

    @property
    def query(self) -> str:
        return f"label_values({self.series}, {self.source_label})"


@dataclass
class Dashboard:
    """A dashboard: title, uid, variables and panels laid out two per row."""

    uid: str
    title: str
    description: str
    variables: tuple[Variable, ...]
    panels: list[Panel] = field(default_factory=list)
    tags: tuple[str, ...] = ("difytrace",)

    def to_json(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": list(self.tags),
            "timezone": "browser",
            "editable": True,
            "graphTooltip": 1,
            "schemaVersion": SCHEMA_VERSION,
            "version": 1,
            "refresh": "30s",
            "time": {"from": "now-6h", "to": "now"},
            "templating": {"list": [_datasource_var(), *(_query_var(v) for v in self.variables)]},
            "annotations": {"list": []},
            "links": [],
            "panels": _layout(self.panels),
        }


def _datasource_var() -> dict[str, Any]:
    return {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "hide": 0,
        "refresh": 1,
        "regex": "",
    }


def _query_var(var: Variable) -> dict[str, Any]:
    return {
        "name": var.name,
        "label": var.label,
        "type": "query",
        "datasource": DATASOURCE,
        "definition": var.query,
        "query": {"query": var.query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "refresh": 2,
        "includeAll": True,
        **({"allValue": var.all_value} if var.all_value is not None else {}),
        "multi": True,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
        "hide": 0,
        "regex": "",
    }


def _layout(panels: list[Panel]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    x = y = 0
    for panel_id, panel in enumerate(panels, start=1):
        height = 4 if panel.kind == "stat" else 8
        if x + panel.width > 24:
            x, y = 0, y + 8
        out.append(_panel_json(panel, panel_id, {"h": height, "w": panel.width, "x": x, "y": y}))
        x += panel.width
    return out


def _panel_json(panel: Panel, panel_id: int, grid: dict[str, int]) -> dict[str, Any]:
    targets = [
        {
            "datasource": DATASOURCE,
            "expr": t.expr,
            "legendFormat": t.legend,
            "range": True,
            "refId": chr(ord("A") + i),
        }
        for i, t in enumerate(panel.targets)
    ]
    options: dict[str, Any] = {"tooltip": {"mode": "multi", "sort": "desc"}}
    if panel.kind == "timeseries":
        options["legend"] = {
            "showLegend": True,
            "displayMode": "table",
            "placement": "bottom",
            "calcs": ["mean", "max"],
        }
    else:
        options["reduceOptions"] = {"calcs": ["lastNotNull"], "fields": "", "values": False}
    return {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": grid,
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "options": options,
        "targets": targets,
    }


def by_labels(expr: str) -> list[str]:
    """Every label named in a ``by (...)`` clause of ``expr`` (``le`` excluded)."""
    found: list[str] = []
    for group in re.findall(r"\bby\s*\(([^)]*)\)", expr):
        found += [g.strip() for g in group.split(",") if g.strip() and g.strip() != "le"]
    return list(dict.fromkeys(found))
