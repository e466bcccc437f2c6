"""The command line's surface: help with examples everywhere, one-line errors, settings."""

from __future__ import annotations

import pytest

from difytrace.cli import build_parser, main
from difytrace.settings import settings_table_markdown
from tests.cli.cli_support import run_cli

COMMANDS = ("demo", "doctor", "receive", "settings", "worker", "dlq")


def test_every_command_is_registered() -> None:
    parser = build_parser()
    choices = next(a for a in parser._actions if a.dest == "command").choices
    assert choices is not None
    assert set(COMMANDS) <= set(choices)


@pytest.mark.parametrize("command", COMMANDS)
def test_help_has_examples(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "examples:\n" in out
    assert f"difytrace {command}" in out.split("examples:", 1)[1]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bogus"], "invalid choice: 'bogus'"),
        (["receive", "--port", "99999"], "port 99999 is not in 0..65535"),
        (["doctor", "--timeout", "soon"], "invalid float value: 'soon'"),
    ],
)
def test_usage_errors_are_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("difytrace")
    assert message in err


def test_settings_markdown_is_the_readme_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["settings", "--markdown"]) == 0
    assert capsys.readouterr().out == settings_table_markdown() + "\n"


def test_settings_table_lists_every_variable() -> None:
    proc = run_cli("settings")
    assert proc.returncode == 0
    assert "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" in proc.stdout
    assert "DIFYTRACE_OPS_TRACE_DESTINATIONS" in proc.stdout


def test_doctor_names_a_bad_setting() -> None:
    proc = run_cli("doctor", env={"OTEL_TRACES_SAMPLER": "sometimes"})
    assert proc.returncode == 1
    assert "OTEL_TRACES_SAMPLER='sometimes' is invalid" in proc.stdout
