"""Alert rules: promtool accepts them, and every alert has a firing and a quiet unit test."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from dashgen import alert_tests, alerts
from dashgen.__main__ import DEFAULT_OUT, RULE_TESTS, RULES


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False, timeout=60)


def test_promtool_check_rules(promtool: str) -> None:
    proc = _run(promtool, "check", "rules", RULES, cwd=DEFAULT_OUT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(alerts.ALERTS)} rules found" in proc.stdout


def test_promtool_test_rules(promtool: str) -> None:
    proc = _run(promtool, "test", "rules", RULE_TESTS, cwd=DEFAULT_OUT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_alert_fires_and_stays_quiet_in_some_case() -> None:
    tests = yaml.safe_load((DEFAULT_OUT / RULE_TESTS).read_text())["tests"]
    fired: dict[str, int] = {}
    quiet: dict[str, int] = {}
    for case in tests:
        for check in case["alert_rule_test"]:
            bucket = fired if check["exp_alerts"] else quiet
            bucket[check["alertname"]] = bucket.get(check["alertname"], 0) + 1
    names = {a.name for a in alerts.ALERTS}
    assert set(fired) == names
    assert set(quiet) == names


def test_rule_tests_detect_a_broken_threshold(promtool: str, tmp_path: Path) -> None:
    """The unit tests have teeth: raising the lag threshold makes them fail."""
    shutil.copy(DEFAULT_OUT / RULE_TESTS, tmp_path)
    rules = (DEFAULT_OUT / RULES).read_text()
    broken = rules.replace(f"> {alerts.LAG_P99_MAX_S}\n", "> 100000\n")
    assert broken != rules
    (tmp_path / Path(RULES).name).write_text(broken)
    proc = _run(promtool, "test", "rules", Path(RULE_TESTS).name, cwd=tmp_path)
    assert proc.returncode != 0
    assert "DifytraceOpsTraceLagHigh" in proc.stdout + proc.stderr


def test_cases_cover_exactly_the_alerts() -> None:
    assert set(alert_tests.CASES) == {a.name for a in alerts.ALERTS}


def test_alerts_have_severity_and_text() -> None:
    for alert in alerts.ALERTS:
        assert alert.severity in {"warning", "critical"}
        assert alert.summary
        assert alert.description


@pytest.mark.parametrize("alert", alerts.ALERTS, ids=lambda a: a.name)
def test_alert_exprs_use_catalogued_series(alert: alerts.Alert) -> None:
    from difytrace import semconv

    names = {s.prometheus_name for s in (*semconv.METRICS, *semconv.COLLECTOR_METRICS)}
    assert any(n in alert.expr for n in names)


@pytest.mark.parametrize("alert", alerts.ALERTS, ids=lambda a: a.name)
def test_annotations_only_use_labels_the_alert_has(alert: alerts.Alert) -> None:
    import re

    from dashgen.grafana import by_labels

    used = set(re.findall(r"\$labels\.(\w+)", alert.summary + alert.description))
    assert used <= set(by_labels(alert.expr)), (used, alert.expr)
