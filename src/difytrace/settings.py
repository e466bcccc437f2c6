"""One validated settings object, resolved once from the environment.

Every setting is declared once in ``SETTINGS`` below: its field name, the environment
variables that can set it (highest precedence first), its parser and default. The README's
configuration table is generated from this table (``difytrace settings --markdown``) and a
test keeps the two in step.

Precedence, for every setting:

1. keyword arguments passed to :func:`difytrace.configure`;
2. ``DIFYTRACE_*`` variables;
3. the standard ``OTEL_*`` variables (signal-specific before generic);
4. Dify's own names (``OTLP_BASE_ENDPOINT``, ``OTEL_SAMPLING_RATE``, ...), so a Dify ``.env``
   works unchanged;
5. the default.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from difytrace.exceptions import ConfigurationError

Protocol = Literal["http/protobuf", "grpc"]
GeventMode = Literal["auto", "on", "off"]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)


class InvalidValue(ValueError):
    """Raised by a parser; the message says what is accepted."""


def parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InvalidValue("expected one of true/false, 1/0, yes/no, on/off")


def parse_protocol(raw: str) -> Protocol:
    value = raw.strip().lower()
    # Dify writes "http"; the OTel spec writes "http/protobuf".
    if value in {"http", "http/protobuf"}:
        return "http/protobuf"
    if value == "grpc":
        return "grpc"
    if value == "http/json":
        raise InvalidValue("http/json has no Python exporter; accepted: http/protobuf, http, grpc")
    raise InvalidValue("accepted: http/protobuf (or http), grpc")


def _split_url(value: str, expected: str) -> urllib.parse.SplitResult:
    """``urlsplit`` whose failures (a bad IPv6 bracket, a non-numeric or out-of-range port)
    are an :class:`InvalidValue` saying what is expected."""
    try:
        parts = urllib.parse.urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a non-numeric or out-of-range port
    except ValueError as exc:
        raise InvalidValue(f"malformed URL ({exc}); expected {expected}") from None
    return parts


def parse_url(raw: str) -> str:
    value = raw.strip()
    expected = "an absolute http:// or https:// URL, e.g. http://localhost:4318"
    parts = _split_url(value, expected)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise InvalidValue(f"expected {expected}")
    return value


def parse_rate(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise InvalidValue("expected a number from 0 to 1, e.g. 0.1") from None
    if not 0.0 <= value <= 1.0:
        raise InvalidValue("expected a number from 0 to 1, e.g. 0.1")
    return value


def parse_positive_int(raw: str) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise InvalidValue("expected a whole number greater than 0") from None
    if value <= 0:
        raise InvalidValue("expected a whole number greater than 0")
    return value


def parse_sampler(raw: str) -> str:
    value = raw.strip().lower()
    if value not in _SAMPLERS:
        raise InvalidValue("accepted: " + ", ".join(_SAMPLERS))
    return value


def parse_exporter_type(raw: str) -> str:
    value = raw.strip().lower()
    if value not in {"otlp", "console", "none"}:
        raise InvalidValue("accepted: otlp, console, none")
    return value


_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def parse_headers(raw: str) -> dict[str, str]:
    """Parse ``key=value,key2=value2`` (values URL-encoded), as the OTLP exporter spec says."""
    headers: dict[str, str] = {}
    for item in raw.split(","):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        name = urllib.parse.unquote(name).strip()
        if not sep or not _HEADER_NAME.match(name):
            raise InvalidValue(
                "expected comma-separated name=value pairs with URL-encoded values, "
                "e.g. authorization=Bearer%20abc,x-team=ops"
            )
        headers[name.lower()] = urllib.parse.unquote(value).strip()
    return headers


def parse_names(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def parse_gevent_mode(raw: str) -> GeventMode:
    value = raw.strip().lower()
    if value == "auto":
        return "auto"
    if value in _TRUE:
        return "on"
    if value in _FALSE:
        return "off"
    raise InvalidValue("accepted: auto, on, off")


def parse_import_path(raw: str) -> str:
    value = raw.strip()
    if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*", value):
        raise InvalidValue("expected module.path:attribute, e.g. myapp.tracing:identity")
    return value


def parse_broker_url(raw: str) -> str:
    """A Celery broker / Redis URL: redis, rediss, sentinel (``;``-separated) or amqp."""
    value = raw.strip()
    expected = (
        "redis://host:6379/0, rediss://..., sentinel://host:26379 or "
        "amqp://user:pass@host:5672/vhost"
    )
    for part in value.split(";"):
        parts = _split_url(part.strip(), expected)
        if parts.scheme not in _BROKER_SCHEMES or not (parts.hostname or parts.scheme == "memory"):
            raise InvalidValue(f"expected {expected}")
    return value


_BROKER_SCHEMES = {"redis", "rediss", "sentinel", "amqp", "amqps", "pyamqp", "memory"}


def parse_content_capture(raw: str) -> bool:
    """``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``: a boolean, or the mode names
    of the latest GenAI conventions (``SPAN_ONLY``, ``EVENT_ONLY``, ``SPAN_AND_EVENT``,
    ``NO_CONTENT``); any mode but NO_CONTENT records content on the span."""
    value = raw.strip().lower()
    if value in {"span_only", "event_only", "span_and_event"}:
        return True
    if value == "no_content":
        return False
    try:
        return parse_bool(raw)
    except InvalidValue:
        raise InvalidValue(
            "expected true/false or SPAN_ONLY, EVENT_ONLY, SPAN_AND_EVENT, NO_CONTENT"
        ) from None


_PII_NAMES = ("email", "credit_card", "phone", "ipv4")


def parse_pii_names(raw: str) -> tuple[str, ...]:
    names = parse_names(raw.lower())
    unknown = [n for n in names if n not in _PII_NAMES]
    if unknown:
        raise InvalidValue("accepted names: " + ", ".join(_PII_NAMES))
    return names


def parse_regex(raw: str) -> str:
    value = raw.strip()
    try:
        re.compile(value)
    except re.error as exc:
        raise InvalidValue(f"not a valid regular expression ({exc})") from None
    return value


def _str(raw: str) -> str:
    return raw.strip()


@dataclass(frozen=True)
class Setting:
    """One row of the settings table."""

    name: str
    env: tuple[str, ...]
    parse: Callable[[str], Any]
    default: Any
    doc: str
    secret: bool = False


# Variables that give a *base* endpoint; the signal path is appended to them.
_BASES = {"OTEL_EXPORTER_OTLP_ENDPOINT", "OTLP_BASE_ENDPOINT"}

SETTINGS: tuple[Setting, ...] = (
    Setting(
        "enabled",
        ("DIFYTRACE_ENABLED", "ENABLE_OTEL"),
        parse_bool,
        False,
        "Whether `difytrace.configure()` sets anything up. Under `opentelemetry-instrument` "
        "difytrace is always on: the wrapper is the opt-in.",
    ),
    Setting(
        "service_name",
        ("OTEL_SERVICE_NAME",),
        _str,
        "",
        "service.name of the resource; empty = the SDK's (OTEL_RESOURCE_ATTRIBUTES or "
        "unknown_service).",
    ),
    Setting(
        "exporter",
        ("DIFYTRACE_EXPORTER", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_TYPE"),
        parse_exporter_type,
        "otlp",
        "Span exporter: otlp, console or none.",
    ),
    Setting(
        "metrics_exporter",
        ("OTEL_METRICS_EXPORTER",),
        parse_exporter_type,
        "otlp",
        "Metric exporter: otlp, console or none.",
    ),
    Setting(
        "protocol",
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"),
        parse_protocol,
        "http/protobuf",
        "OTLP protocol of spans. HTTP by default: gRPC under gevent is fragile.",
    ),
    Setting(
        "metrics_protocol",
        ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"),
        parse_protocol,
        "http/protobuf",
        "OTLP protocol of metrics.",
    ),
    Setting(
        "traces_endpoint",
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTLP_TRACE_ENDPOINT",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTLP_BASE_ENDPOINT",
        ),
        parse_url,
        "http://localhost:4318",
        "Where spans go. Base endpoints get `/v1/traces` appended (HTTP).",
    ),
    Setting(
        "metrics_endpoint",
        (
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
            "OTLP_METRIC_ENDPOINT",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTLP_BASE_ENDPOINT",
        ),
        parse_url,
        "http://localhost:4318",
        "Where metrics go. Base endpoints get `/v1/metrics` appended (HTTP).",
    ),
    Setting(
        "headers",
        ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"),
        parse_headers,
        {},
        "Extra OTLP headers of spans, `name=value` pairs, URL-encoded.",
        secret=True,
    ),
    Setting(
        "metrics_headers",
        ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"),
        parse_headers,
        {},
        "Extra OTLP headers of metrics, `name=value` pairs, URL-encoded.",
        secret=True,
    ),
    Setting(
        "api_key",
        ("OTLP_API_KEY",),
        _str,
        "",
        "Dify's OTLP key, sent as `authorization: Bearer <key>` unless headers set one.",
        secret=True,
    ),
    Setting(
        "sampler",
        ("OTEL_TRACES_SAMPLER",),
        parse_sampler,
        "",
        "Sampler name; empty = parentbased_traceidratio if a rate is set, else "
        "parentbased_always_on.",
    ),
    Setting(
        "sampling_rate",
        ("OTEL_TRACES_SAMPLER_ARG", "OTEL_SAMPLING_RATE"),
        parse_rate,
        None,
        "Ratio for the traceidratio samplers, 0..1.",
    ),
    Setting(
        "bsp_schedule_delay_ms",
        ("OTEL_BSP_SCHEDULE_DELAY", "OTEL_BATCH_EXPORT_SCHEDULE_DELAY"),
        parse_positive_int,
        5000,
        "Batch span processor delay between exports (ms).",
    ),
    Setting(
        "bsp_max_queue_size",
        ("OTEL_BSP_MAX_QUEUE_SIZE", "OTEL_MAX_QUEUE_SIZE"),
        parse_positive_int,
        2048,
        "Spans buffered per process before drops are counted.",
    ),
    Setting(
        "bsp_max_export_batch_size",
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "OTEL_MAX_EXPORT_BATCH_SIZE"),
        parse_positive_int,
        512,
        "Spans per export request.",
    ),
    Setting(
        "bsp_export_timeout_ms",
        ("OTEL_BSP_EXPORT_TIMEOUT", "OTEL_BATCH_EXPORT_TIMEOUT"),
        parse_positive_int,
        10000,
        "Timeout of one span export (ms).",
    ),
    Setting(
        "metric_export_interval_ms",
        ("OTEL_METRIC_EXPORT_INTERVAL",),
        parse_positive_int,
        60000,
        "Interval between metric exports (ms).",
    ),
    Setting(
        "metric_export_timeout_ms",
        ("OTEL_METRIC_EXPORT_TIMEOUT",),
        parse_positive_int,
        30000,
        "Timeout of one metric export (ms).",
    ),
    Setting(
        "metrics_enabled",
        ("DIFYTRACE_METRICS",),
        parse_bool,
        True,
        "Record difytrace's metrics (HTTP, Celery, GenAI, ops_trace).",
    ),
    Setting(
        "gevent",
        ("DIFYTRACE_GEVENT",),
        parse_gevent_mode,
        "auto",
        "Apply the patch order gevent → grpc → psycogreen: auto (when gunicorn/celery are "
        "started with a gevent worker or pool), on, off.",
    ),
    Setting(
        "identity_extractor",
        ("DIFYTRACE_IDENTITY_EXTRACTOR",),
        parse_import_path,
        "",
        "module:callable returning user/tenant/app ids for a Flask request.",
    ),
    Setting(
        "baggage_keys",
        ("DIFYTRACE_BAGGAGE_KEYS",),
        parse_names,
        ("tenant.id", "app.id", "user.id"),
        "Baggage entries carried from the API to Celery workers (allow-list).",
    ),
    Setting(
        "disabled_instrumentations",
        ("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS",),
        parse_names,
        (),
        "Instrumentations to skip, e.g. `difytrace_celery,openai`.",
    ),
    # --- LLM calls (issue #3): GenAI conventions, content, scrubbing, cost ----------------
    Setting(
        "genai_capture_content",
        ("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT",),
        parse_content_capture,
        False,
        "Record prompts and completions on LLM spans (scrubbed and truncated at export).",
    ),
    Setting(
        "semconv_opt_in",
        ("OTEL_SEMCONV_STABILITY_OPT_IN",),
        parse_names,
        (),
        "`gen_ai_latest_experimental` switches GenAI names from semconv v1.41 to the "
        "latest GenAI conventions.",
    ),
    Setting(
        "max_attribute_bytes",
        ("DIFYTRACE_MAX_ATTRIBUTE_BYTES",),
        parse_positive_int,
        16384,
        "Byte budget of one string attribute at export (JSON stays valid JSON).",
    ),
    Setting(
        "max_span_bytes",
        ("DIFYTRACE_MAX_SPAN_BYTES",),
        parse_positive_int,
        131072,
        "Byte budget of all string attributes of one span at export.",
    ),
    Setting(
        "pii_patterns",
        ("DIFYTRACE_PII_PATTERNS",),
        parse_pii_names,
        (),
        "PII scrubbed from every attribute at export: email, credit_card, phone, ipv4 "
        "(secrets are always scrubbed).",
    ),
    Setting(
        "pii_regex",
        ("DIFYTRACE_PII_REGEX",),
        parse_regex,
        "",
        "An extra regular expression whose matches are redacted from every attribute.",
    ),
    Setting(
        "llm_prices_file",
        ("DIFYTRACE_LLM_PRICES_FILE",),
        _str,
        "",
        "JSON file of price overrides (USD per million tokens) by `model` or "
        "`provider/model`; else genai-prices' bundled data.",
    ),
    # --- ops_trace (issue #4): durable delivery of LLM application traces --------------------
    Setting(
        "ops_trace_broker_url",
        ("DIFYTRACE_OPS_TRACE_BROKER_URL", "CELERY_BROKER_URL", "REDIS_URL"),
        parse_broker_url,
        "redis://127.0.0.1:6379/0",
        "Celery broker of the `ops_trace` queue: redis://, rediss://, sentinel:// or amqp://.",
        secret=True,
    ),
    Setting(
        "ops_trace_outbox_url",
        ("DIFYTRACE_OPS_TRACE_OUTBOX_URL",),
        parse_broker_url,
        "",
        "Redis holding the outbox, retries and dead letters; empty = the broker when it is Redis.",
        secret=True,
    ),
    Setting(
        "ops_trace_sentinel_master",
        ("DIFYTRACE_OPS_TRACE_SENTINEL_MASTER", "CELERY_SENTINEL_MASTER_NAME"),
        _str,
        "mymaster",
        "Sentinel master name for sentinel:// URLs.",
    ),
    Setting(
        "ops_trace_queue",
        ("DIFYTRACE_OPS_TRACE_QUEUE",),
        _str,
        "ops_trace",
        "Celery queue of the ops_trace records.",
    ),
    Setting(
        "ops_trace_key_prefix",
        ("DIFYTRACE_OPS_TRACE_KEY_PREFIX",),
        _str,
        "difytrace:ops_trace",
        "Prefix of the Redis keys of the outbox and dead letters.",
    ),
    Setting(
        "ops_trace_destinations",
        ("DIFYTRACE_OPS_TRACE_DESTINATIONS",),
        _str,
        "",
        "Path of the YAML routing file (destinations per tenant and app).",
    ),
    Setting(
        "ops_trace_resolver",
        ("DIFYTRACE_OPS_TRACE_RESOLVER",),
        parse_import_path,
        "",
        "module:callable(tenant_id, app_id) returning destinations; wins over the file.",
    ),
    Setting(
        "ops_trace_buffer_size",
        ("DIFYTRACE_OPS_TRACE_BUFFER_SIZE",),
        parse_positive_int,
        10000,
        "Records held in process while the broker is unreachable; beyond, dropped (counted).",
    ),
    Setting(
        "ops_trace_buffer_bytes",
        ("DIFYTRACE_OPS_TRACE_BUFFER_BYTES",),
        parse_positive_int,
        64 * 1024 * 1024,
        "Bytes of records (as stored) held in process while the broker is unreachable; "
        "beyond, dropped (counted).",
    ),
    Setting(
        "ops_trace_max_record_bytes",
        ("DIFYTRACE_OPS_TRACE_MAX_RECORD_BYTES",),
        parse_positive_int,
        1_000_000,
        "Size budget of one record; larger ones are truncated field by field.",
    ),
    Setting(
        "ops_trace_batch_size",
        ("DIFYTRACE_OPS_TRACE_BATCH_SIZE",),
        parse_positive_int,
        200,
        "Records per queue message and per destination request.",
    ),
    Setting(
        "ops_trace_dead_letters_max",
        ("DIFYTRACE_OPS_TRACE_DEAD_LETTERS_MAX",),
        parse_positive_int,
        100_000,
        "Dead letters kept (whole records, in Redis); beyond, the oldest are dropped (counted).",
    ),
    Setting(
        "ops_trace_max_attempts",
        ("DIFYTRACE_OPS_TRACE_MAX_ATTEMPTS",),
        parse_positive_int,
        24,
        "Delivery attempts per destination before a record is dead-lettered (with the "
        "default delays, about an hour of destination outage).",
    ),
    Setting(
        "ops_trace_retry_base_ms",
        ("DIFYTRACE_OPS_TRACE_RETRY_BASE_MS",),
        parse_positive_int,
        1000,
        "First retry delay; doubles per attempt, with jitter.",
    ),
    Setting(
        "ops_trace_retry_max_ms",
        ("DIFYTRACE_OPS_TRACE_RETRY_MAX_MS",),
        parse_positive_int,
        300_000,
        "Longest retry delay (a longer Retry-After is honoured).",
    ),
    Setting(
        "ops_trace_redeliver_after_s",
        ("DIFYTRACE_OPS_TRACE_REDELIVER_AFTER",),
        parse_positive_int,
        120,
        "Unconfirmed records older than this are re-sent by the sweeper (worker loss).",
    ),
    Setting(
        "ops_trace_sweep_interval_ms",
        ("DIFYTRACE_OPS_TRACE_SWEEP_INTERVAL_MS",),
        parse_positive_int,
        1000,
        "How often a worker's sweeper re-publishes due retries and lost records.",
    ),
    Setting(
        "ops_trace_http_timeout_ms",
        ("DIFYTRACE_OPS_TRACE_HTTP_TIMEOUT_MS",),
        parse_positive_int,
        10_000,
        "Timeout of one destination request.",
    ),
)

_BY_NAME = {s.name: s for s in SETTINGS}


@dataclass(frozen=True)
class Settings:
    """The effective configuration; build it with :func:`load_settings`."""

    enabled: bool
    service_name: str
    exporter: str
    metrics_exporter: str
    protocol: Protocol
    metrics_protocol: Protocol
    traces_endpoint: str
    metrics_endpoint: str
    headers: dict[str, str]
    metrics_headers: dict[str, str]
    api_key: str
    sampler: str
    sampling_rate: float | None
    bsp_schedule_delay_ms: int
    bsp_max_queue_size: int
    bsp_max_export_batch_size: int
    bsp_export_timeout_ms: int
    metric_export_interval_ms: int
    metric_export_timeout_ms: int
    metrics_enabled: bool
    gevent: GeventMode
    identity_extractor: str
    baggage_keys: tuple[str, ...]
    disabled_instrumentations: tuple[str, ...]
    genai_capture_content: bool
    semconv_opt_in: tuple[str, ...]
    max_attribute_bytes: int
    max_span_bytes: int
    pii_patterns: tuple[str, ...]
    pii_regex: str
    llm_prices_file: str
    ops_trace_broker_url: str
    ops_trace_outbox_url: str
    ops_trace_sentinel_master: str
    ops_trace_queue: str
    ops_trace_key_prefix: str
    ops_trace_destinations: str
    ops_trace_resolver: str
    ops_trace_buffer_size: int
    ops_trace_buffer_bytes: int
    ops_trace_max_record_bytes: int
    ops_trace_batch_size: int
    ops_trace_dead_letters_max: int
    ops_trace_max_attempts: int
    ops_trace_retry_base_ms: int
    ops_trace_retry_max_ms: int
    ops_trace_redeliver_after_s: int
    ops_trace_sweep_interval_ms: int
    ops_trace_http_timeout_ms: int
    # Where each value came from: an env var name, "configure()" or "default".
    sources: dict[str, str] = field(default_factory=dict, compare=False)

    def export_headers(self, signal: str = "traces") -> dict[str, str]:
        """OTLP headers of ``signal`` (traces, metrics), with Dify's ``OTLP_API_KEY`` as a
        bearer token unless one is set."""
        headers = dict(self.metrics_headers if signal == "metrics" else self.headers)
        if self.api_key and "authorization" not in headers:
            headers["authorization"] = f"Bearer {self.api_key}"
        return headers

    def masked(self) -> dict[str, str]:
        """Every value as text with secrets masked, for `difytrace doctor` and logs."""
        shown: dict[str, str] = {}
        for setting in SETTINGS:
            value = getattr(self, setting.name)
            if setting.secret and value:
                if isinstance(value, str):
                    # A URL's password is its secret; the rest helps find a wrong host or db.
                    text = repr(masked_url(value)) if "://" in value else "****"
                else:
                    text = "{" + ", ".join(f"{k}: ****" for k in value) + "}"
            elif isinstance(value, str) and "://" in value:
                text = repr(masked_url(value))  # an endpoint may carry user:password too
            else:
                text = repr(value)
            shown[setting.name] = text
        return shown


def _signal_endpoint(var: str, value: str, signal: str) -> str:
    if var in _BASES:
        return value.rstrip("/") + f"/v1/{signal}"
    return value


def _checked_override(setting: Setting, value: Any) -> Any:
    """configure() keywords pass the same parser as the variables (numbers as their text)."""
    if isinstance(value, str):
        return setting.parse(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        setting.parse(str(value))
    return value


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Resolve every setting from ``overrides`` (configure() keywords), then the environment.

    Raises :class:`~difytrace.exceptions.ConfigurationError` naming each bad variable and the
    values it accepts.
    """
    env = os.environ if environ is None else environ
    unknown = set(overrides) - set(_BY_NAME)
    if unknown:
        raise ConfigurationError(
            "unknown configure() argument(s): "
            + ", ".join(sorted(unknown))
            + "; accepted: "
            + ", ".join(sorted(_BY_NAME))
        )
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    problems: list[str] = []
    for setting in SETTINGS:
        if overrides.get(setting.name) is not None:
            try:
                values[setting.name] = _checked_override(setting, overrides[setting.name])
            except InvalidValue as exc:
                shown = _shown(setting, overrides[setting.name])
                problems.append(f"configure({setting.name}={shown}) is invalid: {exc}")
            sources[setting.name] = "configure()"
            continue
        values[setting.name] = setting.default
        sources[setting.name] = "default"
        for var in setting.env:
            raw = env.get(var)
            # The OTel spec: an empty value is interpreted as if the variable were unset.
            if raw is None or raw.strip() == "":
                continue
            try:
                values[setting.name] = setting.parse(raw)
            except InvalidValue as exc:
                shown = _shown(setting, raw)
                problems.append(f"{var}={shown} is invalid: {exc}")
            sources[setting.name] = var
            break
    if problems:
        # One variable can feed several settings (OTLP_BASE_ENDPOINT): name it once.
        raise ConfigurationError("difytrace settings: " + "; ".join(dict.fromkeys(problems)))
    for name, signal, protocol in (
        ("traces_endpoint", "traces", "protocol"),
        ("metrics_endpoint", "metrics", "metrics_protocol"),
    ):
        src = sources[name]
        if values[protocol] == "grpc":
            # gRPC takes the bare authority; the default port differs.
            if src == "default":
                values[name] = "http://localhost:4317"
        elif src == "default" or src in _BASES:
            values[name] = _signal_endpoint("OTLP_BASE_ENDPOINT", values[name], signal)
    return Settings(**values, sources=sources)


def _shown(setting: Setting, raw: Any) -> str:
    """A value for an error message: a secret URL without its password, other secrets not at
    all."""
    if not setting.secret:
        return repr(raw)
    if isinstance(raw, str) and "://" in raw and masked_url(raw) != "****":
        return repr(masked_url(raw))
    return "****"


def settings_table_markdown() -> str:
    """The README configuration table, generated from ``SETTINGS``."""
    rows = [
        "| setting | variables, highest precedence first | default | meaning |",
        "| --- | --- | --- | --- |",
    ]
    for s in SETTINGS:
        default = ", ".join(s.default) if isinstance(s.default, tuple) else s.default
        shown = "" if default in ("", None, {}, ()) else f"`{default}`"
        envs = ", ".join(f"`{e}`" for e in s.env)
        rows.append(f"| {s.name} | {envs} | {shown} | {s.doc} |")
    return "\n".join(rows)


def masked_url(url: str) -> str:
    """``url`` with any password replaced by ``****`` (an unparsable URL entirely); Celery's
    ``;``-separated lists (Sentinel, failover) are masked URL by URL."""
    if ";" in url:
        return ";".join(masked_url(part) for part in url.split(";"))
    try:
        parts = urllib.parse.urlsplit(url)
        password = parts.password
    except ValueError:
        return "****"
    if not password:
        return url
    user, _, host = parts.netloc.rpartition("@")
    name = user.split(":", 1)[0]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{name}:****@{host}"))
