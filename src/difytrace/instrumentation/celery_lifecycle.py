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

from typing import Any

from difytrace.process_exit import flush_before_exit


def flush_on_process_shutdown(**_: Any) -> None:
    """``worker_process_shutdown``: a pool child is about to ``os._exit``."""
    flush_before_exit("celery.worker_process_shutdown")


def flush_on_worker_shutdown(**_: Any) -> None:
    """``worker_shutdown``: the worker's main process is stopping."""
    flush_before_exit("celery.worker_shutdown")
