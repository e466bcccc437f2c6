"""An OpenAI-compatible HTTP server on 127.0.0.1 with scripted responses, for tests and demos.

Speaks the real wire format of ``/v1/chat/completions`` (JSON, and SSE ``data:`` lines ending
with ``[DONE]``, with or without the final usage chunk, tool-call deltas), ``/v1/responses``
(JSON and named SSE events) and ``/v1/embeddings`` (float lists or base64, as the SDK asks),
checks ``Authorization: Bearer <api_key>`` like the real API (401 ``invalid_api_key``), and
plays scripted faults: any status with an OpenAI error body (400/401/429 with ``Retry-After``,
500), a slow first byte, a connection dropped mid-stream. ::

    with OpenAIServer() as server:
        server.script(Reply(status=429, retry_after="0"))   # the next request only
        client = openai.OpenAI(base_url=server.base_url, api_key=server.api_key)

Replies not scripted are successes derived from the request (model echoed, ``stream`` and
``stream_options.include_usage`` honoured). ``server.requests`` records what arrived.
"""

from __future__ import annotations

import base64
import json
import struct
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_API_KEY = "sk-test-difytrace-0123456789abcdef"
DEFAULT_TEXT = "Hello from the difytrace fake OpenAI server, streaming in chunks of text."
_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    500: ("server_error", None),
}


@dataclass
class Reply:
    """One scripted reply; fields left at their defaults follow the request.

    Example::

        openai_server.script(
            Reply(status=429, retry_after="0"),                   # first request: rate limited
            Reply(text="Paris", usage={"prompt": 12, "completion": 1}),
            Reply(tool_calls=[{"name": "search", "arguments": '{"q": "x"}'}]),
            Reply(chunks=5, disconnect_after=3),                   # a stream cut mid-way
        )
    """

    status: int = 200
    text: str | None = None  # assistant text; split into ``chunks`` pieces when streamed
    chunks: int | None = None
    include_usage: bool | None = None  # None: as the request's stream_options asks
    tool_calls: list[dict[str, str]] | None = None  # [{"name": ..., "arguments": "{...}"}]
    finish_reason: str | None = None
    usage: dict[str, int] | None = None  # prompt/completion/cached/reasoning overrides
    first_byte_delay: float = 0.0
    disconnect_after: int | None = None  # drop the connection after this many SSE events
    retry_after: str | None = None
    message: str | None = None  # error message


@dataclass
class Request:
    """One request the server received.

    Example::

        (request,) = openai_server.requests
        assert request.path == "/v1/chat/completions"
        assert request.body["stream_options"] == {"include_usage": True}
    """

    method: str
    path: str
    headers: dict[str, str]
    body: Any = field(default=None)


class OpenAIServer:
    """The server; ``start()``/``stop()`` or a ``with`` block. ``base_url`` ends in ``/v1``.

    Example (the ``openai_server`` fixture gives a started one):

    >>> import openai
    >>> with OpenAIServer() as server:
    ...     client = openai.OpenAI(base_url=server.base_url, api_key=server.api_key)
    ...     server.script(Reply(text="Paris"))
    ...     answer = client.chat.completions.create(
    ...         model="gpt-4o-mini", messages=[{"role": "user", "content": "Capital of France?"}]
    ...     )
    ...     client.close()
    >>> answer.choices[0].message.content, server.requests[0].body["model"]
    ('Paris', 'gpt-4o-mini')
    """

    def __init__(self, *, api_key: str = DEFAULT_API_KEY, port: int = 0) -> None:
        self.api_key = api_key
        self.requests: list[Request] = []
        self._script: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._port = port
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``, for ``openai.OpenAI(base_url=...)``.

        Example (litellm)::

            litellm.completion(model="openai/gpt-4o-mini", api_base=openai_server.base_url,
                               api_key=openai_server.api_key, messages=messages)
        """
        if self._httpd is None:
            raise RuntimeError("OpenAIServer is not started")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    @property
    def port(self) -> int:
        """The listening port.

        >>> with OpenAIServer() as server:
        ...     server.base_url == f"http://127.0.0.1:{server.port}/v1"
        True
        """
        if self._httpd is None:
            raise RuntimeError("OpenAIServer is not started")
        return int(self._httpd.server_address[1])

    def script(self, *replies: Reply) -> None:
        """Queue replies for the next requests, in order.

        >>> server = OpenAIServer()
        >>> server.script(Reply(status=500), Reply(text="ok"))
        >>> server.next_reply().status, server.next_reply().text
        (500, 'ok')
        """
        with self._lock:
            self._script.extend(replies)

    def next_reply(self) -> Reply:
        """The next scripted reply, or the default success.

        >>> OpenAIServer().next_reply()
        Reply(status=200, text=None, ...)
        """
        with self._lock:
            return self._script.popleft() if self._script else Reply()

    def start(self) -> OpenAIServer:
        """Listen on 127.0.0.1 and serve on a daemon thread.

        >>> server = OpenAIServer().start()
        >>> server.base_url.startswith("http://127.0.0.1:")
        True
        >>> server.stop()
        """
        handler = type("Handler", (_Handler,), {"server_state": self})
        self._httpd = _QuietServer(("127.0.0.1", self._port), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="openai-fake-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket.

        >>> server = OpenAIServer().start()
        >>> server.stop()
        >>> server.base_url
        Traceback (most recent call last):
        ...
        RuntimeError: OpenAIServer is not started
        """
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> OpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client hanging up mid-request (closed or abandoned streams) is routine here.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _words(text: str, pieces: int) -> list[str]:
    """``text`` split into ``pieces`` non-empty parts (characters repeated if too short)."""
    pieces = max(pieces, 1)
    while len(text) < pieces:
        text = text + " " + text
    size, rest = divmod(len(text), pieces)
    out, pos = [], 0
    for i in range(pieces):
        n = size + (1 if i < rest else 0)
        out.append(text[pos : pos + n])
        pos += n
    return out


def _prompt_tokens(body: dict[str, Any]) -> int:
    source = body.get("messages") or body.get("input") or ""
    return max(len(json.dumps(source)) // 4, 1)


def _usage(body: dict[str, Any], reply: Reply, completion: int) -> dict[str, Any]:
    over = reply.usage or {}
    prompt = over.get("prompt", _prompt_tokens(body))
    out = over.get("completion", completion)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": out,
        "total_tokens": prompt + out,
        "prompt_tokens_details": {"cached_tokens": over.get("cached", 0), "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": over.get("reasoning", 0),
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_state: OpenAIServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            self._json(
                200,
                {
                    "object": "list",
                    "data": [
                        {"id": "gpt-4o-mini", "object": "model", "created": 0, "owned_by": "system"}
                    ],
                },
            )
        else:
            self._error(404, "Not found", Reply())

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        state = self.server_state
        state.requests.append(
            Request("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        )
        reply = state.next_reply()
        if reply.first_byte_delay:
            time.sleep(reply.first_byte_delay)  # the scripted fault itself, not a test wait
        if self.headers.get("Authorization") != f"Bearer {state.api_key}":
            shown = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
            self._error(
                401,
                f"Incorrect API key provided: {shown}. You can find your API "
                "key at https://platform.openai.com/account/api-keys.",
                reply,
                401,
            )
            return
        if not isinstance(body, dict):
            self._error(400, "We could not parse the JSON body of your request.", reply, 400)
            return
        if reply.status != 200:
            self._error(reply.status, reply.message or f"scripted error {reply.status}", reply)
            return
        path = self.path.split("?")[0].rstrip("/")
        if path.endswith("/chat/completions"):
            self._chat(body, reply)
        elif path.endswith("/responses"):
            self._responses(body, reply)
        elif path.endswith("/embeddings"):
            self._embeddings(body, reply)
        else:
            self._error(404, f"Unknown path {self.path}", reply, 404)

    # --- plumbing -----------------------------------------------------------------------
    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-request-id", f"req_{time.time_ns():x}")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, reply: Reply, code: int | None = None) -> None:
        kind, err_code = _ERROR_TYPES.get(code or status, ("api_error", None))
        headers = {"Retry-After": reply.retry_after} if reply.retry_after is not None else {}
        if status == 429:
            headers["x-ratelimit-remaining-requests"] = "0"
        self._json(
            status,
            {"error": {"message": message, "type": kind, "param": None, "code": err_code}},
            headers,
        )

    def _sse(self, events: list[tuple[str | None, Any]], reply: Reply) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        for i, (name, data) in enumerate(events):
            if reply.disconnect_after is not None and i >= reply.disconnect_after:
                self.wfile.write(b"5\r\ndata:")  # half a chunk, then the peer vanishes
                self.wfile.flush()
                self.close_connection = True
                return
            text = data if isinstance(data, str) else json.dumps(data)
            line = (f"event: {name}\n" if name else "") + f"data: {text}\n\n"
            raw = line.encode()
            self.wfile.write(f"{len(raw):x}\r\n".encode() + raw + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    # --- chat completions ---------------------------------------------------------------
    def _chat(self, body: dict[str, Any], reply: Reply) -> None:
        model = str(body.get("model") or "gpt-4o-mini")
        text = reply.text if reply.text is not None else DEFAULT_TEXT
        ident = f"chatcmpl-{time.time_ns():x}"
        finish = reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")
        if not body.get("stream"):
            pieces = len(text.split()) or 1
            message: dict[str, Any] = {
                "role": "assistant",
                "content": None if reply.tool_calls else text,
                "refusal": None,
            }
            if reply.tool_calls:
                message["tool_calls"] = [
                    {
                        "id": f"call_{i}",
                        "type": "function",
                        "function": {"name": c["name"], "arguments": c["arguments"]},
                    }
                    for i, c in enumerate(reply.tool_calls)
                ]
            self._json(
                200,
                {
                    "id": ident,
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model,
                    "system_fingerprint": "fp_difytrace",
                    "service_tier": "default",
                    "choices": [
                        {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
                    ],
                    "usage": _usage(body, reply, pieces),
                },
            )
            return
        events = self._chat_events(body, reply, model=model, ident=ident, text=text, finish=finish)
        self._sse(events, reply)

    def _chat_events(
        self, body: dict[str, Any], reply: Reply, *, model: str, ident: str, text: str, finish: str
    ) -> list[tuple[str | None, Any]]:
        include = reply.include_usage
        if include is None:
            include = bool((body.get("stream_options") or {}).get("include_usage"))
        base = {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": "fp_difytrace",
        }

        def chunk(delta: dict[str, Any], reason: str | None = None) -> dict[str, Any]:
            out = {
                **base,
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}
                ],
            }
            if include:
                out["usage"] = None
            return out

        events: list[tuple[str | None, Any]] = [
            (None, chunk({"role": "assistant", "content": "", "refusal": None}))
        ]
        pieces = 0
        if reply.tool_calls:
            for i, call in enumerate(reply.tool_calls):
                events.append(
                    (
                        None,
                        chunk(
                            {
                                "tool_calls": [
                                    {
                                        "index": i,
                                        "id": f"call_{i}",
                                        "type": "function",
                                        "function": {"name": call["name"], "arguments": ""},
                                    }
                                ]
                            }
                        ),
                    )
                )
                for part in _words(call["arguments"], reply.chunks or 4):
                    pieces += 1
                    events.append(
                        (
                            None,
                            chunk({"tool_calls": [{"index": i, "function": {"arguments": part}}]}),
                        )
                    )
        else:
            for part in _words(text, reply.chunks or 8):
                pieces += 1
                events.append((None, chunk({"content": part})))
        events.append((None, chunk({}, finish)))
        if include:
            events.append((None, {**base, "choices": [], "usage": _usage(body, reply, pieces)}))
        events.append((None, "[DONE]"))
        return events

    # --- responses API ------------------------------------------------------------------
    def _responses(self, body: dict[str, Any], reply: Reply) -> None:
        model = str(body.get("model") or "gpt-4o-mini")
        text = reply.text if reply.text is not None else DEFAULT_TEXT
        ident = f"resp_{time.time_ns():x}"
        pieces = _words(text, reply.chunks or 8)
        usage = _usage(body, reply, len(pieces))
        item: dict[str, Any] = {
            "type": "message",
            "id": f"msg_{ident}",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        }
        output = [item]
        if reply.tool_calls:  # function_call output items; their arguments are the deltas
            output = [_function_call(ident, i, c) for i, c in enumerate(reply.tool_calls)]
            pieces = [p for c in reply.tool_calls for p in _words(c["arguments"], 2)]
        incomplete = reply.finish_reason == "length"  # as when max_output_tokens cut it short
        done = _response_object(
            ident,
            model,
            "incomplete" if incomplete else "completed",
            output,
            {
                "input_tokens": usage["prompt_tokens"],
                "input_tokens_details": {
                    "cached_tokens": usage["prompt_tokens_details"]["cached_tokens"]
                },
                "output_tokens": usage["completion_tokens"],
                "output_tokens_details": {
                    "reasoning_tokens": usage["completion_tokens_details"]["reasoning_tokens"]
                },
                "total_tokens": usage["total_tokens"],
            },
        )
        if not body.get("stream"):
            self._json(200, done)
            return
        seq = iter(range(1_000_000))
        start = _response_object(ident, model, "in_progress", [], None)
        events: list[tuple[str | None, Any]] = [
            (
                "response.created",
                {"type": "response.created", "sequence_number": next(seq), "response": start},
            )
        ]
        delta = "response.function_call_arguments.delta" if reply.tool_calls else None
        for part in pieces:
            events.append(
                (
                    delta or "response.output_text.delta",
                    {
                        "type": delta or "response.output_text.delta",
                        "item_id": item["id"],
                        "output_index": 0,
                        "content_index": 0,
                        "delta": part,
                        "logprobs": [],
                        "sequence_number": next(seq),
                    },
                )
            )
        final = "response.incomplete" if incomplete else "response.completed"
        events.append((final, {"type": final, "sequence_number": next(seq), "response": done}))
        self._sse(events, reply)

    # --- embeddings ---------------------------------------------------------------------
    def _embeddings(self, body: dict[str, Any], reply: Reply) -> None:
        inputs = body.get("input")
        items = (
            inputs
            if isinstance(inputs, list) and not (inputs and isinstance(inputs[0], int))
            else [inputs]
        )
        fmt = body.get("encoding_format") or "float"
        dims = int(body.get("dimensions") or 8)
        data = []
        for i, _ in enumerate(items):
            vector = [round(0.001 * (i + 1) * (d + 1), 6) for d in range(dims)]
            value: Any = vector
            if fmt == "base64":
                value = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
            data.append({"object": "embedding", "index": i, "embedding": value})
        tokens = _prompt_tokens(body)
        self._json(
            200,
            {
                "object": "list",
                "data": data,
                "model": str(body.get("model") or "text-embedding-3-small"),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )


def _function_call(ident: str, index: int, call: dict[str, str]) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": f"fc_{ident}_{index}",
        "call_id": f"call_{index}",
        "name": call["name"],
        "arguments": call["arguments"],
        "status": "completed",
    }


def _response_object(
    ident: str, model: str, status: str, output: list[Any], usage: dict[str, Any] | None
) -> dict[str, Any]:
    incomplete = {"reason": "max_output_tokens"} if status == "incomplete" else None
    return {
        "id": ident,
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "error": None,
        "incomplete_details": incomplete,
        "instructions": None,
        "max_output_tokens": None,
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": True,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": usage,
        "metadata": {},
        "service_tier": "default",
    }
