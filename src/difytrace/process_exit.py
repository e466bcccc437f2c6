"""Flush what this process buffers, before it goes away.

Called where a worker process is known to end while its interpreter is still whole: Celery's
process and worker shutdown signals, gunicorn's ``worker_exit`` hook. ``atexit`` (the SDK's own
flush) is too late there: a billiard child leaves by ``os._exit``, and on Python 3.12 an atexit
callback may not start the thread that gevent needs to open a connection.
"""

from __future__ import annotations

import sys

from difytrace import bootstrap
from difytrace._guard import report_internal_error

#: Per provider: spans then metrics, so at most twice this. Celery's and gunicorn's shutdown
#: waits are of the same order; a collector that is down must not hold a SIGTERM past ~10 s.
FLUSH_TIMEOUT_MS = 4_000


def flush_before_exit(site: str) -> None:
    """Export buffered spans and metrics, then store pending ops_trace records; never raises.

    ``site`` names the caller in the internal-error report.
    """
    try:
        bootstrap.force_flush(FLUSH_TIMEOUT_MS)
    except Exception as exc:
        report_internal_error(site, exc)
    # ops_trace records a task submitted and the outbox thread has not stored yet.
    outbox = sys.modules.get("difytrace.ops_trace.outbox")
    if outbox is not None:
        try:
            outbox.shutdown(2.0)  # within the ~10 s a stopping process is given
        except Exception as exc:
            report_internal_error(site, exc)
