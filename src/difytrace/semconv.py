"""Every attribute and metric name difytrace emits, in one place.

Names from the OpenTelemetry semantic conventions are written here as the stable strings of
the conventions (HTTP, messaging); difytrace's own names live under ``difytrace.*``. The
metric catalogue ``METRICS`` is the single source the dashboards and alert rules are checked
against, so a name changed here fails their tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# --- HTTP server (semconv v1.41, stable) ------------------------------------------------
HTTP_REQUEST_METHOD = "http.request.method"
HTTP_ROUTE = "http.route"
HTTP_RESPONSE_STATUS_CODE = "http.response.status_code"
URL_PATH = "url.path"
URL_SCHEME = "url.scheme"
CLIENT_ADDRESS = "client.address"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
USER_AGENT_ORIGINAL = "user_agent.original"
NETWORK_PROTOCOL_VERSION = "network.protocol.version"
ERROR_TYPE = "error.type"

# --- Streaming (server-sent events) responses: difytrace's own --------------------------
HTTP_STREAM = "difytrace.http.stream"
HTTP_TIME_TO_FIRST_BYTE = "difytrace.http.time_to_first_byte"
HTTP_STREAM_CHUNKS = "difytrace.http.stream.chunks"
HTTP_STREAM_DISCONNECTED = "difytrace.http.stream.client_disconnected"

# --- Messaging / Celery (semconv v1.41 messaging) ---------------------------------------
MESSAGING_SYSTEM = "messaging.system"
MESSAGING_OPERATION_NAME = "messaging.operation.name"
MESSAGING_OPERATION_TYPE = "messaging.operation.type"
MESSAGING_DESTINATION_NAME = "messaging.destination.name"
MESSAGING_MESSAGE_ID = "messaging.message.id"
CELERY_TASK_NAME = "celery.task.name"
CELERY_TASK_STATE = "celery.task.state"
CELERY_TASK_RETRIES = "celery.task.retries"
CELERY_QUEUE_WAIT = "difytrace.celery.queue_wait"
# Header carrying the publish time (epoch seconds) from producer to worker.
CELERY_PUBLISHED_AT_HEADER = "difytrace_published_at"

# --- Identity (Dify's user / tenant / app), on spans and as baggage ----------------------
USER_ID = "user.id"
TENANT_ID = "tenant.id"
APP_ID = "app.id"

InstrumentKind = Literal["counter", "histogram", "up_down_counter", "gauge"]


@dataclass(frozen=True)
class MetricSpec:
    """One metric difytrace emits: OTel name, instrument, unit and the attributes it carries."""

    name: str
    instrument: InstrumentKind
    unit: str
    description: str
    attributes: tuple[str, ...]

    @property
    def prometheus_name(self) -> str:
        """The series name Prometheus shows after the collector's / exporter's translation."""
        base = self.name.replace(".", "_")
        unit = {"s": "seconds", "By": "bytes", "1": "", "{token}": "", "{request}": ""}.get(
            self.unit, ""
        )
        if unit and not base.endswith(unit):
            base = f"{base}_{unit}"
        if self.instrument == "counter":
            base += "_total"
        return base


HTTP_SERVER_DURATION = MetricSpec(
    "http.server.request.duration",
    "histogram",
    "s",
    "Duration of HTTP server requests.",
    (HTTP_REQUEST_METHOD, HTTP_ROUTE, HTTP_RESPONSE_STATUS_CODE, URL_SCHEME, ERROR_TYPE),
)
HTTP_STREAM_DURATION = MetricSpec(
    "difytrace.http.stream.duration",
    "histogram",
    "s",
    "Duration of streamed (SSE) responses, first byte to end of stream.",
    (HTTP_REQUEST_METHOD, HTTP_ROUTE, HTTP_RESPONSE_STATUS_CODE),
)
CELERY_TASK_DURATION = MetricSpec(
    "difytrace.celery.task.duration",
    "histogram",
    "s",
    "Run time of Celery tasks.",
    (CELERY_TASK_NAME, MESSAGING_DESTINATION_NAME, CELERY_TASK_STATE),
)
CELERY_QUEUE_WAIT_DURATION = MetricSpec(
    "difytrace.celery.queue_wait.duration",
    "histogram",
    "s",
    "Time from publish to start of a Celery task.",
    (CELERY_TASK_NAME, MESSAGING_DESTINATION_NAME),
)
CELERY_TASK_PUBLISHED = MetricSpec(
    "difytrace.celery.task.published",
    "counter",
    "1",
    "Celery tasks published.",
    (CELERY_TASK_NAME, MESSAGING_DESTINATION_NAME),
)

#: Every metric difytrace emits. Modules append their own specs here at import time is NOT
#: allowed: add them to this tuple so the catalogue is complete without importing anything.
METRICS: tuple[MetricSpec, ...] = (
    HTTP_SERVER_DURATION,
    HTTP_STREAM_DURATION,
    CELERY_TASK_DURATION,
    CELERY_QUEUE_WAIT_DURATION,
    CELERY_TASK_PUBLISHED,
)

#: Histogram bucket boundaries (seconds) for request-scale durations.
DURATION_BUCKETS_S = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
)
