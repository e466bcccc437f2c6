"""Fixtures of the CLI tests: a fake Langfuse + LangSmith API and a closed port."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer

import pytest

from tests.cli.cli_support import VendorHandler


@pytest.fixture
def fake_vendor() -> Iterator[str]:
    """Base URL of a fake Langfuse/LangSmith API on 127.0.0.1."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), VendorHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port bound but not listening: connecting to it is refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()
