"""Instructions per operation, counted by valgrind: a figure other processes cannot move.

CPU time on a shared 2-core machine swings by tens of percent with the load of whatever else
runs. valgrind's cachegrind (``--cache-sim=no``) counts the instructions a process executes,
every thread included, and gives the same count run after run. The cost of one operation is
``(count(n) - count(0)) / n``: both runs do the same imports, set-up and warm-up, so only the
``n`` operations differ. Both run under one hash seed (``PYTHONHASHSEED=0`` unless the caller
sets one): with a random seed per process, dict and set layouts, and so the instructions of
imports and set-up, differ between the two runs by more than a small ``n`` of operations cost
(the LLM counts swung by ±50k a call). Instructions are not time (cache misses, syscalls and
sleeping are not in them), so this is the second figure beside CPU time, not a replacement.

A benchmark child that supports it takes ``--count N``: set up, warm up, run ``N`` operations,
exit.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

I_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")


def available() -> bool:
    """Whether valgrind is installed (the column is left out otherwise)."""
    return shutil.which("valgrind") is not None


def count(argv: Sequence[str], env: Mapping[str, str] | None = None) -> int:
    """Instructions executed by ``argv`` (all its threads), under cachegrind."""
    done = subprocess.run(
        [
            "valgrind",
            "--tool=cachegrind",
            "--cache-sim=no",
            "--cachegrind-out-file=/dev/null",
            *argv,
        ],
        env={"PYTHONHASHSEED": "0", **(os.environ if env is None else env)},
        capture_output=True,
        text=True,
        check=False,
    )
    found = I_REFS.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"{' '.join(argv)} failed under valgrind:\n{done.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def per_operation(
    argv_for: Callable[[int], Sequence[str]],
    operations: int = 1000,
    env: Mapping[str, str] | None = None,
) -> float:
    """Instructions of one operation: ``argv_for(n)`` runs ``n`` of them after its set-up.

    The two runs go side by side (each is one single-threaded valgrind process, and the
    count does not depend on what else the machine does)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        full = pool.submit(count, argv_for(operations), env)
        empty = pool.submit(count, argv_for(0), env)
        return (full.result() - empty.result()) / operations
