"""Langfuse: OTLP (``/api/public/otel/v1/traces``, server v3+) or the legacy ingestion API.

Langfuse answers 2xx before validating, so payloads are built to its schema here: timestamps
in ISO 8601 with a zone, versions and releases as strings, usage/cost details as JSON objects
of numbers. Observation ids are the 16-hex span ids and trace ids the 32-hex trace ids of
:mod:`difytrace.ops_trace.ids` in both APIs, so one record upserts the same entities whichever
API delivered it.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from difytrace.ops_trace import ids, links
from difytrace.ops_trace.destinations import otlp_wire
from difytrace.ops_trace.destinations._common import (
    RESOURCE,
    SCOPE_NAME,
    SCOPE_VERSION,
    cost_details,
    iso,
    to_json,
    usage_details,
    usage_details_json,
    wire_span,
)
from difytrace.ops_trace.destinations.base import (
    Batch,
    Destination,
    Outcome,
    build_each,
    classify_exception,
    classify_response,
    send_bisecting,
)
from difytrace.ops_trace.view import Observation, TraceView

OTLP_PATH = "/api/public/otel/v1/traces"
INGESTION_PATH = "/api/public/ingestion"
PROJECTS_PATH = "/api/public/projects"


def _auth(public_key: str, secret_key: str) -> str:
    return "Basic " + base64.b64encode(f"{public_key}:{secret_key}".encode()).decode()


class _Prefixed(dict[str, str]):
    """``prefix.key`` attribute names, made once per key (metadata keys repeat)."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def __missing__(self, key: str) -> str:
        name = f"{self.prefix}.{key}"
        if len(self) < 10_000:
            self[key] = name
        return name


_OBSERVATION_METADATA = _Prefixed("langfuse.observation.metadata")
_TRACE_METADATA = _Prefixed("langfuse.trace.metadata")


def _metadata(names: _Prefixed, metadata: dict[str, Any]) -> dict[str, str]:
    return {
        names[k]: v if v.__class__ is str else str(v) if v.__class__ is int else to_json(v)
        for k, v in metadata.items()
        if v is not None
    }


def observation_attributes(
    view: TraceView, obs: Observation, environment: str | None
) -> dict[str, Any]:
    """The ``langfuse.*`` attributes of one observation (trace fields on the record's root)."""
    return {**_own_head(obs), **record_attributes(view, environment), **_own_tail(view, obs)}


def record_attributes(view: TraceView, environment: str | None) -> dict[str, Any]:
    """The attributes every observation of a record carries (encoded once per record)."""
    record = view.record
    return {
        "langfuse.environment": environment or record.environment,
        "langfuse.version": record.version,
        "langfuse.release": record.release,
        "tenant.id": record.tenant_id,
        "app.id": record.app_id,
    }


def _own_head(obs: Observation) -> dict[str, Any]:
    return {
        "langfuse.observation.type": obs.type,
        "langfuse.observation.input": None if obs.inputs is None else to_json(obs.inputs),
        "langfuse.observation.output": None if obs.outputs is None else to_json(obs.outputs),
    }


def _own_tail(view: TraceView, obs: Observation) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    if obs.status == "error":
        attrs["langfuse.observation.level"] = "ERROR"
        attrs["langfuse.observation.status_message"] = obs.error or "error"
    if obs.model:
        attrs["langfuse.observation.model.name"] = obs.model
        params = obs.model_parameters
        attrs["langfuse.observation.model.parameters"] = to_json(params) if params else "{}"
    if obs.usage is not None:
        attrs["langfuse.observation.usage_details"] = usage_details_json(obs.usage)
    if obs.cost is not None:
        attrs["langfuse.observation.cost_details"] = _or_none(cost_details(obs))
    if obs.completion_start_time is not None:
        attrs["langfuse.observation.completion_start_time"] = to_json(
            iso(obs.completion_start_time)
        )
    if obs.metadata:
        attrs.update(_metadata(_OBSERVATION_METADATA, obs.metadata))
    if obs.key == "" and view.is_trace_root:
        attrs.update(_trace_attributes(view))
    return attrs


def _or_none(details: dict[str, float] | None) -> str | None:
    return None if details is None else to_json(details)


def _trace_attributes(view: TraceView) -> dict[str, Any]:
    record = view.record
    attrs: dict[str, Any] = {
        "langfuse.trace.name": record.name or record.kind,
        "user.id": record.user_id,
        "session.id": record.session_id,
        "langfuse.trace.input": None if record.inputs is None else to_json(record.inputs),
        "langfuse.trace.output": (
            None if view.observations[0].outputs is None else to_json(view.observations[0].outputs)
        ),
        "langfuse.trace.tags": list(record.tags) or None,
    }
    attrs.update(_metadata(_TRACE_METADATA, record.metadata))
    return attrs


class LangfuseDestination(Destination):
    """Delivers to one Langfuse project (one key pair)."""

    kind = "langfuse"

    def __init__(
        self,
        *,
        host: str,
        public_key: str,
        secret_key: str,
        api: str = "otlp",
        environment: str | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        super().__init__(timeout_s=timeout_s)
        self.host = host.rstrip("/")
        self.api = api
        self.environment = environment
        self.headers = {
            "Authorization": _auth(public_key, secret_key),
            "x-langfuse-ingestion-version": "4",
        }
        self._project = links.CachedLookup(self._project_id, "Langfuse project lookup")

    def trace_url(self, view: TraceView) -> str | None:
        """``{host}/project/{project id}/traces/{trace id}`` (the project of these keys)."""
        project = self._project.get()
        if project is None:
            return None
        return f"{links.public_base(self.host)}/project/{project}/traces/{view.trace_id}"

    def _project_id(self) -> str | None:
        # A key pair belongs to exactly one project: the API lists just that one.
        response = self.session.get(
            self.host + PROJECTS_PATH,
            headers={"Authorization": self.headers["Authorization"]},
            timeout=min(self.timeout_s, 5.0),
        )
        response.raise_for_status()
        data = response.json().get("data") or []
        return str(data[0]["id"]) if data and data[0].get("id") else None

    def send(self, batch: Batch) -> dict[str, Outcome]:
        """One OTLP request (or one ingestion batch) per call, bisected on validation errors."""
        outcomes: dict[str, Outcome] = {}
        if self.api == "ingestion":
            built = build_each(batch, self._events, outcomes)
            self._send_ingestion(built, outcomes)
        else:
            built = build_each(batch, self._spans, outcomes)
            send_bisecting(built, self._post_otlp, outcomes)
        return outcomes

    # --- OTLP --------------------------------------------------------------------------
    def _spans(self, view: TraceView) -> list[bytes]:
        # The record's own attributes are encoded once and shared by its observations.
        shared = otlp_wire.attributes(9, record_attributes(view, self.environment))
        trace = otlp_wire.trace_id_field(view.trace_id)
        return [self._span(trace, shared, view, obs) for obs in view.observations]

    @staticmethod
    def _span(trace: bytes, shared: bytes, view: TraceView, obs: Observation) -> bytes:
        pieces: list[bytes] = []
        otlp_wire.attributes_into(pieces, 9, _own_head(obs))
        pieces.append(shared)
        otlp_wire.attributes_into(pieces, 9, _own_tail(view, obs))
        return wire_span(trace, obs, pieces)

    def _post_otlp(self, items: list[tuple[str, Any]]) -> Outcome:
        body = otlp_wire.export_requests(
            RESOURCE, SCOPE_NAME, SCOPE_VERSION, [spans for _, spans in items]
        )
        headers = {**self.headers, "Content-Type": "application/x-protobuf"}
        try:
            return classify_response(self.post(self.host + OTLP_PATH, body, headers))
        except Exception as exc:
            return classify_exception(exc)

    # --- legacy ingestion API ----------------------------------------------------------
    def _events(self, view: TraceView) -> list[dict[str, Any]]:
        return ingestion_events(view, self.environment)

    def _send_ingestion(self, built: list[tuple[str, Any]], outcomes: dict[str, Outcome]) -> None:
        owner = {event["id"]: uid for uid, events in built for event in events}
        per_event: dict[str, Outcome] = {}  # a 207's failed events, applied after the split

        def post(items: list[tuple[str, Any]]) -> Outcome:
            body = json.dumps(
                {"batch": [e for _, events in items for e in events]},
                ensure_ascii=False,
                default=str,
            ).encode("utf-8", "replace")
            headers = {**self.headers, "Content-Type": "application/json"}
            try:
                response = self.post(self.host + INGESTION_PATH, body, headers)
            except Exception as exc:
                return classify_exception(exc)
            outcome = classify_response(response)
            if response.status_code == 207 or (outcome.accepted and response.content):
                _apply_per_event(response, owner, per_event)
            return outcome

        send_bisecting(built, post, outcomes)
        outcomes.update(per_event)


def _apply_per_event(response: Any, owner: dict[str, str], outcomes: dict[str, Outcome]) -> None:
    """Per-event results of a 207: one failed event fails its record."""
    try:
        errors = response.json().get("errors") or []
    except ValueError:
        return
    for error in errors:
        uid = owner.get(str(error.get("id")))
        if uid is None:
            continue
        status = int(error.get("status") or 500)
        message = f"event {error.get('id')}: {error.get('message') or error.get('error')}"
        retryable = status >= 500 or status == 429
        outcomes[uid] = Outcome(False, retryable, f"http_{status}", message[:300])


def ingestion_events(view: TraceView, environment: str | None) -> list[dict[str, Any]]:
    """The ingestion-API events of a record: trace-create (root records), then observations."""
    record = view.record
    env = environment or record.environment
    events: list[dict[str, Any]] = []
    stamp = iso(record.end_time or record.start_time)
    if view.is_trace_root:
        body = {
            "id": view.trace_id,
            "timestamp": iso(record.start_time),
            "name": record.name or record.kind,
            "userId": record.user_id,
            "sessionId": record.session_id,
            "input": record.inputs,
            "output": view.observations[0].outputs,
            "metadata": dict(record.metadata),
            "tags": list(record.tags),
            "release": record.release,
            "version": record.version,
            "environment": env,
        }
        events.append(
            {
                "id": ids.event_id(view.trace_id, "trace"),
                "timestamp": stamp,
                "type": "trace-create",
                "body": _clean(body),
            }
        )
    for obs in view.observations:
        kind = "generation-create" if obs.type == "generation" else "span-create"
        body = {
            "id": obs.span_id,
            "traceId": view.trace_id,
            "name": obs.name,
            "startTime": iso(obs.start_time),
            "endTime": iso(obs.end_time),
            "parentObservationId": obs.parent_span_id,
            "input": obs.inputs,
            "output": obs.outputs,
            "metadata": {**obs.metadata, "type": obs.type},
            "level": "ERROR" if obs.status == "error" else "DEFAULT",
            "statusMessage": obs.error,
            "version": record.version,
            "environment": env,
        }
        if kind == "generation-create":
            body.update(
                model=obs.model,
                modelParameters=_string_params(obs.model_parameters),
                usageDetails=usage_details(obs),
                costDetails=cost_details(obs),
                completionStartTime=iso(obs.completion_start_time),
            )
        events.append(
            {
                "id": ids.event_id(view.trace_id, obs.span_id),
                "timestamp": stamp,
                "type": kind,
                "body": _clean(body),
            }
        )
    return events


def _string_params(params: dict[str, Any]) -> dict[str, Any]:
    # Langfuse's modelParameters accept strings, numbers and booleans only.
    return {
        k: v if isinstance(v, str | int | float | bool) else to_json(v)
        for k, v in params.items()
        if v is not None
    }


def _clean(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if v is not None}
