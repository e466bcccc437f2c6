"""Loopback fakes of Langfuse and LangSmith, with auth, schema checks and fault injection.

* :class:`FakeLangfuse` — ``POST /api/public/otel/v1/traces`` (OTLP protobuf or JSON, Basic
  auth) and the legacy ``POST /api/public/ingestion`` (answered 207 with per-event results).
  Like the real server, the OTLP endpoint answers 200 *before* validating: spans that break
  Langfuse's rules land in :attr:`FakeVendor.rejected`, not in the status code.
* :class:`FakeLangSmith` — ``POST /runs/batch`` and ``/runs/multipart`` (``x-api-key``),
  checking ids, ``trace_id``, ``dotted_order`` and ``parent_run_id``; 422 for a bad run.

Both upsert entities by id (as the vendors do) and count every write, so a test can tell a
re-send (:attr:`FakeVendor.rewrites`) from a duplicate entity (there are none by construction:
what a test checks is that no record ever shows up under a second id). Faults: :meth:`fail`
(next N requests: status, Retry-After, latency), :meth:`chaos` (a seeded random share of
requests). Plain classes, usable without pytest; the fixtures below wrap them.
"""

from __future__ import annotations

import base64
import json
import random
import re
import threading
import time
import urllib.parse
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

_OBS_TYPES = {
    "span",
    "generation",
    "event",
    "agent",
    "tool",
    "chain",
    "retriever",
    "evaluator",
    "embedding",
    "guardrail",
}
_RUN_TYPES = {"llm", "chain", "tool", "retriever", "embedding", "prompt", "parser"}
_DOTTED = re.compile(r"^(\d{8}T\d{6}\d{6})Z([0-9a-f-]{36})$")


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


# --- shared checks ------------------------------------------------------------------------
def _is_iso_with_zone(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).tzinfo is not None
    except ValueError:
        return False


def _json_object_of_numbers(value: Any) -> bool:
    try:
        data = json.loads(value)
    except (TypeError, ValueError):
        return False
    return isinstance(data, dict) and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in data.values()
    )


def _any(value: Any) -> Any:  # an OTLP AnyValue as a Python value
    which = value.WhichOneof("value")
    if which == "array_value":
        return tuple(_any(v) for v in value.array_value.values)
    return None if which is None else getattr(value, which)


class FakeLangfuse(FakeVendor):
    """Langfuse's OTLP and ingestion endpoints; credentials keyed by the Basic auth value.

    Example (the ``fake_langfuse`` fixture gives a started one):

    >>> import json, urllib.request
    >>> with FakeLangfuse() as langfuse:
    ...     langfuse.add_project("pk-lf-1", "sk-lf-1", "tenant-a")
    ...     event = {"id": "e1", "type": "trace-create", "timestamp": "2025-01-01T00:00:00Z",
    ...              "body": {"id": "trace-1", "name": "chat"}}
    ...     request = urllib.request.Request(
    ...         langfuse.endpoint + "/api/public/ingestion",
    ...         json.dumps({"batch": [event]}).encode(),
    ...         {"Authorization": basic_auth("pk-lf-1", "sk-lf-1")},
    ...     )
    ...     urllib.request.urlopen(request).status, langfuse.ids("tenant-a")
    (207, {'trace:trace-1'})
    """

    def tenant_of(self, headers: Any) -> str | None:
        """Tenant label of the Basic credential.

        >>> langfuse = FakeLangfuse()
        >>> langfuse.add_project("pk", "sk", "tenant-a")
        >>> langfuse.tenant_of({"Authorization": basic_auth("pk", "sk")})
        'tenant-a'
        """
        return self.credentials.get(headers.get("Authorization", ""))

    def add_project(self, public_key: str, secret_key: str, label: str) -> None:
        """Accept this key pair, as project ``label``.

        >>> langfuse = FakeLangfuse()
        >>> langfuse.add_project("pk-lf-1", "sk-lf-1", "tenant-a")
        >>> list(langfuse.credentials.values())
        ['tenant-a']
        """
        self.credentials[basic_auth(public_key, secret_key)] = label

    @staticmethod
    def project_id(label: str) -> str:
        """The project id ``GET /api/public/projects`` answers for project ``label``.

        >>> FakeLangfuse.project_id("tenant-a") == FakeLangfuse.project_id("tenant-a")
        True
        >>> FakeLangfuse.project_id("tenant-a").startswith("proj-")
        True
        """
        return "proj-" + uuid.uuid5(uuid.NAMESPACE_URL, label).hex[:12]

    def lookup(self, path: str, tenant: str) -> tuple[int, Any]:
        """``GET /api/public/projects``: the one project of the key pair.

        >>> status, answer = FakeLangfuse().lookup("/api/public/projects", "tenant-a")
        >>> status, answer["data"][0]["name"]
        (200, 'tenant-a')
        """
        if path == "/api/public/projects":
            return 200, {"data": [{"id": self.project_id(tenant), "name": tenant}]}
        return 404, {"message": "not found"}

    def handle(
        self, path: str, headers: Any, body: bytes, tenant: str
    ) -> tuple[int, bytes, str, int]:
        """OTLP: 200 then validate; ingestion: 207 with per-event results.

        >>> FakeLangfuse().handle("/api/public/ingestion", {}, b'{"batch": []}', "tenant-a")
        (207, b'{"successes": [], "errors": []}', 'json', 0)
        """
        if path == "/api/public/otel/v1/traces":
            return self._otlp(headers, body, tenant)
        if path == "/api/public/ingestion":
            return self._ingestion(body, tenant)
        return 404, b'{"message":"not found"}', "json", 0

    def _otlp(self, headers: Any, body: bytes, tenant: str) -> tuple[int, bytes, str, int]:
        from google.protobuf import json_format
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        request = ExportTraceServiceRequest()
        try:
            if "json" in headers.get("Content-Type", ""):
                json_format.Parse(body, request, ignore_unknown_fields=True)
            else:
                request.ParseFromString(body)
        except Exception as exc:
            return 400, json.dumps({"message": str(exc)}).encode(), "json", 0
        count = 0
        for rs in request.resource_spans:
            for ss in rs.scope_spans:
                for span in ss.spans:
                    count += 1
                    self._otlp_span(span, tenant)
        return 200, b"", "application/x-protobuf", count

    def _otlp_span(self, span: Any, tenant: str) -> None:
        span_id = span.span_id.hex()
        if not self.validate:
            self._accept(tenant, span_id, {"trace_id": span.trace_id.hex()})
            return
        attrs = {kv.key: _any(kv.value) for kv in span.attributes}
        entity = {
            "trace_id": span.trace_id.hex(),
            "name": span.name,
            "parent": span.parent_span_id.hex() or None,
            "attributes": attrs,
        }
        problem = "poisoned" if span_id in self.poison else _langfuse_span_problem(span, attrs)
        if problem:
            self._reject(span_id, problem)  # Langfuse answered 200 already: silently lost
        else:
            self._accept(tenant, span_id, entity)

    def _ingestion(self, body: bytes, tenant: str) -> tuple[int, bytes, str, int]:
        try:
            batch = json.loads(body)["batch"]
        except (ValueError, KeyError, TypeError) as exc:
            return 400, json.dumps({"message": f"bad batch: {exc}"}).encode(), "json", 0
        successes, errors = [], []
        for event in batch:
            problem = _ingestion_problem(event) if self.validate else None
            if (event.get("body") or {}).get("id") in self.poison:
                problem = "poisoned"
            if problem:
                errors.append({"id": event.get("id"), "status": 400, "message": problem})
                continue
            body_ = event["body"]
            entity_id = body_["id"] if event["type"] != "trace-create" else "trace:" + body_["id"]
            self._accept(tenant, entity_id, {"type": event["type"], **body_})
            successes.append({"id": event["id"], "status": 201})
        answer = json.dumps({"successes": successes, "errors": errors}).encode()
        return 207, answer, "json", len(batch)


def _langfuse_span_problem(span: Any, attrs: dict[str, Any]) -> str | None:  # noqa: PLR0911 - one return per schema rule
    if len(span.trace_id) != 16 or len(span.span_id) != 8:
        return "bad trace/span id length"
    if span.end_time_unix_nano < span.start_time_unix_nano:
        return "ends before it starts"
    obs_type = attrs.get("langfuse.observation.type", "span")
    if obs_type not in _OBS_TYPES:
        return f"unknown observation type {obs_type!r}"
    for name in ("langfuse.observation.usage_details", "langfuse.observation.cost_details"):
        if name in attrs and not _json_object_of_numbers(attrs[name]):
            return f"{name} is not a JSON object of numbers"
    cst = attrs.get("langfuse.observation.completion_start_time")
    if cst is not None and not _is_iso_with_zone(json.loads(cst)):
        return "completion_start_time without timezone"
    for name in ("langfuse.version", "langfuse.release", "langfuse.environment"):
        if name in attrs and not isinstance(attrs[name], str):
            return f"{name} must be a string"
    return None


_EVENT_TYPES = {
    "trace-create",
    "span-create",
    "span-update",
    "generation-create",
    "generation-update",
    "event-create",
    "score-create",
    "sdk-log",
}


def _ingestion_problem(event: Any) -> str | None:  # noqa: PLR0911 - one return per schema rule
    if not isinstance(event, dict) or not isinstance(event.get("body"), dict):
        return "event without body"
    if event.get("type") not in _EVENT_TYPES:
        return f"unknown event type {event.get('type')!r}"
    if not event.get("id") or not _is_iso_with_zone(event.get("timestamp")):
        return "event id and timestamp (ISO 8601 with zone) are required"
    body = event["body"]
    if not body.get("id"):
        return "body.id is required"
    for name in ("startTime", "endTime", "completionStartTime", "timestamp"):
        if name in body and not _is_iso_with_zone(body[name]):
            return f"body.{name} must be ISO 8601 with a zone"
    for name in ("version", "release"):
        if name in body and not isinstance(body[name], str):
            return f"body.{name} must be a string"
    if event["type"] != "trace-create" and not body.get("traceId"):
        return "body.traceId is required"
    return None


class FakeLangSmith(FakeVendor):
    """LangSmith's runs API; credentials keyed by the ``x-api-key`` value.

    With :attr:`conflict_on_existing`, a post of a run that is already stored answers 409
    ("payloads already received") and stores none of the request: the strictest reading of
    the API, which does not say what happens to the other runs of the request. Example (the
    ``fake_langsmith`` fixture gives a started one):

    >>> import json, urllib.request, uuid
    >>> run_id = str(uuid.UUID(int=1))
    >>> run = {"id": run_id, "trace_id": run_id, "name": "chat", "run_type": "llm",
    ...        "start_time": "2025-01-01T00:00:00Z",
    ...        "dotted_order": f"20250101T000000000000Z{run_id}"}
    >>> with FakeLangSmith({"ls-key": "tenant-a"}) as langsmith:
    ...     request = urllib.request.Request(
    ...         langsmith.endpoint + "/runs/batch", json.dumps({"post": [run]}).encode(),
    ...         {"x-api-key": "ls-key"},
    ...     )
    ...     urllib.request.urlopen(request).status, langsmith.ids("tenant-a")
    (202, {'00000000-0000-0000-0000-000000000001'})
    """

    conflict_on_existing = False

    @staticmethod
    def org_id(tenant: str) -> str:
        """The organisation (LangSmith "tenant") id of a credential label.

        >>> FakeLangSmith.org_id("tenant-a") == FakeLangSmith.org_id("tenant-a")
        True
        """
        return str(uuid.uuid5(uuid.NAMESPACE_URL, "org:" + tenant))

    @staticmethod
    def project_id(tenant: str, name: str) -> str:
        """The project (session) id of project ``name`` of a credential label.

        >>> a, b = FakeLangSmith.project_id("t", "bot"), FakeLangSmith.project_id("t", "other")
        >>> a != b, len(a)
        (True, 36)
        """
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"project:{tenant}:{name}"))

    def lookup(self, path: str, tenant: str) -> tuple[int, Any]:
        """``GET /sessions?name=``: the project once a run of it was ingested, else [].

        >>> FakeLangSmith().lookup("/sessions?name=support-bot", "tenant-a")
        (200, [])
        """
        parts = urllib.parse.urlsplit(path)
        if parts.path != "/sessions":
            return 404, {"detail": "not found"}
        name = urllib.parse.parse_qs(parts.query).get("name", [""])[0]
        with self._lock:
            known = any(
                w.tenant == tenant and w.entity.get("session_name") == name
                for w in self.entities.values()
            )
        if not known:
            return 200, []
        project = {"id": self.project_id(tenant, name), "name": name}
        return 200, [{**project, "tenant_id": self.org_id(tenant)}]

    def tenant_of(self, headers: Any) -> str | None:
        """Tenant label of the API key.

        >>> FakeLangSmith({"ls-key": "tenant-a"}).tenant_of({"x-api-key": "nope"}) is None
        True
        """
        return self.credentials.get(headers.get("x-api-key", ""))

    def handle(
        self, path: str, headers: Any, body: bytes, tenant: str
    ) -> tuple[int, bytes, str, int]:
        """``/runs/batch`` (JSON) and ``/runs/multipart``; 422 when a run is invalid.

        >>> bad = b'{"post": [{"id": "not-a-uuid"}]}'
        >>> FakeLangSmith().handle("/runs/batch", {}, bad, "tenant-a")[:2]
        (422, b'{"detail": ["id and trace_id must be UUIDs"]}')
        """
        try:
            if path == "/runs/batch":
                data = json.loads(body)
                posts = list(data.get("post") or [])
                runs = posts + list(data.get("patch") or [])
            elif path == "/runs/multipart":
                runs = posts = _multipart_runs(headers.get("Content-Type", ""), body)
            else:
                return 404, b'{"detail":"not found"}', "json", 0
        except (ValueError, TypeError, AttributeError) as exc:
            return 400, json.dumps({"detail": str(exc)}).encode(), "json", 0
        problems = [p for p in (_run_problem(r) for r in runs) if p] if self.validate else []
        problems += [f"{r.get('id')}: poisoned" for r in runs if r.get("id") in self.poison]
        if problems:
            return 422, json.dumps({"detail": problems[:5]}).encode(), "json", len(runs)
        with self._lock:
            conflict = any((tenant, r.get("id")) in self.entities for r in posts)
        if conflict and self.conflict_on_existing:
            return 409, b'{"detail":"payloads already received"}', "json", len(runs)
        for run in runs:
            self._accept(tenant, run["id"], run)
        return 202, b'{"message":"Runs batch ingested"}', "json", len(runs)


def _run_problem(run: Any) -> str | None:  # noqa: PLR0911 - one return per schema rule
    try:
        run_id, trace_id = uuid.UUID(run["id"]), uuid.UUID(run["trace_id"])
    except (KeyError, ValueError, TypeError):
        return "id and trace_id must be UUIDs"
    if run.get("run_type") not in _RUN_TYPES:
        return f"{run_id}: run_type {run.get('run_type')!r}"
    segments = [_DOTTED.match(part) for part in str(run.get("dotted_order", "")).split(".")]
    if not segments or not all(segments):
        return f"{run_id}: malformed dotted_order"
    last, first = segments[-1], segments[0]
    assert last is not None
    assert first is not None
    if last.group(2) != str(run_id) or first.group(2) != str(trace_id):
        return f"{run_id}: dotted_order must start with trace_id and end with the run id"
    start = datetime.fromisoformat(str(run.get("start_time")).replace("Z", "+00:00"))
    if last.group(1) != start.strftime("%Y%m%dT%H%M%S%f"):
        return f"{run_id}: dotted_order time differs from start_time"
    parent = run.get("parent_run_id")
    if len(segments) > 1:
        before = segments[-2]
        if before is None or parent != before.group(2):
            return f"{run_id}: parent_run_id must be the previous dotted_order segment"
    elif parent is not None:
        return f"{run_id}: a root run has no parent_run_id"
    return None


def _multipart_runs(content_type: str, body: bytes) -> list[dict[str, Any]]:
    from email.parser import BytesParser
    from email.policy import HTTP

    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    runs: dict[str, dict[str, Any]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition") or ""
        op, _, rest = str(name).partition(".")
        run_id, _, fld = rest.partition(".")
        if op not in ("post", "patch"):
            continue
        raw: Any = part.get_payload(decode=True)
        value = json.loads(raw or b"null")
        runs.setdefault(run_id, {"id": run_id})
        if fld:
            runs[run_id][fld] = value
        else:
            runs[run_id].update(value)
    return list(runs.values())


def basic_auth(public_key: str, secret_key: str) -> str:
    """The ``Authorization`` header value Langfuse expects.

    >>> basic_auth("pk-lf-1", "sk-lf-1")
    'Basic cGstbGYtMTpzay1sZi0x'
    """
    return "Basic " + base64.b64encode(f"{public_key}:{secret_key}".encode()).decode()


def new_key() -> str:
    """A random credential for tests.

    >>> len(new_key()), new_key() != new_key()
    (32, True)
    """
    return uuid.uuid4().hex


@pytest.fixture
def fake_langfuse() -> Iterator[Any]:
    """A started :class:`FakeLangfuse`; add credentials with ``.credentials[...] = label``.

    Example::

        def test_delivery(fake_langfuse):
            fake_langfuse.add_project("pk-lf-1", "sk-lf-1", "tenant-a")
            ...  # route tenant-a to {"kind": "langfuse", "host": fake_langfuse.endpoint, ...}
            fake_langfuse.wait_for_count(1, timeout=30)
            assert fake_langfuse.rejected == []
    """
    with FakeLangfuse() as server:
        yield server


@pytest.fixture
def fake_langsmith() -> Iterator[Any]:
    """A started :class:`FakeLangSmith`; add API keys with ``.credentials[key] = label``.

    Example::

        def test_delivery(fake_langsmith):
            fake_langsmith.credentials["ls-key"] = "tenant-a"
            ...  # route tenant-a to {"kind": "langsmith", "endpoint": fake_langsmith.endpoint, ...}
            fake_langsmith.wait_for_count(1, timeout=30)
    """
    with FakeLangSmith() as server:
        yield server
