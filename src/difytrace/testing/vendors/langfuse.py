"""A loopback Langfuse: the OTLP endpoint (200, then validate) and the 207 ingestion API."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime
from typing import Any

from difytrace.testing.vendors.base import FakeVendor

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
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        from difytrace.testing import _proto

        request = ExportTraceServiceRequest()
        is_json = "json" in headers.get("Content-Type", "")
        try:  # OTLP/JSON ids are hex, not protobuf-JSON's base64: _proto reads them right
            raw = _proto.decompress(body, headers.get("Content-Encoding", ""))
            _proto.parse(raw, request, is_json)
        except _proto.UndecodableBody as exc:
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


def basic_auth(public_key: str, secret_key: str) -> str:
    """The ``Authorization`` header value Langfuse expects.

    >>> basic_auth("pk-lf-1", "sk-lf-1")
    'Basic cGstbGYtMTpzay1sZi0x'
    """
    return "Basic " + base64.b64encode(f"{public_key}:{secret_key}".encode()).decode()
