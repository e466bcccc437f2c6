"""The fake Langfuse reads OTLP the way the real endpoint does: protobuf or JSON, gzip or not."""

from __future__ import annotations

import gzip
import json
import urllib.request

import pytest

from difytrace.testing.vendors import FakeLangfuse, basic_auth

TRACE_ID = "5b8efff798038103d269b633813fc60c"
SPAN_ID = "eee19b7ec3c1b174"


def _otlp_json() -> bytes:
    span = {
        "traceId": TRACE_ID,  # OTLP/JSON: hex, not protobuf-JSON's base64
        "spanId": SPAN_ID,
        "name": "chat",
        "startTimeUnixNano": "1700000000000000000",
        "endTimeUnixNano": "1700000001000000000",
        "attributes": [
            {"key": "langfuse.observation.type", "value": {"stringValue": "generation"}}
        ],
    }
    return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}).encode()


@pytest.mark.parametrize("encoding", ["identity", "gzip"])
def test_otlp_json_with_hex_ids_is_stored_under_its_span_id(encoding: str) -> None:
    body = _otlp_json()
    headers = {"Authorization": basic_auth("pk", "sk"), "Content-Type": "application/json"}
    if encoding == "gzip":
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    with FakeLangfuse() as langfuse:
        langfuse.add_project("pk", "sk", "tenant-a")
        request = urllib.request.Request(
            langfuse.endpoint + "/api/public/otel/v1/traces", body, headers
        )
        assert urllib.request.urlopen(request).status == 200
        assert langfuse.rejected == []
        assert langfuse.ids("tenant-a") == {SPAN_ID}
        assert langfuse.by_tenant()["tenant-a"][0]["trace_id"] == TRACE_ID
