"""The user-facing example file keeps passing, its snapshot included."""

from __future__ import annotations

from pathlib import Path

import pytest

EXAMPLE = Path(__file__).parents[2] / "examples" / "test_difytrace_example.py"


def test_example_passes(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    # the first run writes the snapshot, which the plugin refuses to do when CI is set
    monkeypatch.delenv("CI", raising=False)
    pytester.makepyfile(test_difytrace_example=EXAMPLE.read_text())
    first = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    first.assert_outcomes(passed=6)
    first.stdout.fnmatch_lines(["*difytrace: 1 snapshot file(s) written*"])
    again = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    again.assert_outcomes(passed=6)
    snapshot = pytester.path / "snapshots" / "test_difytrace_example" / "test_snapshot.json"
    committed = EXAMPLE.parent / "snapshots" / "test_difytrace_example" / "test_snapshot.json"
    assert snapshot.read_text() == committed.read_text()


def test_example_without_snapshot_fails_under_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    pytester.makepyfile(test_difytrace_example=EXAMPLE.read_text())
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=5, failed=1)
    result.stdout.fnmatch_lines(["*is missing and CI is set*"])
