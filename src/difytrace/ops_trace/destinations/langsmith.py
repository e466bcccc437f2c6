"""LangSmith: the runs API (``POST /runs/batch``), or OTLP through :mod:`.otlp`.

Direct HTTP rather than ``langsmith.Client``, on purpose: the Client batches in a background
thread and retries on its own, so it cannot tell the worker which run was accepted — and the
worker acknowledges, retries and dead-letters by that answer. Its behaviour also differs
between the 0.1 line Dify pins and 0.15, and since 0.3 it can attach to OpenTelemetry
(``LANGSMITH_OTEL_ENABLED``), which a vendor SDK must never do here. The wire format is small:
each run carries ``id``, ``trace_id`` (the root run's id), ``dotted_order`` (ancestors'
``%Y%m%dT%H%M%S%fZ<run id>`` segments joined by dots) and ``parent_run_id``.
"""

from __future__ import annotations

import json
from typing import Any

from difytrace.ops_trace.destinations._common import iso
from difytrace.ops_trace.destinations.base import (
    ACCEPTED,
    Batch,
    Destination,
    Outcome,
    build_each,
    classify_exception,
    classify_response,
    send_bisecting,
)
from difytrace.ops_trace.view import Observation, TraceView

DEFAULT_ENDPOINT = "https://api.smith.langchain.com"


def _as_dict(value: Any, name: str) -> dict[str, Any] | None:
    if value is None:
        return None
    return value if isinstance(value, dict) else {name: value}


def run_body(view: TraceView, obs: Observation, project: str) -> dict[str, Any]:
    """One run as ``/runs/batch`` takes it."""
    record = view.record
    metadata: dict[str, Any] = {**obs.metadata, "tenant_id": record.tenant_id}
    for key, value in (
        ("app_id", record.app_id),
        ("user_id", record.user_id),
        ("session_id", record.session_id),
        ("ls_model_name", obs.model),
        ("ls_provider", obs.model_provider),
        ("otel_trace_id", view.trace_id),
    ):
        if value:
            metadata[key] = value
    outputs = _as_dict(obs.outputs, "output")
    if obs.usage is not None:
        outputs = {
            **(outputs or {}),
            "usage_metadata": {
                "input_tokens": obs.usage.input_tokens,
                "output_tokens": obs.usage.output_tokens,
                "total_tokens": obs.usage.total,
            },
        }
    body: dict[str, Any] = {
        "id": str(obs.run_id),
        "trace_id": str(view.langsmith_trace_id),
        "dotted_order": obs.dotted_order,
        "parent_run_id": None if obs.parent_run_id is None else str(obs.parent_run_id),
        "name": obs.name,
        "run_type": obs.run_type,
        "start_time": iso(obs.start_time),
        "end_time": iso(obs.end_time or obs.start_time),
        "inputs": _as_dict(obs.inputs, "input") or {},
        "outputs": outputs or {},
        "extra": {"metadata": metadata},
        "tags": list(record.tags),
        "session_name": project,
        "error": obs.error if obs.status == "error" else None,
    }
    if obs.model_parameters:
        body["extra"]["invocation_params"] = dict(obs.model_parameters)
    return body


class LangSmithDestination(Destination):
    """Delivers to one LangSmith project (one API key)."""

    kind = "langsmith"

    def __init__(
        self,
        *,
        api_key: str,
        endpoint: str = DEFAULT_ENDPOINT,
        project: str = "default",
        timeout_s: float = 10.0,
    ) -> None:
        super().__init__(timeout_s=timeout_s)
        self.url = endpoint.rstrip("/") + "/runs/batch"
        self.project = project
        self.headers = {"x-api-key": api_key, "Content-Type": "application/json"}

    def send(self, batch: Batch) -> dict[str, Outcome]:
        """One ``/runs/batch`` request, bisected on validation errors."""
        outcomes: dict[str, Outcome] = {}
        built = build_each(batch, self._runs, outcomes)
        send_bisecting(built, self._post, outcomes)
        return outcomes

    def _runs(self, view: TraceView) -> list[dict[str, Any]]:
        return [run_body(view, obs, self.project) for obs in view.observations]

    def _post(self, items: list[tuple[str, Any]]) -> Outcome:
        runs = [run for _, item_runs in items for run in item_runs]
        body = json.dumps({"post": runs, "patch": []}, ensure_ascii=False, default=str).encode(
            "utf-8", "replace"
        )
        try:
            response = self.post(self.url, body, self.headers)
        except Exception as exc:
            return classify_exception(exc)
        if response.status_code == 409:  # runs already there: a re-send of accepted runs
            return ACCEPTED
        return classify_response(response)
