"""Dashboards / alert rules tests: the generator lives in dashboards/src (not installed)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

DASHGEN_SRC = Path(__file__).resolve().parents[2] / "dashboards" / "src"
# dashgen (the generator, not installed) and this directory's helpers (dash_synthetic).
for _path in (DASHGEN_SRC, Path(__file__).resolve().parent):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (CI installs it: .ci/install-prometheus.sh)")
    return path


@pytest.fixture(scope="session")
def promtool() -> str:
    """Path of promtool (Debian package ``prometheus``); skips when missing."""
    return _binary("promtool")


@pytest.fixture(scope="session")
def prometheus_bin() -> str:
    """Path of the prometheus server binary; skips when missing."""
    return _binary("prometheus")
