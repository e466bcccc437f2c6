"""gevent patch order: gevent → ``grpc.experimental.gevent.init_gevent()`` → psycogreen.

Patching in another order, or after threads and sockets exist, deadlocks processes. difytrace
applies the order as early as it runs (the distro hook of ``opentelemetry-instrument``, or
:func:`difytrace.configure`) when the process is going to run gevent, and otherwise checks it
and warns with what is wrong.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar, cast

logger = logging.getLogger("difytrace.gevent")
_T = TypeVar("_T")

_GUNICORN_GEVENT = {
    "gevent",
    "gevent_wsgi",
    "gevent_pywsgi",
    "gunicorn.workers.ggevent.GeventWorker",
}
# Whether this module called grpc's init_gevent() in this process (a one-element set, no global).
_done: set[str] = set()


def _option_values(argv: Sequence[str], short: str, long: str) -> list[str]:
    values: list[str] = []
    for index, arg in enumerate(argv):
        if arg in (short, long) and index + 1 < len(argv):
            values.append(argv[index + 1])
        elif arg.startswith(long + "="):
            values.append(arg.split("=", 1)[1])
        elif arg.startswith(short) and len(arg) > len(short) and not arg.startswith("--"):
            values.append(arg[len(short) :])
    return values


def gevent_requested(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> bool:
    """Whether this process is a gunicorn with gevent workers or a celery gevent pool."""
    argv = list(sys.argv if argv is None else argv)
    env = os.environ if environ is None else environ
    program = os.path.basename(argv[0]) if argv else ""
    if "gunicorn" in program:
        args = argv[1:] + shlex.split(env.get("GUNICORN_CMD_ARGS", ""))
        return any(v in _GUNICORN_GEVENT for v in _option_values(args, "-k", "--worker-class"))
    if "celery" in program or (len(argv) > 2 and argv[1:3] == ["-m", "celery"]):
        return "gevent" in _option_values(argv[1:], "-P", "--pool")
    return False


def is_patched() -> bool:
    """Whether gevent has monkey-patched the socket module in this process."""
    if "gevent" not in sys.modules:
        return False
    from gevent import monkey

    return bool(monkey.is_module_patched("socket"))


def run_off_hub(fn: Callable[..., _T], *args: Any) -> _T:
    """``fn(*args)`` on a real OS thread when gevent has patched threading (the calling
    greenlet waits; the hub goes on serving requests), a plain call otherwise. For CPU-heavy
    work on a patched "thread", which is a greenlet and would hold the hub for its duration."""
    if "gevent" in sys.modules:
        from gevent import monkey

        if monkey.is_module_patched("threading"):
            from gevent import get_hub

            return cast("_T", get_hub().threadpool.apply(fn, args))
    return fn(*args)


_THREADING_NAMES = ("Thread", "Event", "Lock", "RLock", "Condition", "Semaphore", "Timer")


def use_gevent_threading() -> int:
    """When gevent has patched ``threading``, re-point the names OpenTelemetry modules bound
    before the patch at the patched objects; returns how many were re-pointed.

    Run before the first span (the instrumentor runs it), so that the threads the SDK starts at
    the first span are greenlets. A no-op without gevent, or when the patch came first.
    """
    gevent_monkey = sys.modules.get("gevent.monkey")
    if gevent_monkey is None or not gevent_monkey.is_module_patched("threading"):
        return 0
    count = 0
    for module_name, module in list(sys.modules.items()):
        if module is None or not module_name.startswith("opentelemetry"):
            continue
        for name in _THREADING_NAMES:
            patched = getattr(threading, name)
            original = gevent_monkey.get_original("threading", name)
            if original is not patched and getattr(module, name, None) is original:
                setattr(module, name, patched)
                count += 1
    return count


def apply_patch_order() -> None:
    """Patch gevent, then gRPC, then psycopg2, each only if installed and not done yet."""
    from gevent import monkey

    if not monkey.is_module_patched("socket"):
        monkey.patch_all()
    use_gevent_threading()
    if "grpc" not in _done:
        try:
            import grpc.experimental.gevent as grpc_gevent
        except ImportError:
            pass
        else:
            grpc_gevent.init_gevent()
            _done.add("grpc")
    try:
        from psycogreen.gevent import patch_psycopg
    except ImportError:
        return
    patch_psycopg()


def _grpc_gevent_initialised() -> bool:
    """Whether init_gevent() ran in this process, by difytrace or by the app (Dify's app.py)."""
    if "grpc" in _done:
        return True
    cygrpc = sys.modules.get("grpc._cython.cygrpc")
    return bool(getattr(cygrpc, "g_gevent_activated", False))


def patch_order_problems() -> list[str]:
    """What is wrong with the patch order in this process, as sentences (empty when fine)."""
    problems: list[str] = []
    patched = is_patched()
    if not patched:
        if "psycogreen" in sys.modules:
            problems.append("psycogreen is loaded but gevent has not patched this process")
        return problems
    if "grpc" in sys.modules and not _grpc_gevent_initialised():
        problems.append(
            "gevent is patched but grpc.experimental.gevent.init_gevent() was not "
            "called by difytrace; call it right after monkey.patch_all()"
        )
    psycopg2 = sys.modules.get("psycopg2.extensions")
    if psycopg2 is not None and getattr(psycopg2, "get_wait_callback", lambda: None)() is None:
        problems.append(
            "gevent is patched but psycopg2 has no wait callback; call "
            "psycogreen.gevent.patch_psycopg() after gevent and grpc"
        )
    return problems


def warn_on_problems() -> None:
    """Log one warning per patch-order problem found."""
    for problem in patch_order_problems():
        logger.warning("difytrace: gevent patch order: %s", problem)
