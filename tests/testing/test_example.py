"""The user-facing example file keeps passing, its snapshot included."""

from __future__ import annotations

from pathlib import Path

import pytest

EXAMPLE = Path(__file__).parents[2] / "examples" / "test_difytrace_example.py"


def test_example_passes(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_difytrace_example=EXAMPLE.read_text())
    first = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    first.assert_outcomes(passed=6)
    first.stdout.fnmatch_lines(["*difytrace: 1 snapshot file(s) written*"])
    again = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    again.assert_outcomes(passed=6)
    snapshot = pytester.path / "snapshots" / "test_difytrace_example" / "test_snapshot.json"
    committed = EXAMPLE.parent / "snapshots" / "test_difytrace_example" / "test_snapshot.json"
    assert snapshot.read_text() == committed.read_text()
