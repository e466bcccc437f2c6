"""``difytrace worker`` and ``difytrace dlq list|show|replay|purge``.

:func:`register` adds the commands to the ``difytrace`` parser (``difytrace.cli`` calls it).
Each handler takes the parsed arguments and returns the exit code.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from difytrace.cli_args import positive_int
from difytrace.ops_trace.config import Runtime
from difytrace.ops_trace.dlq import DeadLetters
from difytrace.settings import load_settings


def _add(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    help_text: str,
    examples: str,
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=help_text,
        description=help_text,
        epilog="examples:\n" + examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``worker`` and ``dlq`` to the ``difytrace`` command."""
    worker = _add(
        sub,
        "worker",
        "Run an ops_trace worker (Celery, queue ops_trace).",
        "  difytrace worker\n  difytrace worker --concurrency 4 --pool prefork\n",
    )
    worker.add_argument("--concurrency", "-c", type=positive_int, default=1)
    worker.add_argument(
        "--pool", "-P", default="prefork", choices=["prefork", "solo", "threads", "gevent"]
    )
    worker.add_argument("--loglevel", "-l", default="info")
    worker.add_argument(
        "--hostname", "-n", help="node name (celery's default: celery@%%h); unique per process"
    )
    worker.set_defaults(handler=run_worker)

    dlq = _add(
        sub,
        "dlq",
        "Inspect and replay ops_trace dead letters.",
        "  difytrace dlq list\n  difytrace dlq show 3f2a...\n"
        "  difytrace dlq replay --all\n  difytrace dlq purge --all\n",
    )
    actions = dlq.add_subparsers(dest="dlq_command", metavar="action", required=True)
    listing = _add(
        actions,
        "list",
        "List dead letters, oldest first.",
        "  difytrace dlq list\n  difytrace dlq list --limit 500 --json > letters.jsonl\n",
    )
    listing.add_argument(
        "--limit", type=positive_int, default=50, help="at most this many (default: 50)"
    )
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(handler=dlq_list)
    show = _add(
        actions,
        "show",
        "Show one dead letter with its record.",
        "  difytrace dlq show 3f2a9c0e4b1d\n",
    )
    show.add_argument("id", help="a dead letter's id, as `difytrace dlq list` prints it")
    show.set_defaults(handler=dlq_show)
    for name, handler, verb in (("replay", dlq_replay, "Re-queue"), ("purge", dlq_purge, "Delete")):
        action = _add(
            actions,
            name,
            f"{verb} dead letters (ids, or --all).",
            f"  difytrace dlq {name} 3f2a9c0e4b1d 77b0d1e2a3c4\n  difytrace dlq {name} --all\n",
        )
        action.add_argument("ids", nargs="*", help="dead letter ids")
        action.add_argument("--all", action="store_true", help="every dead letter")
        action.set_defaults(handler=handler)


def run_worker(args: argparse.Namespace) -> int:
    """Start the Celery worker on the ops_trace queue (blocks)."""
    from difytrace.ops_trace import worker

    queue = worker.runtime.settings.ops_trace_queue
    worker.app.worker_main(
        argv=[
            "worker",
            "-Q",
            queue,
            "-c",
            str(args.concurrency),
            "-P",
            args.pool,
            "-l",
            args.loglevel,
            *(["-n", args.hostname] if args.hostname else []),
        ]
    )
    return 0


def _letters() -> tuple[Runtime, DeadLetters]:
    runtime = Runtime(load_settings())
    return runtime, DeadLetters(runtime.store)


def dlq_list(args: argparse.Namespace, console: Console | None = None) -> int:
    """Print dead letters (a table, or JSON lines with ``--json``)."""
    _, letters = _letters()
    entries = letters.entries(args.limit)
    if args.json:
        for entry in entries:
            sys.stdout.write(json.dumps(entry.summary()) + "\n")
        return 0
    table = Table("id", "when", "destination", "reason", "attempts", "error")
    for e in entries:
        when = datetime.fromtimestamp(e.at, UTC).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(e.id, when, e.destination or "-", e.reason, str(e.attempts), e.error[:80])
    out = console or Console()
    out.print(table)
    out.print(f"{letters.count()} dead letters")
    return 0


def dlq_show(args: argparse.Namespace) -> int:
    """Print one dead letter with its record; exit 1 when there is none with that id."""
    _, letters = _letters()
    entry = letters.show(args.id)
    if entry is None:
        print(f"difytrace: error: no dead letter {args.id!r}", file=sys.stderr)
        return 1
    data: dict[str, Any] = entry.summary()
    try:
        data["record"] = json.loads(entry.record)
    except ValueError:
        data["record"] = entry.record
    print(json.dumps(data, indent=2, ensure_ascii=False))
    return 0


def _selection(args: argparse.Namespace) -> list[str] | None:
    if not args.all and not args.ids:
        raise SystemExit("difytrace: error: give dead-letter ids or --all")
    return None if args.all else list(args.ids)


def dlq_replay(args: argparse.Namespace) -> int:
    """Re-queue dead letters with a progress bar; prints how many were replayed."""
    runtime, letters = _letters()
    ids = _selection(args)
    total = letters.count() if ids is None else len(ids)
    columns = (TextColumn("replaying"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task("replay", total=total)
        done = letters.replay(ids, runtime.publish, progress=lambda n: progress.advance(task, n))
    print(f"replayed {done} dead letters")
    return 0


def dlq_purge(args: argparse.Namespace) -> int:
    """Delete dead letters; prints how many."""
    _, letters = _letters()
    print(f"purged {letters.purge(_selection(args))} dead letters")
    return 0
