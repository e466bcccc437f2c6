"""Harmless requests that tell whether a destination or broker answers and accepts our
credentials; each returns a :class:`Check` for ``difytrace doctor``. None sends data."""

from __future__ import annotations

import base64
import socket
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any, Literal

from difytrace.settings import masked_url

__all__ = ["Check", "langfuse", "langsmith", "masked_url", "otlp", "redis_ping", "tcp"]

Status = Literal["pass", "fail", "warn", "skip"]


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report."""

    area: str
    name: str
    status: Status
    detail: str


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    return str(getattr(reason, "strerror", None) or reason)


def http_status(
    method: str, url: str, headers: dict[str, str], body: bytes | None, timeout_s: float
) -> tuple[int | None, str]:
    """The status of one request, or ``(None, why it failed)`` when nothing answered.

    Credentials in the URL (``http://user:pass@host``) go as Basic auth, as the exporters'
    HTTP client sends them; urllib would take them for part of the host name.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.username is not None:
        pair = (
            f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
        )
        headers = {"authorization": "Basic " + base64.b64encode(pair.encode()).decode(), **headers}
        url = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return int(response.status), ""
    except urllib.error.HTTPError as exc:
        return int(exc.code), str(exc.reason)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return None, _reason(exc)


def classify(area: str, name: str, status: int | None, why: str, *, auth: bool) -> Check:
    """Turn an HTTP outcome into a check: 2xx pass, 401/403 bad credentials, else fail."""
    if status is None:
        return Check(area, name, "fail", f"unreachable ({why})")
    if 200 <= status < 300:
        return Check(
            area,
            name,
            "pass",
            f"reachable, credentials accepted (HTTP {status})"
            if auth
            else f"reachable (HTTP {status})",
        )
    if status in (401, 403):
        return Check(area, name, "fail", f"credentials rejected (HTTP {status} {why})".strip())
    if status in (400, 415):
        return Check(area, name, "warn", f"reachable, but the probe was refused (HTTP {status})")
    return Check(area, name, "fail", f"answered HTTP {status} {why}".strip())


def otlp(area: str, name: str, endpoint: str, headers: dict[str, str], timeout_s: float) -> Check:
    """POST an empty ``ExportTraceServiceRequest`` (zero spans) to an OTLP/HTTP endpoint."""
    status, why = http_status(
        "POST", endpoint, {**headers, "content-type": "application/x-protobuf"}, b"", timeout_s
    )
    return classify(area, name, status, why, auth=bool(headers))


def langfuse(name: str, host: str, public_key: str, secret_key: str, timeout_s: float) -> Check:
    """GET ``/api/public/projects``: the project of the key pair (read-only)."""
    token = base64.b64encode(f"{public_key}:{secret_key}".encode()).decode()
    status, why = http_status(
        "GET",
        host.rstrip("/") + "/api/public/projects",
        {"authorization": f"Basic {token}"},
        None,
        timeout_s,
    )
    return classify("destination", name, status, why, auth=True)


def langsmith(name: str, endpoint: str, api_key: str, timeout_s: float) -> Check:
    """GET ``/sessions?limit=1``: lists at most one project (read-only)."""
    status, why = http_status(
        "GET", endpoint.rstrip("/") + "/sessions?limit=1", {"x-api-key": api_key}, None, timeout_s
    )
    return classify("destination", name, status, why, auth=True)


def tcp(area: str, name: str, url: str, default_port: int, timeout_s: float) -> Check:
    """Open (and close) a TCP connection to the URL's host and port."""
    parts = urllib.parse.urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "localhost", parts.port or default_port), timeout=timeout_s
        ):
            return Check(area, name, "pass", "reachable (TCP)")
    except OSError as exc:
        return Check(area, name, "fail", f"unreachable ({_reason(exc)})")


def redis_ping(client: Any, area: str, name: str) -> Check:
    """PING through a redis-py client: reachable, and the password (if any) accepted."""
    import redis

    try:
        client.ping()
    except redis.AuthenticationError as exc:
        return Check(area, name, "fail", f"credentials rejected ({exc})")
    except redis.ResponseError as exc:
        if "NOAUTH" in str(exc) or "WRONGPASS" in str(exc):
            return Check(area, name, "fail", f"credentials rejected ({exc})")
        return Check(area, name, "fail", f"answered with an error ({exc})")
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        return Check(area, name, "fail", f"unreachable ({_reason(exc)})")
    return Check(area, name, "pass", "reachable, PING answered")
