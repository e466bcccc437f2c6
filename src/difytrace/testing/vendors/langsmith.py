"""A loopback LangSmith: the runs API (batch and multipart), ids and dotted_order checked."""

from __future__ import annotations

import json
import re
import urllib.parse
import uuid
from datetime import datetime
from typing import Any

from difytrace.testing.vendors.base import FakeVendor

_RUN_TYPES = {"llm", "chain", "tool", "retriever", "embedding", "prompt", "parser"}
_DOTTED = re.compile(r"^(\d{8}T\d{6}\d{6})Z([0-9a-f-]{36})$")


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
