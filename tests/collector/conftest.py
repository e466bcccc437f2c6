"""Collector config tests: the three profiles in collector/ and the pinned component data."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))

from collector_support import PROFILES, load_profile


@pytest.fixture(params=PROFILES)
def profile(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    """(name, parsed config) for each profile."""
    return request.param, load_profile(request.param)


@pytest.fixture(scope="session")
def components() -> dict[str, Any]:
    """The pinned otelcol-contrib component data (tests/collector/otelcol-contrib-v*.yaml)."""
    (path,) = Path(__file__).parent.glob("otelcol-contrib-v*.yaml")
    return dict(yaml.safe_load(path.read_text()))
