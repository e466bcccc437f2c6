"""The ops_trace worker as the demo runs it: difytrace's own Celery app, plus a ready file.

``celery -A difytrace.demo.ops_worker worker -Q ops_trace`` is the demo's spelling of
``celery -A difytrace.ops_trace.worker worker -Q ops_trace``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from celery import signals

from difytrace.ops_trace.worker import app

__all__ = ["app"]


@signals.worker_ready.connect  # type: ignore[untyped-decorator]
def _announce_ready(**_: Any) -> None:
    ready = os.environ.get("DIFYTRACE_DEMO_READY_FILE")
    if ready:
        Path(ready).write_text(str(os.getpid()))
