"""A tiny local OpenAI-compatible model server for the demo (chat completions, SSE streaming).

It answers every prompt with a fixed sentence, reports token usage like the OpenAI API, and
streams with a short pause before the first chunk so that time-to-first-token is visible.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ANSWER = "Observability turns every LLM call into a span you can follow end to end."
FIRST_TOKEN_DELAY_S = 0.05
CHUNK_DELAY_S = 0.005


def _words(text: str) -> list[str]:
    parts = text.split(" ")
    return [p if i == len(parts) - 1 else p + " " for i, p in enumerate(parts)]


def _prompt_tokens(body: dict[str, Any]) -> int:
    messages = body.get("messages") or []
    return sum(len(str(m.get("content", "")).split()) + 4 for m in messages if isinstance(m, dict))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
            return
        model = str(body.get("model") or "demo-model")
        usage = {"prompt_tokens": _prompt_tokens(body), "completion_tokens": len(_words(ANSWER))}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if body.get("stream"):
            self._stream(
                model, usage, bool((body.get("stream_options") or {}).get("include_usage"))
            )
        else:
            self._json(
                200,
                {
                    "id": "chatcmpl-demo",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model,
                    "usage": usage,
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": "stop",
                            "message": {"role": "assistant", "content": ANSWER},
                        }
                    ],
                },
            )

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, model: str, usage: dict[str, int], include_usage: bool) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("connection", "close")
        self.end_headers()
        time.sleep(FIRST_TOKEN_DELAY_S)
        base = {
            "id": "chatcmpl-demo",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }
        for index, word in enumerate(_words(ANSWER)):
            delta = {"content": word} if index else {"role": "assistant", "content": word}
            self._event({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
            time.sleep(CHUNK_DELAY_S)
        self._event({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if include_usage:
            self._event({**base, "choices": [], "usage": usage})
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True

    def _event(self, payload: dict[str, Any]) -> None:
        self.wfile.write(b"data: " + json.dumps(payload).encode() + b"\n\n")
        self.wfile.flush()


class ModelServer:
    """The model server on 127.0.0.1 and an ephemeral port, served from a daemon thread."""

    def __init__(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, daemon=True, name="difytrace-demo-model"
        )

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL, ``http://127.0.0.1:<port>/v1``."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> ModelServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
