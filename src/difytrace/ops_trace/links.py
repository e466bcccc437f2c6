"""Links from a delivered record to its trace in the vendor's UI (Langfuse, LangSmith).

A trace URL needs ids that the credentials imply but the config does not name: Langfuse's
project id (``GET /api/public/projects``), LangSmith's organisation and project ids
(``GET /sessions?name=<project>``). :class:`CachedLookup` asks once per destination object
(one credential) when a URL is first needed — never at import or start — and keeps the answer;
a failed lookup is tried again a minute later at the earliest, so an outage costs one request a
minute, not one per record.

:class:`DeliveryLog` logs one INFO line per destination per minute: how many records it
accepted and the trace URL of the latest (at 2,000 traces/s, a line per trace would be 170
million lines a day; the periodic line still hands an operator a working link per
destination). Every record's URL is logged at DEBUG. Log records carry the URL as the
``difytrace.ops_trace.trace_url`` attribute. URLs never carry a credential: the host's
user-info, query and fragment are dropped.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from difytrace.ops_trace.destinations.base import Destination
    from difytrace.ops_trace.view import TraceView

logger = logging.getLogger("difytrace.ops_trace")

#: Log-record attribute (and dead-letter field ``trace_url``) holding a trace URL.
TRACE_URL = "difytrace.ops_trace.trace_url"

T = TypeVar("T")


class CachedLookup(Generic[T]):
    """The answer of ``fetch`` once it succeeded; after a failure, None until ``retry_s``."""

    def __init__(self, fetch: Callable[[], T | None], what: str, retry_s: float = 60.0) -> None:
        self._fetch = fetch
        self._what = what
        self._retry_s = retry_s
        self._value: T | None = None
        self._next_try = 0.0
        self._failures = 0
        self._lock = threading.Lock()

    def get(self) -> T | None:
        """The cached value, fetching it when due; never raises."""
        if self._value is not None:
            return self._value
        with self._lock:
            now = time.monotonic()
            if self._value is not None or now < self._next_try:
                return self._value
            self._next_try = now + self._retry_s
            try:
                self._value = self._fetch()
            except Exception as exc:
                self._failures += 1
                if self._failures == 1:  # once per destination: the reason, never a secret
                    logger.info(
                        "ops_trace: no trace URLs yet, %s failed (%s)", self._what, _why(exc)
                    )
            return self._value


def _why(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return f"HTTP {status}" if status is not None else type(exc).__name__


def public_base(url: str) -> str:
    """``scheme://host[:port]/path`` of ``url`` without user-info, query or trailing slash."""
    parts = urllib.parse.urlsplit(url.strip())
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = host + (f":{port}" if port else "")
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


_LANGSMITH_REGIONS = ("eu.", "aws.", "apac.", "dev.", "beta.")


def langsmith_web_url(api_url: str) -> str:
    """LangSmith's UI for an API URL, by the rules of the langsmith SDK's ``get_host_url``."""
    parts = urllib.parse.urlsplit(public_base(api_url))
    host = parts.hostname or ""
    if host in ("localhost", "127.0.0.1", "::1") or host.startswith("0.0.0.0"):
        return "http://localhost"
    for suffix in ("/api/v1", "/api"):
        if parts.path.endswith(suffix):
            return urllib.parse.urlunsplit(
                (parts.scheme, parts.netloc, parts.path[: -len(suffix)], "", "")
            )
    region = next((r for r in _LANGSMITH_REGIONS if host.startswith(r)), "")
    return f"https://{region}smith.langchain.com"


class DeliveryLog:
    """Logs delivered records: the URL of each at DEBUG, a summary per destination at INFO."""

    def __init__(self, interval_s: float = 60.0) -> None:
        self.interval_s = interval_s
        self._next: dict[str, float] = {}
        self._count: Counter[str] = Counter()

    def delivered(self, key: str, dest: Destination, views: Sequence[TraceView]) -> None:
        """``views`` were accepted by ``dest`` (config key ``key``)."""
        if not views:
            return
        self._count[key] += len(views)
        if logger.isEnabledFor(logging.DEBUG):
            for view in views:
                url = dest.trace_url(view)
                logger.debug(
                    "ops_trace record %s delivered to %s: %s",
                    view.record.record_id,
                    dest.kind,
                    url or "(no trace URL)",
                    extra={TRACE_URL: url},
                )
        now = time.monotonic()
        if now < self._next.get(key, 0.0):
            return
        self._next[key] = now + self.interval_s
        url = dest.trace_url(views[-1])
        logger.info(
            "ops_trace: %d records delivered to %s %s since the last report; latest trace: %s",
            self._count.pop(key),
            dest.kind,
            key,
            url or "(no trace URL)",
            extra={TRACE_URL: url},
        )
