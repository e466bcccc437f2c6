"""The one interface every destination implements, and the HTTP outcome classification.

A destination takes a batch of ``(uid, TraceView)`` and answers an :class:`Outcome` per uid:
accepted, retryable (connection error, timeout, 408, 429, 5xx; with the server's Retry-After)
or permanent (other 4xx, a redirect, a request that cannot be formed, a record it cannot
build). Redirects are not followed: requests would turn the POST into a GET, and the login
page at the end would read as success. Error messages never carry the destination's
credentials (:meth:`Destination.redact`). A whole-batch 400/413/422 is bisected so
that one bad record does not take its batch-mates to the dead-letter store (LangSmith splits
on 409 too).
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import functools
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import requests

from difytrace.ops_trace.view import TraceView

Batch = Sequence[tuple[str, TraceView]]


@dataclass(frozen=True)
class Outcome:
    """What happened to one record at one destination."""

    accepted: bool
    retryable: bool = False
    error_type: str = ""
    message: str = ""
    retry_after_s: float | None = None


ACCEPTED = Outcome(accepted=True)


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date), None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def classify_response(response: requests.Response) -> Outcome:
    """The outcome of a whole-batch HTTP answer."""
    status = response.status_code
    if 200 <= status < 300:
        return ACCEPTED
    if 300 <= status < 400:
        return Outcome(
            False, False, f"http_{status}", f"HTTP {status}: redirect not followed (check the URL)"
        )
    message = f"HTTP {status}: {response.text[:300]}"
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    if status in (408, 429) or status >= 500:
        return Outcome(False, True, f"http_{status}", message, retry_after)
    return Outcome(False, False, f"http_{status}", message)


#: Requests that cannot be formed: retrying cannot help. Their messages may quote a header
#: value (a credential), so the outcome names the mistake instead.
_MALFORMED: tuple[tuple[type[Exception], str], ...] = (
    (
        requests.exceptions.InvalidHeader,
        "a header value is invalid (a credential with a newline or surrounding spaces?)",
    ),
    (requests.exceptions.MissingSchema, "the destination URL has no http:// or https://"),
    (requests.exceptions.InvalidSchema, "the destination URL's scheme is not http or https"),
    (requests.exceptions.InvalidURL, "the destination URL is malformed"),
)


def classify_exception(exc: Exception) -> Outcome:
    """The outcome of a request that did not get an answer."""
    for kind, meaning in _MALFORMED:
        if isinstance(exc, kind):
            return Outcome(False, False, "invalid_request", meaning)
    if isinstance(exc, requests.Timeout):
        return Outcome(False, True, "timeout", str(exc)[:300])
    if isinstance(exc, requests.ConnectionError):
        return Outcome(False, True, "connection", str(exc)[:300])
    return Outcome(False, True, type(exc).__name__, str(exc)[:300])


class Destination(ABC):
    """One configured destination (one set of credentials)."""

    #: "langfuse", "langsmith" or "otlp": the metric attribute value.
    kind: str = ""

    #: Credentials a destination sends, per header; :meth:`redact` keeps them out of messages.
    headers: dict[str, str]

    def __init__(self, *, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.session = requests.Session()
        self.headers = {}

    def redact(self, text: str) -> str:
        """``text`` without any credential this destination sends.

        Every header value counts (except the content type), and its parts: the token of
        ``Bearer``/``Basic``, and the decoded ``public:secret`` pair of Basic auth.
        """
        for secret in self._secrets:
            text = text.replace(secret, "****")
        return text

    @functools.cached_property
    def _secrets(self) -> list[str]:
        # Headers are set once, when the subclass is built: longest first, so no part of a
        # longer secret is left behind by a shorter one.
        return sorted(_secret_parts(self.headers), key=len, reverse=True)

    @abstractmethod
    def send(self, batch: Batch) -> dict[str, Outcome]:
        """Deliver the batch; one outcome per uid."""

    def trace_url(self, view: TraceView) -> str | None:
        """The record's trace in the vendor's UI; None where there is none (or not yet).

        May ask the vendor once per destination for ids the URL needs; never raises.
        """
        return None

    def close(self) -> None:
        """Release connections."""
        self.session.close()

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> requests.Response:
        """POST with this destination's timeout and keep-alive session; no redirects."""
        return self.session.post(
            url, data=body, headers=headers, timeout=self.timeout_s, allow_redirects=False
        )


_NOT_SECRET = frozenset({"content-type", "langsmith-project", "x-langfuse-ingestion-version"})


def _secret_parts(headers: dict[str, str]) -> set[str]:
    parts: set[str] = set()
    for name, value in headers.items():
        if name.lower() in _NOT_SECRET or not value:
            continue
        parts |= {value, value.strip()}
        scheme, _, token = value.strip().partition(" ")
        if token and scheme.lower() in ("basic", "bearer"):
            parts.add(token)
        if scheme.lower() == "basic":
            try:
                pair = base64.b64decode(token, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                continue
            parts |= {pair, *pair.split(":", 1)}
    return {p for p in parts if len(p) >= 4}


def build_each(
    batch: Batch, build: Callable[[TraceView], Any], outcomes: dict[str, Outcome]
) -> list[tuple[str, Any]]:
    """Build each record's payload; a record that fails to build gets a permanent outcome."""
    built: list[tuple[str, Any]] = []
    for uid, view in batch:
        try:
            built.append((uid, build(view)))
        except Exception as exc:
            outcomes[uid] = Outcome(False, False, "build_error", f"{type(exc).__name__}: {exc}")
    return built


#: Whole-batch answers that may be about one record only: the batch is split to find it.
SPLIT_ON = ("http_400", "http_413", "http_422")


def send_bisecting(
    items: list[tuple[str, Any]],
    send: Callable[[list[tuple[str, Any]]], Outcome],
    outcomes: dict[str, Outcome],
    split_on: tuple[str, ...] = SPLIT_ON,
) -> None:
    """Send ``items`` as one request; on a ``split_on`` answer, split it in halves and retry."""
    if not items:
        return
    outcome = send(items)
    if (
        not outcome.accepted
        and not outcome.retryable
        and len(items) > 1
        and outcome.error_type in split_on
    ):
        half = len(items) // 2
        send_bisecting(items[:half], send, outcomes, split_on)
        send_bisecting(items[half:], send, outcomes, split_on)
        return
    for uid, _ in items:
        outcomes[uid] = outcome
