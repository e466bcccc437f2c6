"""The difytrace pytest plugin (entry point ``pytest11: difytrace``), active once installed.

At ``pytest_configure`` it installs global SDK tracer and meter providers that capture in
memory, and turns on strict mode (difytrace's internal errors re-raise instead of being
logged; ``DIFYTRACE_STRICT=1`` is exported so child processes inherit it). Fixtures:

``span_capture``
    A :class:`~difytrace.testing.SpanCapture`, cleared at the start of each test.
``otlp_receiver``
    A fresh :class:`~difytrace.testing.OTLPReceiver` on 127.0.0.1 (ephemeral port) per test;
    point child processes at it with ``OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint``.
``otlp_receiver_session``
    One receiver per test session (per xdist worker), for long-lived processes started by
    module- or session-scoped fixtures; call ``.clear()`` yourself.
``openai_server``
    An OpenAI-compatible model server with scripted responses and streams
    (:class:`~difytrace.testing.openai_server.OpenAIServer`).
``fake_langfuse`` / ``fake_langsmith``
    Langfuse (OTLP + ingestion) and LangSmith (runs API) servers with auth checks, decoded
    requests and fault injection (:mod:`difytrace.testing.vendors`).

Opt out with ``pytest -p no:difytrace`` (or ``addopts = "-p no:difytrace"``); nothing is
installed then.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from difytrace import _guard
from difytrace.testing.capture import SpanCapture, install_global_capture
from difytrace.testing.openai_fixtures import openai_server
from difytrace.testing.receiver import OTLPReceiver
from difytrace.testing.vendors import fake_langfuse, fake_langsmith

_STRICT_KEY = pytest.StashKey[tuple[bool, str | None]]()


def pytest_configure(config: pytest.Config) -> None:
    """Install the capturing providers and strict mode."""
    config.stash[_STRICT_KEY] = (_guard.STRICT, os.environ.get("DIFYTRACE_STRICT"))
    _guard.STRICT = True
    os.environ["DIFYTRACE_STRICT"] = "1"
    install_global_capture()


def pytest_unconfigure(config: pytest.Config) -> None:
    """Restore strict mode as it was (the providers stay: they are set once per process)."""
    if _STRICT_KEY not in config.stash:
        return
    strict, env = config.stash[_STRICT_KEY]
    _guard.STRICT = strict
    if env is None:
        os.environ.pop("DIFYTRACE_STRICT", None)
    else:
        os.environ["DIFYTRACE_STRICT"] = env


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Start every test with an empty capture, so that memory stays bounded in long runs."""
    install_global_capture().clear()


@pytest.fixture
def span_capture() -> SpanCapture:
    """Spans and metrics of this process, cleared at the start of the test."""
    capture = install_global_capture()
    capture.clear()
    return capture


@pytest.fixture
def otlp_receiver() -> Iterator[OTLPReceiver]:
    """An OTLP/HTTP receiver for this test only (own port)."""
    with OTLPReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="session")
def otlp_receiver_session() -> Iterator[OTLPReceiver]:
    """One OTLP/HTTP receiver for the whole session (one per xdist worker)."""
    with OTLPReceiver() as receiver:
        yield receiver


#: Fixtures defined in their own modules, re-exported so pytest registers them with the plugin.
__all__ = ["fake_langfuse", "fake_langsmith", "openai_server"]
