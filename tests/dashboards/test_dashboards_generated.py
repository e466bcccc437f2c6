"""The committed dashboards/*.json and alert files are exactly what dashboards/src generates."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from dashgen import promql
from dashgen.__main__ import DEFAULT_OUT as DASHBOARDS
from dashgen.__main__ import main, render

from difytrace import semconv

ROOT = DASHBOARDS.parent


def test_committed_files_are_regenerated() -> None:
    stale = [rel for rel, text in render().items() if (DASHBOARDS / rel).read_text() != text]
    assert stale == [], f"run `PYTHONPATH=dashboards/src python -m dashgen`; stale: {stale}"


def test_check_mode_reports_a_stale_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--out", str(tmp_path)]) == 0
    assert main(["--out", str(tmp_path), "--check"]) == 0
    (tmp_path / "api.json").write_text("{}\n")
    assert main(["--out", str(tmp_path), "--check"]) == 1
    assert "api.json" in capsys.readouterr().err


def test_cli_check_runs_from_the_repo_root() -> None:
    env = {"PYTHONPATH": str(DASHBOARDS / "src")}
    proc = subprocess.run(
        [sys.executable, "-m", "dashgen", "--check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_dashboard_is_valid_grafana_json() -> None:
    uids = set()
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        assert board["schemaVersion"] >= 39  # Grafana 11
        assert board["uid"] not in uids
        uids.add(board["uid"])
    assert len(uids) == 5


def test_unknown_metric_fails_loudly() -> None:
    ghost = semconv.MetricSpec("difytrace.nope", "counter", "1", "", ())
    with pytest.raises(promql.UnknownMetric):
        promql.Scope({}).rate(ghost)


def test_unknown_attribute_fails_loudly() -> None:
    with pytest.raises(promql.UnknownMetric):
        promql.Scope({}).rate(semconv.OPS_TRACE_DELIVERED, ("tenant_id",))


def test_provisioning_files_parse() -> None:
    import yaml

    providers = yaml.safe_load((DASHBOARDS / "provisioning" / "dashboards.yaml").read_text())
    assert providers["providers"][0]["type"] == "file"
    sources = yaml.safe_load((DASHBOARDS / "provisioning" / "datasources.yaml").read_text())
    assert sources["datasources"][0]["type"] == "prometheus"
