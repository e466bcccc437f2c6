"""A streamed WSGI response body whose end, and every chunk, are observed.

The server (gunicorn) iterates the body and calls ``close()`` when it is done, or early when
the client has gone; the observer's context is attached around each chunk and around
``close()`` and detached in between, so what the generator does nests under the request while
the server's own code between chunks runs outside it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from time import time_ns
from typing import Protocol

from opentelemetry import context
from opentelemetry.context import Context

_attach = context.attach
_detach = context.detach


class StreamObserver(Protocol):
    """The request a body belongs to."""

    ctx: Context
    chunks: int
    first_ns: int

    def safe_finish(self, exc: BaseException | None = None, disconnected: bool = False) -> None:
        """End the request (once), never raising."""


class ObservedBody:
    """A streamed WSGI body: its observer's context is current while each chunk is made, and
    the observer hears of the end (exhausted, failed, or closed early by the server)."""

    __slots__ = ("_body", "_it", "_req")

    def __init__(self, body: Iterable[bytes], req: StreamObserver) -> None:
        self._body = body
        self._it: Iterator[bytes] | None = None
        self._req = req

    def __iter__(self) -> ObservedBody:
        return self

    def __next__(self) -> bytes:
        req = self._req
        token = _attach(req.ctx)
        try:
            if self._it is None:
                self._it = iter(self._body)
            chunk = next(self._it)
            # What the generator made current carries over to its next chunk (a span opened
            # around a ``yield`` stays the parent of what follows), not to the server's code.
            req.ctx = context.get_current()
        except StopIteration:
            req.safe_finish()
            raise
        except BaseException as exc:
            req.safe_finish(exc)
            raise
        finally:
            _detach(token)
        if not req.chunks:
            req.first_ns = time_ns()
        req.chunks += 1
        return chunk

    def close(self) -> None:
        """Close the body (client gone or response done); ends the span if still open."""
        req = self._req
        token = _attach(req.ctx)
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        except BaseException as exc:
            req.safe_finish(exc, disconnected=True)
            raise
        finally:
            req.safe_finish(disconnected=True)
            _detach(token)
