"""Generic OTLP/HTTP (protobuf): any collector or backend; LangSmith's OTLP endpoint too.

Spans carry GenAI semantic-convention attributes (operation, provider, model, token usage),
the identity (tenant / app / user / session) and the inputs / outputs as JSON text under
``difytrace.ops_trace.*``. With ``flavour="langsmith"`` the request also carries
``x-api-key`` / ``Langsmith-Project`` and each span its ``langsmith.span.kind``.
"""

from __future__ import annotations

from typing import Any

from difytrace import semconv as sc
from difytrace.ops_trace.destinations import otlp_wire
from difytrace.ops_trace.destinations._common import (
    RESOURCE,
    SCOPE_NAME,
    SCOPE_VERSION,
    to_json,
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

_OPERATION = {
    "generation": "chat",
    "tool": "execute_tool",
    "agent": "invoke_agent",
    "retriever": "retrieval",
}


def span_attributes(view: TraceView, obs: Observation, flavour: str) -> dict[str, Any]:
    """The attributes of one observation as a generic OTLP span."""
    return {**record_attributes(view), **_own_attributes(obs, flavour)}


def record_attributes(view: TraceView) -> dict[str, Any]:
    """The attributes every span of a record carries (encoded once per record)."""
    record = view.record
    return {
        sc.TENANT_ID: record.tenant_id,
        sc.APP_ID: record.app_id,
        sc.USER_ID: record.user_id,
        "session.id": record.session_id,
        "difytrace.ops_trace.record_type": record.kind,
    }


def _own_attributes(obs: Observation, flavour: str) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "difytrace.ops_trace.observation_type": obs.type,
        sc.OPS_TRACE_INPUT: None if obs.inputs is None else to_json(obs.inputs),
        sc.OPS_TRACE_OUTPUT: None if obs.outputs is None else to_json(obs.outputs),
        sc.OPS_TRACE_METADATA: to_json(obs.metadata) if obs.metadata else None,
    }
    if obs.type in _OPERATION:
        attrs[sc.GEN_AI_OPERATION_NAME] = _OPERATION[obs.type]
    if obs.model:
        attrs[sc.GEN_AI_REQUEST_MODEL] = obs.model
        attrs[sc.GEN_AI_PROVIDER_NAME] = obs.model_provider
    if obs.usage is not None:
        attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] = obs.usage.input_tokens
        attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] = obs.usage.output_tokens
    if obs.status == "error":
        attrs[sc.ERROR_TYPE] = "error"
    if flavour == "langsmith":
        attrs[sc.LANGSMITH_SPAN_KIND] = obs.run_type
    return attrs


class OtlpDestination(Destination):
    """Delivers spans to one OTLP/HTTP traces endpoint (the full ``.../v1/traces`` URL)."""

    kind = "otlp"

    def __init__(
        self,
        *,
        endpoint: str,
        headers: dict[str, str] | None = None,
        flavour: str = "generic",
        timeout_s: float = 10.0,
    ) -> None:
        super().__init__(timeout_s=timeout_s)
        self.endpoint = endpoint
        self.flavour = flavour
        self.headers = {**(headers or {}), "Content-Type": "application/x-protobuf"}
        if flavour == "langsmith":
            self.kind = "langsmith"

    def send(self, batch: Batch) -> dict[str, Outcome]:
        """One export request, bisected on validation errors."""
        outcomes: dict[str, Outcome] = {}
        built = build_each(batch, self._spans, outcomes)
        send_bisecting(built, self._post, outcomes)
        return outcomes

    def _spans(self, view: TraceView) -> list[bytes]:
        # The record's own attributes are encoded once and shared by its spans.
        shared = otlp_wire.attributes(9, record_attributes(view))
        trace = otlp_wire.trace_id_field(view.trace_id)
        return [self._span(trace, shared, obs) for obs in view.observations]

    def _span(self, trace: bytes, shared: bytes, obs: Observation) -> bytes:
        pieces = [shared]
        otlp_wire.attributes_into(pieces, 9, _own_attributes(obs, self.flavour))
        return wire_span(trace, obs, pieces)

    def _post(self, items: list[tuple[str, Any]]) -> Outcome:
        body = otlp_wire.export_requests(
            RESOURCE, SCOPE_NAME, SCOPE_VERSION, [spans for _, spans in items]
        )
        try:
            return classify_response(self.post(self.endpoint, body, self.headers))
        except Exception as exc:
            return classify_exception(exc)
