"""Run every benchmark and print its table: ``python benchmarks/run.py [flask celery llm ops]``.

Each ``bench_<name>.py`` module has a ``main()`` that measures difytrace against its baselines
in the same run and prints a markdown table of figures and ratios. Timings are CPU time per
operation on this machine; compare ratios, not absolute numbers, across machines.
"""

from __future__ import annotations

import importlib
import platform
import sys
from pathlib import Path

NAMES = ("flask", "celery", "llm", "ops_trace")


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(Path(__file__).parent))
    wanted = argv or list(NAMES)
    print(f"# difytrace benchmarks — Python {platform.python_version()}, {platform.machine()}\n")
    for name in wanted:
        try:
            module = importlib.import_module(f"bench_{name}")
        except ModuleNotFoundError:
            print(f"## {name}: no benchmark yet\n")
            continue
        print(f"## {name}\n")
        module.main()
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
