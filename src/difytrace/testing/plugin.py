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
``deterministic_ids``
    Spans started in this process during the test get trace and span ids 1, 2, 3 …
    (:mod:`difytrace.testing.ids`).
``fixed_clock``
    Span timestamps from a :class:`~difytrace.testing.FakeClock` (2025-01-01T00:00:00Z,
    1 ms per reading, ``.advance(seconds)``), restored after the test
    (:mod:`difytrace.testing.clock` says what it does not reach).
``trace_snapshot``
    ``trace_snapshot(span_capture)``: the normalised trace against a JSON file beside the
    test, written on the first run or with ``--difytrace-update-snapshots``.

Opt out with ``pytest -p no:difytrace`` (or ``addopts = "-p no:difytrace"``); nothing is
installed then.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from difytrace import _guard
from difytrace.testing import _render
from difytrace.testing.capture import SpanCapture, install_global_capture
from difytrace.testing.clock import FakeClock, use_clock
from difytrace.testing.ids import SequentialIdGenerator, use_sequential_ids
from difytrace.testing.openai_fixtures import openai_server
from difytrace.testing.receiver import OTLPReceiver
from difytrace.testing.snapshot import TraceSnapshot
from difytrace.testing.vendors import fake_langfuse, fake_langsmith

_STRICT_KEY = pytest.StashKey[tuple[bool, str | None]]()
_WRITTEN_KEY = pytest.StashKey[list[Path]]()
_COLUMNS_KEY = pytest.StashKey[int | None]()
_UPDATE_OPTION = "--difytrace-update-snapshots"


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--difytrace-update-snapshots``."""
    parser.getgroup("difytrace").addoption(
        _UPDATE_OPTION,
        action="store_true",
        default=False,
        help="rewrite the JSON files of trace_snapshot instead of comparing with them",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Install the capturing providers and strict mode."""
    config.stash[_STRICT_KEY] = (_guard.STRICT, os.environ.get("DIFYTRACE_STRICT"))
    _guard.STRICT = True
    os.environ["DIFYTRACE_STRICT"] = "1"
    config.stash[_WRITTEN_KEY] = []
    install_global_capture()


def pytest_sessionstart(session: pytest.Session) -> None:
    """Let failure drawings know how wide the terminal is (capture hides it from them)."""
    if session.config.pluginmanager.get_plugin("terminalreporter") is None:
        return  # -p no:terminal
    session.config.stash[_COLUMNS_KEY] = _render.set_terminal_columns(
        session.config.get_terminal_writer().fullwidth
    )


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Give back the width of an enclosing session (pytester runs sessions in sessions)."""
    if _COLUMNS_KEY in session.config.stash:
        _render.set_terminal_columns(session.config.stash[_COLUMNS_KEY])


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    """Say which snapshot files were written (new, or rewritten on request)."""
    written = config.stash.get(_WRITTEN_KEY, [])
    if written:
        terminalreporter.write_sep("-", f"difytrace: {len(written)} snapshot file(s) written")
        for path in written:
            terminalreporter.write_line(str(path))


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
    """Spans and metrics of this process, cleared at the start of the test.

    Example::

        def test_chat(client, span_capture):
            client.post("/chat", json={"query": "hi"})
            assert_tree(span_capture, S("POST /chat", children=[S("chat gpt-4o")]))
            assert span_capture.histogram("gen_ai.client.operation.duration").count == 1
    """
    capture = install_global_capture()
    capture.clear()
    return capture


@pytest.fixture
def otlp_receiver() -> Iterator[OTLPReceiver]:
    """An OTLP/HTTP receiver for this test only (own port).

    Example::

        def test_worker_span(otlp_receiver):
            env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.endpoint}
            subprocess.run([sys.executable, "job.py"], env=env, check=True)
            otlp_receiver.wait_for(name="process job", timeout=30)
    """
    with OTLPReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="session")
def otlp_receiver_session() -> Iterator[OTLPReceiver]:
    """One OTLP/HTTP receiver for the whole session (one per xdist worker).

    Example (a gunicorn server started once for the module)::

        @pytest.fixture(scope="module")
        def api(otlp_receiver_session):
            env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver_session.endpoint}
            with subprocess.Popen(["gunicorn", "app:app"], env=env) as server:
                yield server
                server.terminate()

        def test_chat(api, otlp_receiver_session):
            otlp_receiver_session.clear()
            ...
    """
    with OTLPReceiver() as receiver:
        yield receiver


@pytest.fixture
def deterministic_ids() -> Iterator[SequentialIdGenerator]:
    """Trace and span ids 1, 2, 3 … for spans started in this process during the test.

    Example::

        def test_ids(span_capture, deterministic_ids):
            with trace.get_tracer("app").start_as_current_span("job"):
                pass
            assert span_capture.spans()[0].trace_id == "0" * 31 + "1"
    """
    with use_sequential_ids() as ids:
        yield ids


@pytest.fixture
def fixed_clock() -> Iterator[FakeClock]:
    """Span timestamps from a fake clock: 2025-01-01T00:00:00Z, then 1 ms more per reading.

    Example::

        def test_timeout_span(span_capture, fixed_clock):
            with trace.get_tracer("app").start_as_current_span("slow call"):
                fixed_clock.advance(30)
            assert span_capture.spans()[0].duration_s == 30.001
    """
    with use_clock() as clock:
        yield clock


@pytest.fixture
def trace_snapshot(request: pytest.FixtureRequest) -> Iterator[TraceSnapshot]:
    """Compare a normalised trace with ``snapshots/<module>/<test>.json`` beside the test
    (``<Class>.<test>.json`` for a test in a class).

    Example::

        def test_chat_trace(client, span_capture, trace_snapshot):
            client.post("/chat", json={"query": "hi"})
            trace_snapshot(span_capture)   # first run: writes the file (fails under CI=1)
    """
    path = request.node.path
    # Named from the node id without its file: a class's test and a module function of the
    # same name (or two classes' tests) each get their own file.
    name = request.node.nodeid.split("::", 1)[-1].replace("::", ".")
    snapshot = TraceSnapshot(
        path.parent / "snapshots" / path.stem,
        name,
        update=bool(request.config.getoption(_UPDATE_OPTION)),
        create=not os.environ.get("CI"),
    )
    yield snapshot
    request.config.stash.get(_WRITTEN_KEY, []).extend(snapshot.written)


#: Fixtures defined in their own modules, re-exported so pytest registers them with the plugin.
__all__ = ["fake_langfuse", "fake_langsmith", "openai_server"]
