"""The HTTP server under every vendor fake: auth table, injected faults, entity store.

:class:`FakeVendor` serves on an ephemeral loopback port, answers unknown credentials 401,
applies :meth:`~FakeVendor.fail` / :meth:`~FakeVendor.chaos` faults before the vendor's own
handler, and stores accepted entities by id (an upsert, counting re-sends). Subclasses name
the credential header (:meth:`~FakeVendor.tenant_of`) and speak the vendor's API
(:meth:`~FakeVendor.handle`, :meth:`~FakeVendor.lookup`).
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Fault:
    """One injected answer: a status (0 = answer normally), Retry-After, latency.

    Example::

        fake_langfuse.chaos(0.15, (Fault(503), Fault(429, retry_after="1"), Fault(0, delay_s=2)))
    """

    status: int = 0
    retry_after: str | None = None
    delay_s: float = 0.0


@dataclass
class Write:
    """One accepted entity write: who sent it (credential label) and its fields.

    Example::

        write = fake_langsmith.entities[("tenant-a", run_id)]
        assert write.entity["run_type"] == "llm"
    """

    tenant: str
    entity: dict[str, Any]


@dataclass
class _Chaos:
    rate: float = 0.0
    faults: tuple[Fault, ...] = ()
    rng: random.Random = field(default_factory=lambda: random.Random(0))


class FakeVendor:
    """HTTP server basics shared by the fakes: auth table, faults, entity store.

    ``credentials`` maps the credential as the auth header carries it to a tenant label;
    ``validate=False`` accepts any payload. Example:

    >>> from difytrace.testing.vendors import FakeLangSmith
    >>> with FakeLangSmith({"ls-key": "tenant-a"}) as langsmith:
    ...     langsmith.endpoint.startswith("http://127.0.0.1:"), langsmith.ids()
    (True, set())
    """

    def __init__(self, credentials: dict[str, str] | None = None, *, validate: bool = True) -> None:
        #: credential (as the auth header carries it) → tenant label
        self.credentials: dict[str, str] = dict(credentials or {})
        self.validate = validate
        self.entities: dict[tuple[str, str], Write] = {}
        self.rewrites: Counter[str] = Counter()
        self.rejected: list[tuple[str, str]] = []
        #: entity ids this server refuses as invalid (to test partial failures)
        self.poison: set[str] = set()
        #: called before each request is answered (e.g. to kill a worker mid-batch)
        self.on_request: Callable[[], None] | None = None
        self.requests: list[tuple[str, str, int, int]] = []  # path, tenant, status, items
        self.lookups: list[tuple[str, str, int]] = []  # GET path, tenant, status
        self._faults: deque[Fault] = deque()
        self._chaos = _Chaos()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._changed = threading.Condition(self._lock)

    # --- lifecycle ---------------------------------------------------------------------
    def start(self) -> FakeVendor:
        """Serve on an ephemeral loopback port in a daemon thread.

        >>> from difytrace.testing.vendors import FakeLangfuse
        >>> vendor = FakeLangfuse().start()
        >>> vendor.endpoint.startswith("http://127.0.0.1:")
        True
        >>> vendor.stop()
        """
        self._server = _QuietServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, daemon=True, kwargs={"poll_interval": 0.05}
        ).start()
        return self

    def stop(self) -> None:
        """Stop serving.

        >>> from difytrace.testing.vendors import FakeLangfuse
        >>> vendor = FakeLangfuse().start()
        >>> vendor.stop()
        """
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeVendor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:<port>``.

        Example (a Langfuse destination of ops_trace pointed at it)::

            {"kind": "langfuse", "host": fake_langfuse.endpoint,
             "public_key": "pk-lf-1", "secret_key": "sk-lf-1"}
        """
        assert self._server is not None, "server not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # --- faults ------------------------------------------------------------------------
    def fail(
        self, status: int, times: int = 1, *, retry_after: str | None = None, delay_s: float = 0.0
    ) -> None:
        """Answer the next ``times`` requests with ``status`` (after ``delay_s``).

        Example::

            fake_langfuse.fail(429, times=2, retry_after="1")   # then answers normally
        """
        with self._lock:
            self._faults.extend(Fault(status, retry_after, delay_s) for _ in range(times))

    def delay(self, delay_s: float, times: int = 1) -> None:
        """Answer the next ``times`` requests normally but late (client timeouts).

        Example::

            fake_langsmith.delay(5.0)   # longer than DIFYTRACE_OPS_TRACE_HTTP_TIMEOUT_MS
        """
        with self._lock:
            self._faults.extend(Fault(0, None, delay_s) for _ in range(times))

    def chaos(self, rate: float, faults: tuple[Fault, ...], seed: int = 0) -> None:
        """Answer a random ``rate`` share of requests with one of ``faults`` (seeded).

        Example::

            fake_langfuse.chaos(0.2, (Fault(500), Fault(503, retry_after="0")), seed=7)
        """
        with self._lock:
            self._chaos = _Chaos(rate, faults, random.Random(seed))

    def _next_fault(self) -> Fault | None:
        with self._lock:
            if self._faults:
                return self._faults.popleft()
            chaos = self._chaos
            if chaos.faults and chaos.rng.random() < chaos.rate:
                return chaos.rng.choice(chaos.faults)
        return None

    # --- store -------------------------------------------------------------------------
    def _accept(self, tenant: str, entity_id: str, entity: dict[str, Any]) -> None:
        with self._lock:
            key = (tenant, entity_id)
            if key in self.entities:
                self.rewrites[entity_id] += 1
            self.entities[key] = Write(tenant, entity)
            self._changed.notify_all()

    def _reject(self, entity_id: str, why: str) -> None:
        with self._lock:
            self.rejected.append((entity_id, why))

    def ids(self, tenant: str | None = None) -> set[str]:
        """Ids of the entities stored (for one tenant label, or all).

        Example::

            assert fake_langfuse.ids("tenant-a") == {span_id_of_the_llm_node}
            assert fake_langfuse.ids("tenant-b") == set()      # no cross-tenant leak
        """
        with self._lock:
            return {i for t, i in self.entities if tenant is None or t == tenant}

    def by_tenant(self) -> dict[str, list[dict[str, Any]]]:
        """Stored entities per tenant label.

        Example::

            runs = fake_langsmith.by_tenant()["tenant-a"]
            assert {r["name"] for r in runs} == {"chatflow", "llm"}
        """
        out: dict[str, list[dict[str, Any]]] = {}
        with self._lock:
            for write in self.entities.values():
                out.setdefault(write.tenant, []).append(write.entity)
        return out

    def wait_for(self, predicate: Callable[[FakeVendor], bool], timeout: float = 10) -> None:
        """Block until ``predicate(self)`` holds; AssertionError after ``timeout`` seconds.

        Example::

            fake_langfuse.wait_for(lambda v: "tenant-b" in v.by_tenant(), timeout=30)
        """
        deadline = time.monotonic() + timeout
        while not predicate(self):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"{type(self).__name__}: condition not met in {timeout}s "
                    f"({len(self.entities)} entities stored)"
                )
            with self._lock:
                self._changed.wait(min(left, 0.1))

    def wait_for_count(self, count: int, timeout: float = 10) -> None:
        """Block until at least ``count`` entities are stored.

        Example::

            ops_trace.submit(record)
            fake_langsmith.wait_for_count(3, timeout=30)   # the run and its two child runs
        """
        self.wait_for(lambda v: len(v.entities) >= count, timeout)

    # --- request handling (subclasses) --------------------------------------------------
    def tenant_of(self, headers: Any) -> str | None:
        """The tenant label of the request's credential, None when unknown.

        >>> from difytrace.testing.vendors import FakeLangSmith
        >>> FakeLangSmith({"ls-key": "tenant-a"}).tenant_of({"x-api-key": "ls-key"})
        'tenant-a'
        """
        raise NotImplementedError

    def handle(
        self, path: str, headers: Any, body: bytes, tenant: str
    ) -> tuple[int, bytes, str, int]:
        """Answer a request: (status, body, content type, items carried).

        Example (a subclass for another vendor)::

            class FakeVendorX(FakeVendor):
                def handle(self, path, headers, body, tenant):
                    self._accept(tenant, json.loads(body)["id"], json.loads(body))
                    return 200, b"{}", "json", 1
        """
        raise NotImplementedError

    def _serve(self, path: str, headers: Any, body: bytes) -> tuple[int, bytes, str, Fault | None]:
        hook = self.on_request
        if hook is not None:
            hook()
        fault = self._next_fault()
        if fault is not None and fault.delay_s:
            time.sleep(fault.delay_s)
        tenant = self.tenant_of(headers)
        if tenant is None:
            status, out, ctype, items = 401, b'{"message":"Invalid credentials"}', "json", 0
        elif fault is not None and fault.status:
            status, out, ctype, items = fault.status, b'{"message":"injected"}', "json", 0
        else:
            status, out, ctype, items = self.handle(path, headers, body, tenant)
        with self._lock:
            self.requests.append((path, tenant or "?", status, items))
        return status, out, ctype, fault

    def lookup(self, path: str, tenant: str) -> tuple[int, Any]:
        """Answer a read-only GET: (status, JSON value).

        >>> FakeVendor().lookup("/anything", "tenant-a")
        (404, {'detail': 'not found'})
        """
        return 404, {"detail": "not found"}

    def _serve_get(self, path: str, headers: Any) -> tuple[int, bytes]:
        tenant = self.tenant_of(headers)
        if tenant is None:
            status, value = 401, {"message": "Invalid credentials"}
        else:
            status, value = self.lookup(path, tenant)
        with self._lock:
            self.lookups.append((path, tenant or "?", status))
        return status, json.dumps(value).encode()


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that time out or get killed mid-request are part of the tests.
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _handler(vendor: FakeVendor) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, out, ctype, fault = vendor._serve(self.path, self.headers, body)
            self.send_response(status)
            self.send_header("Content-Type", "application/json" if ctype == "json" else ctype)
            if fault is not None and fault.retry_after is not None:
                self.send_header("Retry-After", fault.retry_after)
            self.send_header("Content-Length", str(len(out)))
            try:
                self.end_headers()
                self.wfile.write(out)
            except (BrokenPipeError, ConnectionResetError):  # the client timed out first
                self.close_connection = True

        def do_GET(self) -> None:
            status, out = vendor._serve_get(self.path, self.headers)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


def new_key() -> str:
    """A random credential for tests.

    >>> len(new_key()), new_key() != new_key()
    (32, True)
    """
    return uuid.uuid4().hex
