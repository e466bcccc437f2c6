"""A small OTLP/HTTP receiver on loopback, for tests and ``difytrace receive``.

It answers like a collector: ``POST /v1/traces`` and ``/v1/metrics`` (``/v1/logs`` is
accepted and dropped) with ``application/x-protobuf`` or ``application/json`` bodies,
optionally gzip-compressed; 200 with an empty export response, 400 for a body it cannot
decode, 415 for another content type, 404 for another path. Independent of pytest::

    with OTLPReceiver() as receiver:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}
        ...
        receiver.wait_for(name="POST /chat")
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from difytrace.testing import _metrics, _proto
from difytrace.testing._model import CapturedSpan, HistogramTotals, MetricPoint
from difytrace.testing._store import SpanPredicate, SpanStore

_PROTOBUF = {"application/x-protobuf", "application/protobuf"}
_JSON = {"application/json"}


@dataclass(frozen=True)
class ReceivedRequest:
    """One export request as received: path, headers (lower-case names), status answered.

    Example (an exporter's headers reach the receiver)::

        (request,) = [r for r in otlp_receiver.requests() if r.path == "/v1/traces"]
        assert request.headers["authorization"] == "Bearer sk-test"
        assert request.status == 200
    """

    path: str
    headers: dict[str, str]
    status: int


class OTLPReceiver:
    """An OTLP/HTTP receiver storing what it receives; a context manager (start/stop).

    Example (the ``otlp_receiver`` fixture gives a started one):

    >>> from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    >>> from opentelemetry.sdk.trace import TracerProvider
    >>> from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    >>> with OTLPReceiver() as receiver:
    ...     exporter = OTLPSpanExporter(endpoint=receiver.endpoint + "/v1/traces")
    ...     provider = TracerProvider(shutdown_on_exit=False)
    ...     provider.add_span_processor(SimpleSpanProcessor(exporter))
    ...     provider.get_tracer("worker").start_span("process task").end()
    ...     [span.name for span in receiver.wait_for(name="process task")]
    ['process task']
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._address = (host, port)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._store = SpanStore()
        self._points: list[MetricPoint] = []
        self._requests: list[ReceivedRequest] = []
        self._forced: list[int] = []
        self._lock = threading.Condition()

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> OTLPReceiver:
        """Bind and serve in a daemon thread; returns self.

        >>> receiver = OTLPReceiver().start()
        >>> receiver.endpoint.startswith("http://127.0.0.1:")
        True
        >>> receiver.stop()
        """
        if self._server is None:
            self._server = ThreadingHTTPServer(self._address, _handler_for(self))
            self._server.daemon_threads = True
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                # A short poll keeps stop() quick (it waits for the serving loop to notice).
                kwargs={"poll_interval": 0.05},
                name="difytrace-otlp-receiver",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (what was received stays readable).

        >>> receiver = OTLPReceiver().start()
        >>> receiver.stop()
        >>> receiver.spans()
        []
        """
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> OTLPReceiver:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:<port>``: the OTLP base endpoint (paths are appended).

        Example (a child process exporting here)::

            env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.endpoint}
            subprocess.run(["celery", "-A", "app", "worker", ...], env=env)
        """
        if self._server is None:
            raise RuntimeError("OTLPReceiver is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # --- reading --------------------------------------------------------------------------
    def spans(self) -> list[CapturedSpan]:
        """Every span received so far, in arrival order.

        Example::

            assert {s.name for s in otlp_receiver.spans()} >= {"POST /chat", "process chat"}
        """
        return self._store.spans()

    def wait_for(
        self,
        count: int | None = None,
        name: str | None = None,
        timeout: float = 10,
        predicate: SpanPredicate | None = None,
    ) -> list[CapturedSpan]:
        """Wait for ``count`` (default 1) matching spans; AssertionError shows what arrived.

        Example::

            (task,) = otlp_receiver.wait_for(name="process chat_task", timeout=30)
            llm_spans = otlp_receiver.wait_for(
                2, predicate=lambda s: "gen_ai.operation.name" in s.attributes
            )
        """
        return self._store.wait_for(count, name, timeout, predicate)

    def metrics(self) -> dict[str, list[MetricPoint]]:
        """``{name: one merged point per attribute set}`` (see ``difytrace.testing``).

        Example::

            points = otlp_receiver.metrics()["http.server.request.duration"]
            assert {p.attributes["http.route"] for p in points} == {"/chat"}
        """
        with self._lock:
            return _metrics.merge_points(self._points)

    def raw_points(self) -> list[MetricPoint]:
        """Every metric point exactly as received, unmerged.

        Example (each export of a cumulative stream is one point)::

            exports = [p for p in otlp_receiver.raw_points() if p.name == "celery.queue.wait"]
        """
        with self._lock:
            return list(self._points)

    def wait_for_metric(
        self,
        name: str,
        timeout: float = 10,
        predicate: Callable[[list[MetricPoint]], bool] | None = None,
    ) -> list[MetricPoint]:
        """Wait until metric ``name`` has points (satisfying ``predicate``); return them merged.

        ``predicate`` gets the merged points, e.g.
        ``lambda points: histogram_totals(points).count >= 3`` for exports still to come.
        Example::

            otlp_receiver.wait_for_metric(
                "gen_ai.client.token.usage",
                predicate=lambda points: histogram_totals(points).count >= 2,
            )
        """
        __tracebackhide__ = True

        def ready() -> bool:
            points = _metrics.merge_points(self._points).get(name)
            return bool(points) and (predicate is None or predicate(points or []))

        with self._lock:
            if not self._lock.wait_for(ready, timeout):
                merged = _metrics.merge_points(self._points)
                seen = sorted(merged)
                raise AssertionError(
                    f"timed out after {timeout}s waiting for metric {name!r}"
                    + (" matching the predicate" if predicate else "")
                    + f"; received: {seen or 'nothing'}"
                    + (f"; its points: {merged[name]}" if name in merged else "")
                )
            return _metrics.merge_points(self._points)[name]

    def histogram(
        self,
        name: str,
        attributes: Mapping[str, Any] | None = None,
    ) -> HistogramTotals:
        """Count and sum of histogram ``name`` over points including ``attributes``.

        Example::

            chat = otlp_receiver.histogram("http.server.request.duration", {"http.route": "/chat"})
            assert chat.count == 3
        """
        return _metrics.histogram_totals(self.metrics().get(name, []), attributes)

    def requests(self) -> list[ReceivedRequest]:
        """Every request received (to check headers such as ``authorization``).

        >>> import urllib.request
        >>> with OTLPReceiver() as receiver:
        ...     try:
        ...         urllib.request.urlopen(receiver.endpoint + "/v2/nowhere", data=b"")
        ...     except OSError:
        ...         pass
        ...     [(r.path, r.status) for r in receiver.requests()]
        [('/v2/nowhere', 404)]
        """
        with self._lock:
            return list(self._requests)

    def clear(self) -> None:
        """Forget everything received.

        Example (a session-scoped receiver, between tests)::

            otlp_receiver_session.clear()
        """
        self._store.clear()
        with self._lock:
            self._points.clear()
            self._requests.clear()

    def fail_next(self, status: int, times: int = 1) -> None:
        """Answer the next ``times`` export requests with ``status`` (to test retries).

        >>> import urllib.error, urllib.request
        >>> with OTLPReceiver() as receiver:
        ...     receiver.fail_next(503)
        ...     try:
        ...         urllib.request.urlopen(receiver.endpoint + "/v1/traces", data=b"")
        ...     except urllib.error.HTTPError as error:
        ...         error.code
        503
        """
        with self._lock:
            self._forced.extend([status] * times)

    # --- serving (called from the handler threads) -----------------------------------------
    def _handle(
        self,
        path: str,
        headers: Mapping[str, str],
        body: bytes,
    ) -> tuple[int, str, bytes]:
        status, ctype, payload, store = self._answer(path, headers, body)
        # The request is on record before its spans are visible: a test that waited for the
        # spans may read the request's headers at once.
        with self._lock:
            self._requests.append(ReceivedRequest(path, dict(headers), status))
        store()
        return status, ctype, payload

    def _answer(
        self,
        path: str,
        headers: Mapping[str, str],
        body: bytes,
    ) -> tuple[int, str, bytes, Callable[[], None]]:
        with self._lock:
            forced = self._forced.pop(0) if self._forced else None
        if forced is not None:
            return forced, "text/plain", b"forced failure", _nothing
        if path not in ("/v1/traces", "/v1/metrics", "/v1/logs"):
            return 404, "text/plain", b"unknown path", _nothing
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype not in _PROTOBUF | _JSON:
            return 415, "text/plain", b"unsupported content type", _nothing
        is_json = ctype in _JSON
        try:
            body = _proto.decompress(body, headers.get("content-encoding", ""))
            store = self._decode(path, body, is_json)
        except _proto.UndecodableBody as exc:
            return 400, "text/plain", f"undecodable body: {exc}".encode(), _nothing
        if is_json:
            return 200, "application/json", b"{}", store
        empty = (
            ExportTraceServiceResponse() if path == "/v1/traces" else ExportMetricsServiceResponse()
        )
        return 200, "application/x-protobuf", empty.SerializeToString(), store

    def _decode(self, path: str, body: bytes, is_json: bool) -> Callable[[], None]:
        """Decode a request now (a bad body is a 400); the returned call stores it."""
        if path == "/v1/traces":
            traces = ExportTraceServiceRequest()
            _proto.parse(body, traces, is_json)
            spans = _proto.spans_from_request(traces)
            return lambda: self._store.add(spans)
        if path == "/v1/metrics":
            request = ExportMetricsServiceRequest()
            _proto.parse(body, request, is_json)
            points = _proto.points_from_request(request)

            def store() -> None:
                with self._lock:
                    self._points.extend(points)
                    self._lock.notify_all()

            return store
        return _nothing


def _nothing() -> None:
    """Nothing to store (a refused request, or a signal the receiver keeps no data of)."""


def _handler_for(receiver: OTLPReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self._read_body()
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, ctype, payload = receiver._handle(self.path.split("?")[0], headers, body)
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _read_body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                self.rfile.readline()
                return b"".join(chunks)
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean: the stored requests are the log

    return Handler
