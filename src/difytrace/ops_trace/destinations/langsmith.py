"""LangSmith: the runs API (``POST /runs/batch``), or OTLP through :mod:`.otlp`.

Direct HTTP rather than ``langsmith.Client``, on purpose: the Client batches in a background
thread and retries on its own, so it cannot tell the worker which run was accepted — and the
worker acknowledges, retries and dead-letters by that answer. Its behaviour also differs
between the 0.1 line Dify pins and 0.15, and since 0.3 it can attach to OpenTelemetry
(``LANGSMITH_OTEL_ENABLED``), which a vendor SDK must never do here. The wire format is small:
each run carries ``id``, ``trace_id`` (the root run's id), ``dotted_order`` (ancestors'
``%Y%m%dT%H%M%S%fZ<run id>`` segments joined by dots) and ``parent_run_id``.

A 409 ("payloads already received") means that at least one run of the request exists. The
API does not say which, nor whether the other runs of the request were stored (the langsmith
SDK ignores a 409 for its whole batch, and the docs leave it open), so a 409 never vouches for
a batch: the batch is split until each request holds one record. A record's runs only ever
travel together, in one request, so one record's 409 means that request was taken before:
that record is accepted.
"""

from __future__ import annotations

import json
from typing import Any

from difytrace.ops_trace import links
from difytrace.ops_trace.destinations._common import iso
from difytrace.ops_trace.destinations.base import (
    ACCEPTED,
    SPLIT_ON,
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
    usage = _usage_metadata(obs)
    if usage:
        outputs = {**(outputs or {}), "usage_metadata": usage}
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


def _usage_metadata(obs: Observation) -> dict[str, Any]:
    """Tokens and, when the record knows it, cost (LangSmith's manual cost fields)."""
    usage: dict[str, Any] = {}
    if obs.usage is not None:
        usage.update(
            input_tokens=obs.usage.input_tokens,
            output_tokens=obs.usage.output_tokens,
            total_tokens=obs.usage.total,
        )
    if obs.cost is not None:
        for name, value in (
            ("input_cost", obs.cost.input),
            ("output_cost", obs.cost.output),
            ("total_cost", obs.cost.total),
        ):
            if value is not None:
                usage[name] = value
    return usage


class LangSmithDestination(Destination):
    """Delivers to one LangSmith project (one API key)."""

    kind = "langsmith"

    def __init__(
        self,
        *,
        api_key: str,
        endpoint: str = DEFAULT_ENDPOINT,
        project: str = "default",
        web_url: str | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        super().__init__(timeout_s=timeout_s)
        self.endpoint = endpoint.rstrip("/")
        self.url = self.endpoint + "/runs/batch"
        self.project = project
        self.web_url = links.public_base(web_url) if web_url else links.langsmith_web_url(endpoint)
        self.headers = {"x-api-key": api_key, "Content-Type": "application/json"}
        self._ids = links.CachedLookup(self._project_ids, "LangSmith project lookup")

    def send(self, batch: Batch) -> dict[str, Outcome]:
        """One ``/runs/batch`` request, bisected on validation errors and conflicts."""
        outcomes: dict[str, Outcome] = {}
        built = build_each(batch, self._runs, outcomes)
        send_bisecting(built, self._post, outcomes, split_on=(*SPLIT_ON, "http_409"))
        return outcomes

    def trace_url(self, view: TraceView) -> str | None:
        """``{web}/o/{organisation}/projects/p/{project}/r/{run}?trace_id={trace}``."""
        found = self._ids.get()
        if found is None:
            return None
        tenant, project = found
        run, trace = view.observations[0].run_id, view.langsmith_trace_id
        return f"{self.web_url}/o/{tenant}/projects/p/{project}/r/{run}?trace_id={trace}"

    def _project_ids(self) -> tuple[str, str] | None:
        # The project is created by the first ingested run: until then the list is empty.
        response = self.session.get(
            self.endpoint + "/sessions",
            params={"name": self.project, "limit": "1"},
            headers={"x-api-key": self.headers["x-api-key"]},
            timeout=min(self.timeout_s, 5.0),
        )
        response.raise_for_status()
        found = response.json()
        if not isinstance(found, list) or not found:
            return None
        return str(found[0]["tenant_id"]), str(found[0]["id"])

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
        if response.status_code == 409 and len(items) == 1:  # see the module docstring
            return ACCEPTED
        return classify_response(response)  # a batch's 409: split by send_bisecting
