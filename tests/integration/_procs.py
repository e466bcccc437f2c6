"""Start and stop the real processes of the end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

BIN = Path(sys.executable).parent
HERE = Path(__file__).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Proc:
    """A child process whose combined output goes to a log file."""

    popen: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return
            if self.popen.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not seen in {self.log}:\n{self.output()[-3000:]}")

    def terminate(self, timeout: float = 10.0) -> float:
        """SIGTERM; return how long the process took to exit (fails past ``timeout``)."""
        start = time.monotonic()
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            raise AssertionError(
                f"no exit within {timeout} s of SIGTERM:\n{self.output()}"
            ) from None
        return time.monotonic() - start


def start(args: list[str], *, env: dict[str, str], log: Path, instrument: bool = True) -> Proc:
    """Start ``args`` (a program in this env's bin dir), under opentelemetry-instrument."""
    full_env = {**os.environ, "PYTHONPATH": str(HERE), "DIFYTRACE_STRICT": "1", **env}
    full_env.pop("PYTEST_CURRENT_TEST", None)
    command = [str(BIN / args[0]), *args[1:]]
    if instrument:
        command = [str(BIN / "opentelemetry-instrument"), *command]
    with log.open("wb") as handle:  # the child keeps its own copy of the descriptor
        popen = subprocess.Popen(
            command,
            env=full_env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=HERE,
            start_new_session=True,
        )
    return Proc(popen, log)


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def wait_until(predicate: Callable[[], object], *, timeout: float, what: str) -> None:
    """Poll ``predicate`` until it is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"waited {timeout} s for {what}"
        time.sleep(0.05)
