"""The ``openai_server`` pytest fixture: a fresh :class:`OpenAIServer` per test (own port)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from difytrace.testing.openai_server import OpenAIServer


@pytest.fixture
def openai_server() -> Iterator[OpenAIServer]:
    """An OpenAI-compatible server on 127.0.0.1 for this test; script it with ``.script()``."""
    with OpenAIServer() as server:
        yield server
