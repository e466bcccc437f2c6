"""The demo's Celery workers, each a real separate process as in production."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console

WORKER_START_TIMEOUT_S = 40.0

# Our receiver, not whatever the user's environment names.
_DROPPED = (
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTLP_TRACE_ENDPOINT",
    "OTLP_METRIC_ENDPOINT",
    "OTEL_TRACES_EXPORTER",
    "DIFYTRACE_EXPORTER",
    "OTEL_SDK_DISABLED",
)


def poll(done: Callable[[], bool], timeout: float, what: str) -> None:
    """Wait until ``done()``; TimeoutError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout:.0f}s")
        time.sleep(0.05)


def tail(path: Path, lines: int = 5) -> str:
    """The last lines of a log file, on one line."""
    if not path.exists():
        return ""
    return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])


class Worker:
    """One ``celery worker`` child process; ready once it wrote its ready file."""

    def __init__(self, name: str, app: str, queue: str, workdir: Path, env: dict[str, str]) -> None:
        self.name = name
        self.log = workdir / f"{name}.log"
        self.ready = workdir / f"{name}.ready"
        self.env = {k: v for k, v in {**os.environ, **env}.items() if k not in _DROPPED}
        self.env["DIFYTRACE_DEMO_READY_FILE"] = str(self.ready)
        self.cmd = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            app,
            "worker",
            "-P",
            "solo",
            "-Q",
            queue,
            "-n",
            f"{name}@%h",
            "--without-mingle",
            "--without-gossip",
            "-l",
            "WARNING",
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the process (returns at once)."""
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                self.cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )

    def is_up(self) -> bool:
        """Ready, or dead (then :meth:`check` raises)."""
        return self.ready.exists() or (self.proc is not None and self.proc.poll() is not None)

    def check(self) -> None:
        """RuntimeError with the log's tail when the process has exited."""
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"the {self.name} worker exited: {tail(self.log)}")

    def stop(self) -> None:
        """Warm shutdown (SIGTERM: the worker flushes its spans), then kill if it hangs."""
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@contextmanager
def running(workers: list[Worker], console: Console) -> Iterator[Callable[[], None]]:
    """Start the workers at once; the block gets a function that waits until each is ready.
    They are stopped at the end."""
    names = " and ".join(w.name for w in workers)

    def wait_ready() -> None:
        with console.status(f"starting the {names} worker processes…"):
            poll(
                lambda: all(w.is_up() for w in workers),
                WORKER_START_TIMEOUT_S,
                f"the {names} workers did not start",
            )
        for worker in workers:
            worker.check()
        console.print(
            f"[bold]workers[/]: {names} ready (pids "
            + ", ".join(str(w.proc.pid) for w in workers if w.proc)
            + ")"
        )

    try:
        for worker in workers:
            worker.start()
        yield wait_ready
    finally:
        for worker in workers:
            worker.stop()
