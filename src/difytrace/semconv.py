"""Every attribute and metric name difytrace emits, in one place.

Names from the OpenTelemetry semantic conventions are written here as the stable strings of
the conventions (HTTP, messaging); difytrace's own names live under ``difytrace.*``. GenAI
names are spelled in :mod:`difytrace.semconv_genai` (pinned and latest modes) and only
aliased here. The
metric catalogue ``METRICS`` is the single source the dashboards and alert rules are checked
against, so a name changed here fails their tests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from difytrace import semconv_genai as _genai

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
# Set, with http.request.method "_OTHER", when the method is not one semconv knows.
HTTP_REQUEST_METHOD_ORIGINAL = "http.request.method_original"
#: Buckets (s) semconv advises for http.server.request.duration.
HTTP_DURATION_BUCKETS_S = (
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
)

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
# Span names are "{operation} {task name}" ("send tasks.x" / "process tasks.x"): semconv
# v1.41's "{messaging.operation.name} {destination}" shape, with the task name standing in for
# the destination because a Celery queue carries many tasks (Dify's "dataset" queue: dozens)
# and the task is what a reader looks for; the queue is in messaging.destination.name. Contrib's
# "apply_async/x" / "run/x" are not semconv shapes. Operation names: semconv's "send"/"process".
CELERY_SYSTEM = "celery"
CELERY_SEND_OPERATION = "send"
CELERY_PROCESS_OPERATION = "process"
CELERY_RETRY_EVENT = "celery.retry"
EXCEPTION_TYPE = "exception.type"
EXCEPTION_MESSAGE = "exception.message"

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
        """The series name Prometheus shows, as the collector's ``prometheus`` exporter writes it
        (prometheus/otlptranslator, metric suffixes on: the default) and as
        ``opentelemetry-exporter-prometheus`` does for every name in this module.

        The name is split into tokens at characters Prometheus does not allow and joined with
        ``_``; the unit is appended as a word unless a token already is that word, it is ``1``,
        or it holds an annotation such as ``{token}``; ``X/Y`` becomes ``X_per_Y``; monotonic
        counters end in ``_total``. Histograms add ``_bucket`` / ``_sum`` / ``_count``. The
        collector also appends ``_ratio`` to gauges of unit ``1`` (the Python exporter does
        not, so no difytrace gauge uses unit ``1``).
        """
        tokens = [t for t in _PROM_INVALID.split(self.name) if t]
        for suffix in _prometheus_unit(self.unit):
            if suffix and suffix not in tokens:
                tokens.append(suffix)
        if self.instrument == "counter":
            tokens = [t for t in tokens if t != "total"] + ["total"]
        if self.instrument == "gauge" and self.unit == "1":
            tokens = [t for t in tokens if t != "ratio"] + ["ratio"]
        return "_".join(tokens)


_PROM_INVALID = re.compile(r"[^a-zA-Z0-9:]+")
# prometheus/otlptranslator's unit words (UCUM c/s → Prometheus base-unit names).
_PROM_UNITS = {
    "d": "days",
    "h": "hours",
    "min": "minutes",
    "s": "seconds",
    "ms": "milliseconds",
    "us": "microseconds",
    "ns": "nanoseconds",
    "By": "bytes",
    "KiBy": "kibibytes",
    "MiBy": "mebibytes",
    "GiBy": "gibibytes",
    "TiBy": "tibibytes",
    "KBy": "kilobytes",
    "MBy": "megabytes",
    "GBy": "gigabytes",
    "TBy": "terabytes",
    "m": "meters",
    "V": "volts",
    "A": "amperes",
    "J": "joules",
    "W": "watts",
    "g": "grams",
    "Cel": "celsius",
    "Hz": "hertz",
    "1": "",
    "%": "percent",
}
_PROM_PER_UNITS = {"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week",
                   "mo": "month", "y": "year"}  # fmt: skip


def _prometheus_unit(unit: str) -> tuple[str, str]:
    """(main, per) suffix words of ``unit``; a part holding ``{...}`` adds nothing."""
    main, _, per = (part.strip() for part in unit.partition("/"))
    main_word = "" if not main or "{" in main or "}" in main else _PROM_UNITS.get(main, main)
    per_word = "" if not per or "{" in per or "}" in per else _PROM_PER_UNITS.get(per, per)
    main_word = "_".join(t for t in _PROM_INVALID.split(main_word) if t)
    per_word = "_".join(t for t in _PROM_INVALID.split(per_word) if t)
    return main_word, f"per_{per_word}" if per_word else ""


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

# --- Metrics the dashboards and alert rules need (added for issue #5) ---------------------
# Names proposed by the dashboards work; the GenAI (#3), ops_trace (#4) and bootstrap code
# emit them. Rename here and the dashboard/alert tests follow (they take names from METRICS).

# GenAI: every name is spelled once, in semconv_genai (which also knows the two convention
# modes); these aliases and catalogue entries take it from there. Tenant/app are difytrace's.
GEN_AI_OPERATION_NAME = _genai.OPERATION_NAME
GEN_AI_PROVIDER_NAME = _genai.PROVIDER_NAME
GEN_AI_REQUEST_MODEL = _genai.REQUEST_MODEL
GEN_AI_RESPONSE_MODEL = _genai.RESPONSE_MODEL
GEN_AI_TOKEN_TYPE = _genai.TOKEN_TYPE
#: "true" when the token count is difytrace's estimate; absent when the provider reported it.
GEN_AI_USAGE_ESTIMATED = _genai.USAGE_ESTIMATED
_GEN_AI_METRIC_ATTRS = (
    GEN_AI_OPERATION_NAME,
    GEN_AI_PROVIDER_NAME,
    GEN_AI_REQUEST_MODEL,
    GEN_AI_RESPONSE_MODEL,
    SERVER_ADDRESS,
    SERVER_PORT,
    TENANT_ID,
    APP_ID,
)

GEN_AI_CLIENT_TOKEN_USAGE = MetricSpec(
    _genai.METRIC_TOKEN_USAGE,
    "histogram",
    "{token}",
    "Tokens used per LLM call, by token type (input / output).",
    (*_GEN_AI_METRIC_ATTRS, GEN_AI_TOKEN_TYPE, GEN_AI_USAGE_ESTIMATED),
)
GEN_AI_CLIENT_OPERATION_DURATION = MetricSpec(
    _genai.METRIC_OPERATION_DURATION,
    "histogram",
    "s",
    "Duration of LLM calls, request to last byte.",
    (*_GEN_AI_METRIC_ATTRS, ERROR_TYPE),
)
GEN_AI_CLIENT_TIME_TO_FIRST_CHUNK = MetricSpec(
    _genai.METRIC_TIME_TO_FIRST_CHUNK,
    "histogram",
    "s",
    "Time from request to the first streamed chunk (time to first token).",
    _GEN_AI_METRIC_ATTRS,
)
GEN_AI_CLIENT_COST = MetricSpec(
    _genai.METRIC_COST,
    "counter",
    "{USD}",
    "Estimated cost of LLM calls in US dollars (offline price data).",
    _GEN_AI_METRIC_ATTRS,
)
GENAI_METRICS: tuple[MetricSpec, ...] = (
    GEN_AI_CLIENT_TOKEN_USAGE,
    GEN_AI_CLIENT_OPERATION_DURATION,
    GEN_AI_CLIENT_TIME_TO_FIRST_CHUNK,
    GEN_AI_CLIENT_COST,
)

# ops_trace: the durable delivery path (issue #4).
OPS_TRACE_DESTINATION = "difytrace.ops_trace.destination"  # kind: langfuse, langsmith, otlp
OPS_TRACE_RECORD_TYPE = "difytrace.ops_trace.record_type"  # workflow, message, tool, ...
OPS_TRACE_REASON = "difytrace.ops_trace.reason"  # why a record was dropped / dead-lettered
#: Content an ops_trace OTLP destination puts on its spans (the collector profiles delete them:
#: ops_trace content goes to each tenant's own destinations, never through a shared collector).
OPS_TRACE_INPUT = "difytrace.ops_trace.input"
OPS_TRACE_OUTPUT = "difytrace.ops_trace.output"
OPS_TRACE_METADATA = "difytrace.ops_trace.metadata"
OPS_TRACE_CONTENT = (OPS_TRACE_INPUT, OPS_TRACE_OUTPUT, OPS_TRACE_METADATA)
# Span attributes of the ops_trace OTLP destinations (GenAI semconv v1.41 usage; LangSmith).
GEN_AI_USAGE_INPUT_TOKENS = _genai.USAGE_INPUT_TOKENS
GEN_AI_USAGE_OUTPUT_TOKENS = _genai.USAGE_OUTPUT_TOKENS
LANGSMITH_SPAN_KIND = _genai.LANGSMITH_SPAN_KIND

OPS_TRACE_SUBMITTED = MetricSpec(
    "difytrace.ops_trace.submitted",
    "counter",
    "{record}",
    "Records handed to the outbox on the request path.",
    (OPS_TRACE_RECORD_TYPE,),
)
OPS_TRACE_DELIVERED = MetricSpec(
    "difytrace.ops_trace.delivered",
    "counter",
    "{record}",
    "Records accepted by a destination.",
    (OPS_TRACE_DESTINATION,),
)
OPS_TRACE_FAILED = MetricSpec(
    "difytrace.ops_trace.failed",
    "counter",
    "{record}",
    "Delivery attempts a destination refused or that errored (before any retry).",
    (OPS_TRACE_DESTINATION, ERROR_TYPE),
)
OPS_TRACE_RETRIED = MetricSpec(
    "difytrace.ops_trace.retried",
    "counter",
    "{record}",
    "Records scheduled for another delivery attempt.",
    (OPS_TRACE_DESTINATION, ERROR_TYPE),
)
OPS_TRACE_DEAD_LETTERED = MetricSpec(
    "difytrace.ops_trace.dead_lettered",
    "counter",
    "{record}",
    "Records moved to the dead-letter store.",
    (OPS_TRACE_DESTINATION, OPS_TRACE_REASON),
)
OPS_TRACE_DROPPED = MetricSpec(
    "difytrace.ops_trace.dropped",
    "counter",
    "{record}",
    "Records dropped before enqueue (outbox full, unserialisable, ...), by reason.",
    (OPS_TRACE_REASON,),
)
OPS_TRACE_QUEUE_DEPTH = MetricSpec(
    "difytrace.ops_trace.queue.depth",
    "gauge",
    "{record}",
    "Records waiting in the ops_trace queue (observed by the workers).",
    (MESSAGING_DESTINATION_NAME,),
)
OPS_TRACE_LAG = MetricSpec(
    "difytrace.ops_trace.lag",
    "histogram",
    "s",
    "End-to-end lag: record finished in the app → accepted by the destination.",
    (OPS_TRACE_DESTINATION,),
)
OPS_TRACE_BATCH_SIZE = MetricSpec(
    "difytrace.ops_trace.batch.size",
    "histogram",
    "{record}",
    "Records per delivery batch.",
    (OPS_TRACE_DESTINATION,),
)
OPS_TRACE_WORKERS = MetricSpec(
    "difytrace.ops_trace.workers",
    "up_down_counter",
    "{worker}",
    "ops_trace worker processes running (+1 at start, -1 at shutdown, per process).",
    (MESSAGING_DESTINATION_NAME,),
)
OPS_TRACE_METRICS: tuple[MetricSpec, ...] = (
    OPS_TRACE_SUBMITTED,
    OPS_TRACE_DELIVERED,
    OPS_TRACE_FAILED,
    OPS_TRACE_RETRIED,
    OPS_TRACE_DEAD_LETTERED,
    OPS_TRACE_DROPPED,
    OPS_TRACE_QUEUE_DEPTH,
    OPS_TRACE_LAG,
    OPS_TRACE_BATCH_SIZE,
    OPS_TRACE_WORKERS,
)

# Exporter health: what the SDK pipeline of this process lost (bootstrap emits these).
EXPORTER_SIGNAL = "difytrace.exporter.signal"  # traces, metrics
EXPORTER_REASON = "difytrace.exporter.reason"  # queue_full, export_failed, shutdown

EXPORTER_SPANS_EXPORTED = MetricSpec(
    "difytrace.exporter.spans.exported",
    "counter",
    "{span}",
    "Spans the exporter of this process handed over successfully.",
    (),
)
EXPORTER_SPANS_DROPPED = MetricSpec(
    "difytrace.exporter.spans.dropped",
    "counter",
    "{span}",
    "Spans this process lost (batch queue full, export failed, shutdown), by reason.",
    (EXPORTER_REASON,),
)
EXPORTER_EXPORT_FAILURES = MetricSpec(
    "difytrace.exporter.export.failures",
    "counter",
    "{export}",
    "Failed export calls, by signal and error type.",
    (EXPORTER_SIGNAL, ERROR_TYPE),
)
EXPORTER_METRICS: tuple[MetricSpec, ...] = (
    EXPORTER_SPANS_EXPORTED,
    EXPORTER_SPANS_DROPPED,
    EXPORTER_EXPORT_FAILURES,
)

# Produced by the collector (collector/*.yaml, `span_metrics` connector), not by this package:
# kept apart from METRICS so code-side tests don't expect difytrace to emit them.
SPAN_NAME = "span.name"
SPAN_KIND = "span.kind"
STATUS_CODE = "status.code"
SERVICE_NAME = "service.name"
SPAN_METRICS_CALLS = MetricSpec(
    "traces.span.metrics.calls",
    "counter",
    "1",
    "Spans seen by the agent collector before sampling (span_metrics connector).",
    (SERVICE_NAME, SPAN_NAME, SPAN_KIND, STATUS_CODE),
)
SPAN_METRICS_DURATION = MetricSpec(
    "traces.span.metrics.duration",
    "histogram",
    "s",
    "Span durations seen by the agent collector before sampling (span_metrics connector).",
    (SERVICE_NAME, SPAN_NAME, SPAN_KIND, STATUS_CODE),
)
COLLECTOR_METRICS: tuple[MetricSpec, ...] = (SPAN_METRICS_CALLS, SPAN_METRICS_DURATION)

#: Every metric difytrace emits. Modules append their own specs here at import time is NOT
#: allowed: add them to this tuple so the catalogue is complete without importing anything.
METRICS: tuple[MetricSpec, ...] = (
    HTTP_SERVER_DURATION,
    HTTP_STREAM_DURATION,
    CELERY_TASK_DURATION,
    CELERY_QUEUE_WAIT_DURATION,
    CELERY_TASK_PUBLISHED,
    *GENAI_METRICS,
    *OPS_TRACE_METRICS,
    *EXPORTER_METRICS,
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

#: GenAI histogram buckets recommended by the GenAI conventions (seconds; tokens).
GEN_AI_DURATION_BUCKETS_S = tuple(round(0.01 * 2**i, 2) for i in range(14))
GEN_AI_TOKEN_BUCKETS = tuple(float(4**i) for i in range(14))


def histogram_buckets() -> dict[str, tuple[float, ...]]:
    """Explicit bucket boundaries of every histogram in ``METRICS``, by metric name.

    The instruments pass them as advice too, but SDKs before 1.28 (Dify pins 1.27) ignore
    advice, so bootstrap turns this table into views.
    """
    special = {
        HTTP_SERVER_DURATION.name: HTTP_DURATION_BUCKETS_S,
        GEN_AI_CLIENT_OPERATION_DURATION.name: GEN_AI_DURATION_BUCKETS_S,
        GEN_AI_CLIENT_TIME_TO_FIRST_CHUNK.name: GEN_AI_DURATION_BUCKETS_S,
        GEN_AI_CLIENT_TOKEN_USAGE.name: GEN_AI_TOKEN_BUCKETS,
    }
    return {
        spec.name: special.get(spec.name, DURATION_BUCKETS_S)
        for spec in METRICS
        if spec.instrument == "histogram" and (spec.unit == "s" or spec.name in special)
    }
