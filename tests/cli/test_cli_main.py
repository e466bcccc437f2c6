"""The command line's surface: help with examples everywhere, one-line errors, settings."""

from __future__ import annotations

import argparse

import pytest

from difytrace import cli
from difytrace.cli import build_parser, main
from difytrace.settings import settings_table_markdown
from tests.cli.cli_support import run_cli

COMMANDS = ("demo", "doctor", "receive", "settings", "worker", "dlq")


def test_every_command_is_registered() -> None:
    parser = build_parser()
    choices = next(a for a in parser._actions if a.dest == "command").choices
    assert choices is not None
    assert set(COMMANDS) <= set(choices)


def _command_paths(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> list[tuple[str, ...]]:
    """Every command and subcommand of ``parser``, as argv prefixes."""
    found = [path]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _command_paths(sub, (*path, name))
    return found


ALL_PATHS = _command_paths(build_parser())


def test_every_subcommand_is_walked() -> None:
    assert {("dlq", "replay"), ("dlq", "list"), ("worker",), ()} <= set(ALL_PATHS)


@pytest.mark.parametrize("path", ALL_PATHS, ids=lambda p: " ".join(p) or "difytrace")
def test_help_has_examples(path: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*path, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "examples:\n" in out
    assert " ".join(("difytrace", *path)) in out.split("examples:", 1)[1]


def test_an_unexpected_error_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(args: argparse.Namespace) -> int:
        raise ValueError("bad\nthing")

    monkeypatch.setattr(cli, "_settings", broken)
    monkeypatch.delenv("DIFYTRACE_DEBUG", raising=False)
    assert main(["settings"]) == 1
    err = capsys.readouterr().err
    assert (
        err == "difytrace: error: ValueError: bad thing (DIFYTRACE_DEBUG=1 shows the traceback)\n"
    )
    monkeypatch.setenv("DIFYTRACE_DEBUG", "1")
    with pytest.raises(ValueError, match="bad"):
        main(["settings"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bogus"], "invalid choice: 'bogus'"),
        (["receive", "--port", "99999"], "port 99999 is not in 0..65535"),
        (["doctor", "--timeout", "soon"], "invalid float value: 'soon'"),
        (["dlq", "list", "--limit", "0"], "--limit: expected 1 or more, got 0"),
        (["dlq", "list", "--limit", "all"], "--limit: expected a whole number, got 'all'"),
        (["worker", "--concurrency", "-2"], "expected 1 or more, got -2"),
        (["receive", "--max-traces", "0"], "--max-traces: expected 1 or more, got 0"),
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
