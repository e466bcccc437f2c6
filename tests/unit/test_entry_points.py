"""The entry points opentelemetry-instrument loads are the ones difytrace declares."""

from __future__ import annotations

import tomllib
from importlib.metadata import entry_points
from pathlib import Path

from difytrace.instrumentation import INSTRUMENTORS

PYPROJECT = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())


def test_instrumentor_table_matches_pyproject() -> None:
    declared = PYPROJECT["project"]["entry-points"]["opentelemetry_instrumentor"]
    assert declared == {name: target for name, (_, target) in INSTRUMENTORS.items()}


def test_installed_metadata_exposes_distro_and_configurator() -> None:
    distros = {ep.name: ep.value for ep in entry_points(group="opentelemetry_distro")}
    configurators = {ep.name: ep.value for ep in entry_points(group="opentelemetry_configurator")}
    assert distros.get("difytrace") == "difytrace.distro:DifytraceDistro"
    assert configurators.get("difytrace") == "difytrace.distro:DifytraceConfigurator"


def test_every_entry_point_target_imports() -> None:
    for group in (
        "opentelemetry_distro",
        "opentelemetry_configurator",
        "opentelemetry_instrumentor",
    ):
        for ep in entry_points(group=group):
            if ep.value.startswith("difytrace."):
                assert ep.load() is not None, ep
