"""Helpers shared by the collector tests (this directory is put on sys.path by conftest)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

COLLECTOR = Path(__file__).resolve().parents[2] / "collector"
PROFILES = ("agent", "gateway", "single-node")


def load_profile(name: str) -> dict[str, Any]:
    """One profile, parsed (``${env:...}`` left as text, as the collector sees it first)."""
    return dict(yaml.safe_load((COLLECTOR / f"{name}.yaml").read_text()))
