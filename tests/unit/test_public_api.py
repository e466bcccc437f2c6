"""The public surface is small and pinned: changing it is a decision, not an accident."""

from __future__ import annotations

import difytrace


def test_public_names_are_pinned() -> None:
    assert sorted(difytrace.__all__) == sorted(
        [
            "ConfigurationError",
            "DifytraceError",
            "RecordError",
            "Settings",
            "__version__",
            "configure",
            "current_llm_call",
            "force_flush",
            "llm_call",
            "load_settings",
            "set_identity",
            "set_identity_extractor",
            "shutdown",
        ]
    )


def test_every_public_name_has_a_docstring() -> None:
    for name in difytrace.__all__:
        if name == "__version__":
            continue
        assert getattr(difytrace, name).__doc__, name
