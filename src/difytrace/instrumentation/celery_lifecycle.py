"""Worker process lifecycle: flush telemetry before a Celery process goes away.

Providers need nothing at fork: bootstrap builds the span processor, the exporters and the
meter provider at the first span of each process, so a prefork child starts its own. What
the SDK cannot do alone is flush at exit: billiard pool children leave with ``os._exit``
(atexit never runs), including when ``--max-tasks-per-child`` recycles them. So every way a
worker process ends flushes first:

* ``worker_process_shutdown`` — a prefork child ends (shutdown, recycling, ``pool_shrink``);
* ``worker_shutdown`` — the main process stops (solo, threads and gevent pools run tasks here).

Under ``-P gevent`` one more thing is needed
(:func:`difytrace.gevent.use_gevent_threading`): the SDK's metric reader module does
``from threading import Event, Thread``, and it is imported (by the distro) before gevent
patches ``threading``. Its thread was then a real OS thread whose ``join`` never returns under
gevent: each worker hung 30 s at exit (MeterProvider's shutdown timeout).
"""

from __future__ import annotations

import sys
from typing import Any

from difytrace import bootstrap
from difytrace._guard import report_internal_error

#: Per provider: spans then metrics, so at most twice this. Celery's own shutdown waits are
#: of the same order; a collector that is down must not hold a SIGTERM past ~10 s.
FLUSH_TIMEOUT_MS = 4_000


def flush_on_process_shutdown(**_: Any) -> None:
    """``worker_process_shutdown``: a pool child is about to ``os._exit``."""
    _flush("celery.worker_process_shutdown")


def flush_on_worker_shutdown(**_: Any) -> None:
    """``worker_shutdown``: the worker's main process is stopping."""
    _flush("celery.worker_shutdown")


def _flush(site: str) -> None:
    try:
        bootstrap.force_flush(FLUSH_TIMEOUT_MS)
    except Exception as exc:
        report_internal_error(site, exc)
    # ops_trace records a task submitted and the outbox thread has not stored yet: a pool
    # child leaves by os._exit, where atexit (the outbox's usual flush) does not run.
    outbox = sys.modules.get("difytrace.ops_trace.outbox")
    if outbox is not None:
        try:
            outbox.shutdown(2.0)  # within the ~10 s a stopping process is given
        except Exception as exc:
            report_internal_error(site, exc)
