"""The README's promises that code can check: the Quick start block and the settings table."""

from __future__ import annotations

import re
from pathlib import Path

from difytrace.settings import settings_table_markdown

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text()


def _quick_start_commands() -> list[str]:
    section = README.split("## Quick start", 1)[1]
    block = re.search(r"```\n(.*?)```", section, re.S)
    assert block, "no code block under ## Quick start"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_quick_start_is_two_commands_demo_then_tests() -> None:
    demo, tests = _quick_start_commands()
    assert "difytrace demo" in demo
    assert "pytest" in tests


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "Quick start" in ci  # .ci/run extracts and runs the README's second command
    assert 'bash -c "$readme_test"' in ci


def test_settings_table_is_generated_from_the_settings() -> None:
    start, end = "<!-- settings-table:start -->\n", "<!-- settings-table:end -->"
    table = README.split(start, 1)[1].split(end, 1)[0].strip()
    assert table == settings_table_markdown(), (
        "README settings table is stale: regenerate it with `difytrace settings --markdown`"
    )
