"""Stream proxies: the span of a streamed call ends exactly once, however the stream ends.

A proxy stands in for the provider's stream object (everything else is forwarded) and ends the
invocation when the stream is exhausted, raises, is closed (``close()``, ``aclose()``, leaving
``with``/``async with``), or is abandoned: garbage-collected before any of those. Each chunk
goes to an *accumulator* that fills the invocation (first chunk time, usage chunk, finish
reasons, output text when content capture is on).
"""

from __future__ import annotations

import inspect
from typing import Any, Protocol

import wrapt

from difytrace._guard import internal_errors, report_internal_error
from difytrace.instrumentation.llm.invocation import Invocation


class Accumulator(Protocol):
    """Reads the chunks of one stream into the :class:`Invocation` it was made for."""

    def chunk(self, chunk: Any) -> None:
        """Account for one chunk."""

    def finish(self) -> None:
        """Complete the invocation's response fields before it ends."""


def _end(inv: Invocation, acc: Accumulator, exc: BaseException | None) -> None:
    if inv.ended:
        return
    with internal_errors("llm.stream.finish"):
        acc.finish()
    if exc is None:
        inv.stop()
    else:
        inv.fail(exc)


class SyncStreamProxy(wrapt.ObjectProxy):  # type: ignore[misc,type-arg]
    """Proxy of a synchronous stream (iterator, context manager, ``close()``)."""

    def __init__(self, wrapped: Any, inv: Invocation, acc: Accumulator) -> None:
        super().__init__(wrapped)
        self._self_inv = inv
        self._self_acc = acc
        self._self_chunk = acc.chunk  # bound once: __next__ runs per chunk

    def __iter__(self) -> SyncStreamProxy:
        return self

    def __next__(self) -> Any:
        try:
            chunk = self.__wrapped__.__next__()
        except StopIteration:
            _end(self._self_inv, self._self_acc, None)
            raise
        except Exception as exc:
            _end(self._self_inv, self._self_acc, exc)
            raise
        try:  # per chunk: a plain try is cheaper than the guard's context manager
            self._self_chunk(chunk)
        except Exception as exc:
            report_internal_error("llm.stream.chunk", exc)
        return chunk

    def __enter__(self) -> SyncStreamProxy:
        self.__wrapped__.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> Any:
        try:
            return self.__wrapped__.__exit__(*exc_info)
        finally:
            _end(self._self_inv, self._self_acc, exc_info[1])

    def close(self) -> None:
        """Close the underlying stream and end the span with what was received."""
        try:
            self.__wrapped__.close()
        finally:
            _end(self._self_inv, self._self_acc, None)

    def __del__(self) -> None:
        inv = getattr(self, "_self_inv", None)
        if inv is not None and not inv.ended:
            _end(inv, self._self_acc, None)
            # Abandoned mid-stream: release the connection now rather than leak the socket.
            with internal_errors("llm.stream.abandon"):
                closer = getattr(self.__wrapped__, "close", None)
                if callable(closer):
                    closer()


class AsyncStreamProxy(wrapt.ObjectProxy):  # type: ignore[misc,type-arg]
    """Proxy of an asynchronous stream (async iterator, async context manager, close)."""

    def __init__(self, wrapped: Any, inv: Invocation, acc: Accumulator) -> None:
        super().__init__(wrapped)
        self._self_inv = inv
        self._self_acc = acc
        self._self_chunk = acc.chunk  # bound once: __next__ runs per chunk

    def __aiter__(self) -> AsyncStreamProxy:
        return self

    async def __anext__(self) -> Any:
        try:
            chunk = await self.__wrapped__.__anext__()
        except StopAsyncIteration:
            _end(self._self_inv, self._self_acc, None)
            raise
        except Exception as exc:
            _end(self._self_inv, self._self_acc, exc)
            raise
        try:  # per chunk: a plain try is cheaper than the guard's context manager
            self._self_chunk(chunk)
        except Exception as exc:
            report_internal_error("llm.stream.chunk", exc)
        return chunk

    async def __aenter__(self) -> AsyncStreamProxy:
        await self.__wrapped__.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> Any:
        try:
            return await self.__wrapped__.__aexit__(*exc_info)
        finally:
            _end(self._self_inv, self._self_acc, exc_info[1])

    def close(self) -> Any:
        """Close the underlying stream and end the span, keeping its calling convention.

        OpenAI's ``AsyncStream.close`` is a coroutine (awaited by the caller: the span ends
        then); litellm's async stream wrapper has a plain ``close()`` (the span ends now).
        """
        try:
            result = self.__wrapped__.close()
        except BaseException:
            _end(self._self_inv, self._self_acc, None)
            raise
        if inspect.isawaitable(result):
            return self._ending_after(result)
        _end(self._self_inv, self._self_acc, None)
        return result

    async def aclose(self) -> None:
        """``aclose()`` of async generators and of streams that offer it."""
        closer = getattr(self.__wrapped__, "aclose", None) or self.__wrapped__.close
        try:
            result = closer()
        except BaseException:
            _end(self._self_inv, self._self_acc, None)
            raise
        await self._ending_after(result)

    async def _ending_after(self, pending: Any) -> Any:
        try:
            return (await pending) if inspect.isawaitable(pending) else pending
        finally:
            _end(self._self_inv, self._self_acc, None)

    def __del__(self) -> None:
        inv = getattr(self, "_self_inv", None)
        if inv is not None and not inv.ended:
            _end(inv, self._self_acc, None)
