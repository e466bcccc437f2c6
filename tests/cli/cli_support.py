"""Helpers of the CLI tests: the fake Langfuse + LangSmith handler and the CLI runner."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
LANGFUSE_KEYS = ("pk-lf-test", "sk-lf-test")
LANGSMITH_KEY = "lsv2-test"


class VendorHandler(BaseHTTPRequestHandler):
    """Answers the doctor's read-only probes as Langfuse and LangSmith do."""

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        if self.path == "/api/public/projects":
            good = "Basic " + base64.b64encode(":".join(LANGFUSE_KEYS).encode()).decode()
            ok = self.headers.get("authorization") == good
        elif self.path.startswith("/sessions"):
            ok = self.headers.get("x-api-key") == LANGSMITH_KEY
        else:
            self._answer(404, b'{"message": "not found"}')
            return
        self._answer(200, b'{"data": []}') if ok else self._answer(401, b'{"error": "bad key"}')

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``difytrace`` command, as a user would."""
    full_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OTEL_", "DIFYTRACE_", "OTLP_"))
        and k not in ("CELERY_BROKER_URL", "REDIS_URL", "ENABLE_OTEL")
    }
    full_env.update({"DIFYTRACE_STRICT": "1", "COLUMNS": "250", **(env or {})})
    return subprocess.run(
        [str(BIN / "difytrace"), *args],
        env=full_env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
