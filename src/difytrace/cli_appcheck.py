"""What ``difytrace doctor --import`` learns by importing the app in a fresh interpreter.

The patch order can only be judged in a process that imported nothing before the app: the
doctor's own imports (``ssl`` through urllib, rich, ...) would make a correct app look wrong.
So the doctor runs :data:`SCRIPT` in a child interpreter: it imports the named modules first,
recording gevent's ``MonkeyPatchWarning``, and only then imports difytrace to report.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

SCRIPT = """
import importlib, json, sys, warnings
caught = []
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    for name in sys.argv[1:]:
        importlib.import_module(name.partition(":")[0])
from difytrace.cli_appcheck import MARK, report
print("\\n" + MARK + json.dumps(report(caught)), flush=True)
"""
# The report's line starts with this: the app may print after it (an atexit hook, a console
# exporter flushing at exit), so the report is found by its mark, not by its position.
MARK = "difytrace-app-report:"


@dataclass(frozen=True)
class AppReport:
    """Patch-order problems and instrumentation state of the imported app."""

    gevent_patched: bool
    problems: list[str]
    configured_by: str | None
    instrumented: dict[str, bool] = field(default_factory=dict)


def _monkey_warnings(caught: Sequence[warnings.WarningMessage]) -> list[str]:
    found = []
    for item in caught:
        if type(item.message).__name__ == "MonkeyPatchWarning":
            found.append(
                "gevent: " + str(item.message).split(". ", 1)[0] + " (patch earlier: "
                "gevent's monkey.patch_all() must run before anything imports ssl)"
            )
    return found


def _instrumented() -> dict[str, bool]:
    from difytrace.instrumentation import INSTRUMENTORS

    state: dict[str, bool] = {}
    for name, (_library, target) in INSTRUMENTORS.items():
        module, _, cls = target.partition(":")
        try:
            instrumentor = getattr(importlib.import_module(module), cls)()
        except Exception:
            continue
        state[name] = bool(instrumentor.is_instrumented_by_opentelemetry)
    return state


def _grpc_gevent_active() -> bool:
    cygrpc = sys.modules.get("grpc._cython.cygrpc")
    return bool(getattr(cygrpc, "g_gevent_activated", False))


def report(caught: Sequence[warnings.WarningMessage]) -> dict[str, Any]:
    """Run in the child, after the app's imports: the report as JSON-ready data."""
    from difytrace import bootstrap
    from difytrace import gevent as gevent_order

    problems = gevent_order.patch_order_problems()
    if _grpc_gevent_active():
        # The app called init_gevent() itself (Dify's app.py does): only difytrace's own
        # flag is unset, the order is right.
        problems = [p for p in problems if "init_gevent()" not in p]
    return {
        "gevent_patched": gevent_order.is_patched(),
        "problems": _monkey_warnings(caught) + problems,
        "configured_by": bootstrap.configured_by(),
        "instrumented": _instrumented(),
    }


def check_app(modules: Sequence[str], timeout_s: float = 60.0) -> AppReport:
    """Import ``modules`` (``pkg.module`` or gunicorn's ``pkg.module:app``) in a child
    interpreter; RuntimeError with the child's last error line when the import fails."""
    names = ", ".join(modules)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", SCRIPT, *modules],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"importing {names} took over {timeout_s:g} s") from None
    found = [line for line in proc.stdout.splitlines() if line.startswith(MARK)]
    if proc.returncode != 0 or not found:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"importing {names} failed: {last}")
    data = json.loads(found[-1].removeprefix(MARK))
    return AppReport(
        gevent_patched=bool(data["gevent_patched"]),
        problems=[str(p) for p in data["problems"]],
        configured_by=data["configured_by"],
        instrumented={str(k): bool(v) for k, v in data["instrumented"].items()},
    )
