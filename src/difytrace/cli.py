"""The ``difytrace`` command: demo, doctor, receive, settings (and ops_trace's worker, dlq).

Every command has ``--help`` with examples; a failure prints one line ``difytrace: error: …``
and exits non-zero.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from rich.console import Console

from difytrace.cli_args import positive_int
from difytrace.exceptions import DifytraceError

Handler = Callable[[argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (subcommands inherit the class)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see: {self.prog} --help)\n")


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is not in 0..65535")
    return port


def _parser(
    prog: str,
    help_text: str,
    examples: str,
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    return sub.add_parser(
        prog,
        help=help_text,
        description=help_text,
        epilog="examples:\n" + examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def console() -> Console:
    """The output console; wide enough for waterfalls when the output is not a terminal."""
    if sys.stdout.isatty():
        return Console()
    columns = os.environ.get("COLUMNS", "")
    return Console(width=int(columns) if columns.isdigit() else 160)


def _demo(args: argparse.Namespace) -> int:
    from difytrace.demo import runner

    return runner.run(Path(args.out), console(), dict(os.environ))


def _settings(args: argparse.Namespace) -> int:
    from difytrace.settings import SETTINGS, settings_table_markdown

    if args.markdown:
        print(settings_table_markdown())
        return 0
    from rich.table import Table

    table = Table("setting", "variables (highest precedence first)", "default")
    for s in SETTINGS:
        table.add_row(s.name, ", ".join(s.env), "" if s.default in ("", None) else repr(s.default))
    console().print(table)
    return 0


def _receive(args: argparse.Namespace) -> int:
    from difytrace import cli_receive

    return cli_receive.serve(
        host=args.host,
        port=args.port,
        json_path=Path(args.json) if args.json else None,
        settle_s=args.settle,
        max_traces=args.max_traces,
        console=console(),
    )


def _doctor(args: argparse.Namespace) -> int:
    from difytrace import doctor

    return doctor.run(modules=args.imports, timeout_s=args.timeout, environ=None, console=console())


def _add_doctor(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    doctor = _parser(
        "doctor",
        "Check settings, gevent patch order, instrumentation, destinations and "
        "the ops_trace queue; exit 1 when a check fails.",
        "  difytrace doctor\n"
        "  difytrace doctor --import app:app        # also check the app's patch order\n"
        "  OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318 difytrace doctor\n",
        sub,
    )
    doctor.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE (or gunicorn's module:app) in a "
        "fresh interpreter first, as the app starts; repeatable",
    )
    doctor.add_argument(
        "--timeout",
        type=float,
        default=3.0,
        metavar="SECONDS",
        help="timeout of each probe; the worker ping waits half of it (default: %(default)s)",
    )
    doctor.set_defaults(handler=_doctor)


def _add_receive(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    receive = _parser(
        "receive",
        "Run a local OTLP/HTTP receiver and draw incoming traces as trees.",
        "  difytrace receive                       # then OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318\n"
        "  difytrace receive --port 0 --json traces.otlp.json\n"
        "  difytrace receive --max-traces 1        # exit after the first trace\n",
        sub,
    )
    receive.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s)"
    )
    receive.add_argument(
        "--port",
        type=_port,
        default=4318,
        help="port to listen on, 0 for any free one (default: %(default)s)",
    )
    receive.add_argument(
        "--json", metavar="FILE", help="also write every span received to FILE as OTLP/JSON"
    )
    receive.add_argument(
        "--settle",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="draw a trace once no span arrived for it this long (default: 1)",
    )
    receive.add_argument(
        "--max-traces",
        type=positive_int,
        metavar="N",
        help="exit after drawing N traces (default: run until Ctrl-C)",
    )
    receive.set_defaults(handler=_receive)


def _add_ops_trace(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``worker`` and ``dlq`` commands, when the ops_trace package provides them."""
    import importlib

    try:
        ops_cli = importlib.import_module("difytrace.ops_trace.cli")
    except ImportError:
        return
    register = getattr(ops_cli, "register", None)
    if callable(register):
        register(sub)


_OWN_COMMANDS = ("demo", "settings", "doctor", "receive")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser of the ``difytrace`` command. With ``command`` one of difytrace's
    own, the ops_trace commands (seconds of imports) are left out."""
    parser: argparse.ArgumentParser = _Parser(
        prog="difytrace",
        description="OpenTelemetry for Dify-style Flask + Celery + LLM apps.",
        epilog="examples:\n  difytrace demo\n  difytrace doctor\n  difytrace receive --port 4318",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="command", required=True)
    demo = _parser(
        "demo",
        "Run a small Dify-shaped Flask + Celery app and draw its traces.",
        "  difytrace demo\n  difytrace demo --out /tmp/demo.otlp.json\n"
        "  REDIS_URL=redis://localhost:6379/0 difytrace demo   # use a real Redis\n",
        sub,
    )
    demo.add_argument(
        "--out",
        default="difytrace-demo.otlp.json",
        help="where to write the spans as OTLP/JSON (default: %(default)s)",
    )
    demo.set_defaults(handler=_demo)
    settings = _parser(
        "settings",
        "Print every setting, its variables and default.",
        "  difytrace settings\n  difytrace settings --markdown > table.md\n",
        sub,
    )
    settings.add_argument(
        "--markdown", action="store_true", help="print the README's markdown table"
    )
    settings.set_defaults(handler=_settings)
    _add_doctor(sub)
    _add_receive(sub)
    if command not in _OWN_COMMANDS:
        _add_ops_trace(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(next((a for a in argv if not a.startswith("-")), None))
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except (DifytraceError, OSError, RuntimeError, TimeoutError) as exc:
        print(f"difytrace: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("difytrace: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        # A bug of ours or an unexpected library error: still one line; the traceback on demand.
        if os.environ.get("DIFYTRACE_DEBUG"):
            raise
        print(
            f"difytrace: error: {type(exc).__name__}: {_one_line(exc)} "
            "(DIFYTRACE_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return 1


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


if __name__ == "__main__":
    raise SystemExit(main())
