"""Dashboard lint: ids, datasource variable, rate() on counters, units, legends, names, and the
template variables of each board (as documented in dashboards/README.md)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from dashgen.__main__ import DEFAULT_OUT as DASHBOARDS
from dashgen.grafana import by_labels
from dashgen.promql import labels_of

from difytrace import semconv
from difytrace.semconv import MetricSpec

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
    "deriv", "on", "le", "count", "avg", "job", "instance", "label_replace",
}  # fmt: skip
#: Series name → its spec (histograms by their _bucket/_sum/_count parts).
SERIES: dict[str, MetricSpec] = {
    s.prometheus_name + suffix: s
    for s in SPECS
    for suffix in (("_bucket", "_sum", "_count") if s.instrument == "histogram" else ("",))
}
#: The template variables the issue asks for → the labels each may filter on. ``service`` is
#: ``job`` (service.name) on difytrace's series and ``service_name`` on the collector's span
#: metrics, whose ``job`` may be empty.
VARIABLE_LABELS: dict[str, tuple[str, ...]] = {
    "service": ("job", semconv.SERVICE_NAME.replace(".", "_")),
    "queue": (semconv.MESSAGING_DESTINATION_NAME.replace(".", "_"),),
    "tenant": (semconv.TENANT_ID.replace(".", "_"),),
    "app": (semconv.APP_ID.replace(".", "_"),),
}
README = DASHBOARDS / "README.md"


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


def _documented_variables() -> dict[str, list[str]]:
    """board file stem → variables, from the table under "## Template variables" in the README."""
    section = README.read_text().split("## Template variables", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, list[str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0].startswith("`"):
            rows[cells[0].strip("`").removesuffix(".json")] = re.findall(r"`(\w+)`", cells[1])
    return rows


def _selectors(expr: str) -> list[tuple[MetricSpec, str]]:
    """(spec, matchers text) of every series selector in ``expr``."""
    found = []
    for match in re.finditer(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?", expr):
        spec = SERIES.get(match.group(1))
        if spec is not None:
            found.append((spec, match.group(2) or ""))
    return found


def test_variables_are_the_documented_ones() -> None:
    documented = _documented_variables()
    assert sorted(documented) == [p.stem for p in BOARDS], "README table rows vs dashboards"
    for path in BOARDS:
        names = [v["name"] for v in _load(path)["templating"]["list"]]
        assert names == documented[path.stem], path.stem


def test_variables_cover_every_label_shown(board: dict[str, Any]) -> None:
    """A board has the variable of a label when it shows a metric carrying that label, and the
    variable then filters every selector of such a metric (so "All but tenant-a" never leaves
    one panel unfiltered)."""
    names = {v["name"] for v in board["templating"]["list"]}
    selectors = [sel for _, t in _targets(board) for sel in _selectors(t["expr"])]
    assert selectors
    for var, var_labels in VARIABLE_LABELS.items():
        carrying = [(s, m) for s, m in selectors if set(var_labels) & set(labels_of(s))]
        if not carrying:
            assert var not in names, f"{board['uid']}: ${var} filters nothing here"
            continue
        assert var in names, f"{board['uid']} shows {carrying[0][0].name} but has no ${var}"
        for spec, matchers in carrying:
            filters = [f'{lbl}=~"${var}"' for lbl in var_labels if lbl in labels_of(spec)]
            assert any(f in matchers for f in filters), (board["uid"], spec.name, matchers)


def test_optional_labels_keep_unlabelled_series_under_all(board: dict[str, Any]) -> None:
    """tenant/app are set only inside a request or task that knows them: "All" must be ``.*``
    (which also matches a missing label), not the list of values found, or calls without a
    tenant would vanish from every panel."""
    for var in board["templating"]["list"]:
        if var["name"] in {"tenant", "app"}:
            assert var.get("allValue") == ".*", (board["uid"], var["name"])
