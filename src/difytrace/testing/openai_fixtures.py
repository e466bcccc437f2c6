"""The ``openai_server`` pytest fixture: a fresh :class:`OpenAIServer` per test (own port)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from difytrace.testing.openai_server import OpenAIServer


@pytest.fixture
def openai_server() -> Iterator[OpenAIServer]:
    """An OpenAI-compatible server on 127.0.0.1 for this test; script it with ``.script()``.

    Example::

        def test_rate_limit_is_an_error_span(openai_server, span_capture):
            openai_server.script(Reply(status=429, retry_after="0"), Reply(text="ok"))
            client = openai.OpenAI(base_url=openai_server.base_url,
                                   api_key=openai_server.api_key, max_retries=1)
            client.chat.completions.create(model="gpt-4o-mini", messages=messages)
            assert len(openai_server.requests) == 2
    """
    with OpenAIServer() as server:
        yield server
