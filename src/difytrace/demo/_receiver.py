"""Stand-in OTLP/HTTP (protobuf) trace receiver, used only until ``difytrace.testing``
provides ``OTLPReceiver``; it follows that class's contract (``endpoint``, ``spans()``,
``wait_for()``) so the demo switches over without other changes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_KINDS = {0: "INTERNAL", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}
_STATUS = {0: "UNSET", 1: "OK", 2: "ERROR"}


@dataclass(frozen=True)
class ReceivedSpan:
    """A finished span as received (the fields of ``difytrace.testing.CapturedSpan``)."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str | None
    kind: str
    attributes: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]
    status_code: str
    status_description: str | None
    start_time_ns: int
    end_time_ns: int
    resource: dict[str, Any] = field(default_factory=dict)
    scope_name: str = ""

    @property
    def duration_s(self) -> float:
        """Duration in seconds."""
        return (self.end_time_ns - self.start_time_ns) / 1e9


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in any_value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in any_value.kvlist_value.values}
    return getattr(any_value, kind) if kind else None


def _attrs(key_values: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in key_values}


def decode_traces(body: bytes) -> list[ReceivedSpan]:
    """Decode an OTLP ``ExportTraceServiceRequest`` (protobuf) into spans."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans: list[ReceivedSpan] = []
    for resource_spans in request.resource_spans:
        resource = _attrs(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        name=span.name,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex() or None,
                        kind=_KINDS.get(span.kind, "INTERNAL"),
                        attributes=_attrs(span.attributes),
                        events=[(e.name, _attrs(e.attributes)) for e in span.events],
                        status_code=_STATUS.get(span.status.code, "UNSET"),
                        status_description=span.status.message or None,
                        start_time_ns=span.start_time_unix_nano,
                        end_time_ns=span.end_time_unix_nano,
                        resource=resource,
                        scope_name=scope_spans.scope.name,
                    )
                )
    return spans


class OTLPReceiver:
    """OTLP/HTTP receiver on 127.0.0.1; traces are decoded, metrics are accepted and dropped."""

    def __init__(self, port: int = 0) -> None:
        self._spans: list[ReceivedSpan] = []
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if self.path == "/v1/traces":
                    receiver._add(decode_traces(body))
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> OTLPReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def endpoint(self) -> str:
        """Base URL, ``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def _add(self, spans: list[ReceivedSpan]) -> None:
        with self._cond:
            self._spans.extend(spans)
            self._cond.notify_all()

    def spans(self) -> list[ReceivedSpan]:
        """Every span received so far."""
        with self._cond:
            return list(self._spans)

    def wait_for(
        self,
        count: int | None = None,
        name: str | None = None,
        timeout: float = 10,
        predicate: Callable[[list[ReceivedSpan]], bool] | None = None,
    ) -> list[ReceivedSpan]:
        """Block until the condition holds; raise TimeoutError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                spans = list(self._spans)
                if (
                    (count is None or len(spans) >= count)
                    and (name is None or any(s.name == name for s in spans))
                    and (predicate is None or predicate(spans))
                ):
                    return spans
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"spans not received within {timeout}s")
                self._cond.wait(left)
