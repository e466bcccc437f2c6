"""Dashboard lint: ids, datasource variable, rate() on counters, units, legends, names."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from dashgen.__main__ import DEFAULT_OUT as DASHBOARDS
from dashgen.grafana import by_labels

from difytrace import semconv

BOARDS = sorted(DASHBOARDS.glob("*.json"))
SPECS = (*semconv.METRICS, *semconv.COLLECTOR_METRICS)
#: Series that only make sense under rate()/increase(): counters and histogram parts.
CUMULATIVE = {
    s.prometheus_name + suffix
    for s in SPECS
    for suffix in (("",) if s.instrument == "counter" else ("_bucket", "_sum", "_count"))
    if s.instrument in {"counter", "histogram"}
}
KNOWN_SERIES = CUMULATIVE | {s.prometheus_name for s in SPECS}
IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
PROMQL_WORDS = {
    "sum", "by", "rate", "increase", "irate", "histogram_quantile", "or", "and", "max", "min",
    "deriv", "on", "le", "count", "avg", "job", "instance",
}  # fmt: skip


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def _targets(board: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(p, t) for p in board["panels"] for t in p["targets"]]


def _series_names(expr: str) -> list[str]:
    stripped = re.sub(r"\b(?:by|on|without|ignoring)\s*\([^)]*\)", "", expr)
    stripped = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\"[^\"]*\"", "", stripped)
    return [w for w in IDENT.findall(stripped) if w not in PROMQL_WORDS]


@pytest.fixture(params=BOARDS, ids=[p.stem for p in BOARDS])
def board(request: pytest.FixtureRequest) -> dict[str, Any]:
    return _load(request.param)


def test_panel_ids_unique(board: dict[str, Any]) -> None:
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))


def test_datasource_variable_used_everywhere(board: dict[str, Any]) -> None:
    variables = board["templating"]["list"]
    assert variables[0]["type"] == "datasource"
    assert variables[0]["query"] == "prometheus"
    ref = "${" + variables[0]["name"] + "}"
    for var in variables[1:]:
        assert var["datasource"]["uid"] == ref
    for panel, target in _targets(board):
        assert panel["datasource"]["uid"] == ref
        assert target["datasource"]["uid"] == ref


def test_every_variable_is_used(board: dict[str, Any]) -> None:
    text = json.dumps(board["panels"])
    for var in board["templating"]["list"][1:]:
        assert f"${var['name']}" in text, var["name"]


def test_counters_only_under_rate_or_increase(board: dict[str, Any]) -> None:
    for _, target in _targets(board):
        expr = target["expr"]
        for name in set(_series_names(expr)) & CUMULATIVE:
            uses = len(re.findall(rf"\b{name}\b", expr))
            wrapped = len(re.findall(rf"\b(?:rate|increase|irate)\(\s*{name}\b", expr))
            assert uses == wrapped, (name, expr)


def test_only_catalogued_series(board: dict[str, Any]) -> None:
    for _, target in _targets(board):
        names = _series_names(target["expr"])
        assert names, target["expr"]
        assert set(names) <= KNOWN_SERIES, set(names) - KNOWN_SERIES


def test_units_and_legends(board: dict[str, Any]) -> None:
    for panel, target in _targets(board):
        assert panel["fieldConfig"]["defaults"]["unit"], panel["title"]
        assert panel["options"]["legend"]["showLegend"], panel["title"]
        legend = target["legendFormat"]
        assert legend.strip(), panel["title"]
        used = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", legend))
        assert used, (panel["title"], legend)
        assert used <= set(by_labels(target["expr"])), (panel["title"], legend)


def test_refids_unique_per_panel(board: dict[str, Any]) -> None:
    for panel in board["panels"]:
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs))
