"""Settings: one clear error per kind of bad value, precedence, Dify's names, masking."""

from __future__ import annotations

import pytest

from difytrace.bootstrap import build_sampler
from difytrace.exceptions import ConfigurationError
from difytrace.settings import SETTINGS, load_settings


def _error(env: dict[str, str], **overrides: object) -> str:
    with pytest.raises(ConfigurationError) as info:
        load_settings(environ=env, **overrides)
    return str(info.value)


@pytest.mark.parametrize(
    ("var", "raw", "accepted"),
    [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json", "accepted: http/protobuf, http, grpc"),
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "kafka", "accepted: http/protobuf (or http), grpc"),
        ("OTEL_SAMPLING_RATE", "1.5", "expected a number from 0 to 1"),
        ("OTEL_TRACES_SAMPLER_ARG", "-0.1", "expected a number from 0 to 1"),
        ("OTEL_SAMPLING_RATE", "ten percent", "expected a number from 0 to 1"),
        ("OTLP_BASE_ENDPOINT", "collector:4318", "expected an absolute http:// or https:// URL"),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://", "expected an absolute http://"),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://collector:99999",
            "malformed URL (Port out of range 0-65535)",
        ),
        ("OTLP_TRACE_ENDPOINT", "http://[::1:4318", "malformed URL (Invalid IPv6 URL)"),
        ("DIFYTRACE_OPS_TRACE_BROKER_URL", "redis://h:port/0", "malformed URL (Port could"),
        ("CELERY_BROKER_URL", "kafka://h:9092", "expected redis://host:6379/0"),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "lots", "expected a whole number greater than 0"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "0", "expected a whole number greater than 0"),
        ("OTEL_MAX_EXPORT_BATCH_SIZE", "1.5", "expected a whole number greater than 0"),
        ("DIFYTRACE_ENABLED", "maybe", "expected one of true/false, 1/0, yes/no, on/off"),
        ("ENABLE_OTEL", "2", "expected one of true/false, 1/0, yes/no, on/off"),
        ("DIFYTRACE_METRICS", "enabled", "expected one of true/false"),
        ("OTEL_TRACES_SAMPLER", "sometimes", "accepted: always_on, always_off, traceidratio"),
        ("OTEL_EXPORTER_TYPE", "zipkin", "accepted: otlp, console, none"),
    ],
)
def test_bad_value_names_the_variable_and_what_is_accepted(
    var: str, raw: str, accepted: str
) -> None:
    message = _error({var: raw})
    assert f"{var}={raw!r} is invalid" in message
    assert accepted in message


@pytest.mark.parametrize("raw", ["tokenonly", "=token", "bad name=x", "a=1,b"])
def test_malformed_header_is_rejected_without_showing_it(raw: str) -> None:
    message = _error({"OTEL_EXPORTER_OTLP_HEADERS": raw})
    assert "OTEL_EXPORTER_OTLP_HEADERS=**** is invalid" in message
    assert "comma-separated name=value pairs" in message
    assert raw not in message


def test_every_problem_is_reported_at_once() -> None:
    message = _error({"OTEL_SAMPLING_RATE": "2", "OTEL_BSP_MAX_QUEUE_SIZE": "-1"})
    assert "OTEL_SAMPLING_RATE='2'" in message
    assert "OTEL_BSP_MAX_QUEUE_SIZE='-1'" in message


def test_unknown_configure_argument_lists_the_accepted_ones() -> None:
    message = _error({}, sampling=0.5)
    assert "unknown configure() argument(s): sampling" in message
    assert "sampling_rate" in message


def test_bad_configure_keywords_are_rejected_like_variables() -> None:
    assert "configure(sampling_rate=2.0) is invalid: expected a number from 0 to 1" in _error(
        {}, sampling_rate=2.0
    )
    assert "configure(exporter='zipkin') is invalid" in _error({}, exporter="zipkin")
    assert "configure(traces_endpoint='nowhere') is invalid" in _error(
        {}, traces_endpoint="nowhere"
    )


def test_defaults() -> None:
    settings = load_settings(environ={})
    assert settings.enabled is False
    assert settings.protocol == "http/protobuf"
    assert settings.traces_endpoint == "http://localhost:4318/v1/traces"
    assert settings.metrics_endpoint == "http://localhost:4318/v1/metrics"
    assert settings.sampling_rate is None
    assert settings.export_headers() == {}
    assert set(settings.sources.values()) == {"default"}
    grpc = load_settings(environ={"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    assert grpc.traces_endpoint == "http://localhost:4317"


@pytest.mark.parametrize(
    ("field", "env", "winner"),
    [
        ("enabled", {"DIFYTRACE_ENABLED": "false", "ENABLE_OTEL": "true"}, "DIFYTRACE_ENABLED"),
        (
            "exporter",
            {
                "DIFYTRACE_EXPORTER": "none",
                "OTEL_TRACES_EXPORTER": "console",
                "OTEL_EXPORTER_TYPE": "otlp",
            },
            "DIFYTRACE_EXPORTER",
        ),
        (
            "exporter",
            {"OTEL_TRACES_EXPORTER": "console", "OTEL_EXPORTER_TYPE": "otlp"},
            "OTEL_TRACES_EXPORTER",
        ),
        ("exporter", {"OTEL_EXPORTER_TYPE": "console"}, "OTEL_EXPORTER_TYPE"),
        (
            "sampling_rate",
            {"OTEL_TRACES_SAMPLER_ARG": "0.5", "OTEL_SAMPLING_RATE": "0.1"},
            "OTEL_TRACES_SAMPLER_ARG",
        ),
        (
            "bsp_max_queue_size",
            {"OTEL_BSP_MAX_QUEUE_SIZE": "10", "OTEL_MAX_QUEUE_SIZE": "20"},
            "OTEL_BSP_MAX_QUEUE_SIZE",
        ),
        (
            "traces_endpoint",
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel:4318",
                "OTLP_BASE_ENDPOINT": "http://dify:4318",
            },
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ),
        # Signal-specific beats generic, as in the OTel spec, Dify's name included.
        (
            "traces_endpoint",
            {
                "OTLP_TRACE_ENDPOINT": "http://dify:4318/t",
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel:4318",
            },
            "OTLP_TRACE_ENDPOINT",
        ),
        (
            "traces_endpoint",
            {
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://otel:4318/t",
                "OTLP_TRACE_ENDPOINT": "http://dify:4318/t",
            },
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        ),
    ],
)
def test_precedence(field: str, env: dict[str, str], winner: str) -> None:
    assert load_settings(environ=env).sources[field] == winner


def test_configure_keywords_win_over_everything() -> None:
    env = {
        "DIFYTRACE_ENABLED": "false",
        "DIFYTRACE_EXPORTER": "console",
        "OTEL_TRACES_SAMPLER_ARG": "0.5",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://a:1/x",
    }
    settings = load_settings(
        environ=env,
        enabled=True,
        exporter="none",
        sampling_rate=0.2,
        traces_endpoint="http://b:2/v1/traces",
    )
    assert (settings.enabled, settings.exporter, settings.sampling_rate) == (True, "none", 0.2)
    assert settings.traces_endpoint == "http://b:2/v1/traces"
    assert settings.sources["enabled"] == "configure()"


def test_empty_variable_counts_as_unset() -> None:
    # The OTel spec: an empty value is interpreted as if the variable were unset.
    settings = load_settings(
        environ={
            "DIFYTRACE_ENABLED": "",
            "ENABLE_OTEL": "true",
            "DIFYTRACE_METRICS": "",
            "OTEL_SAMPLING_RATE": " ",
        }
    )
    assert settings.enabled is True
    assert settings.sources["enabled"] == "ENABLE_OTEL"
    assert settings.metrics_enabled is True
    assert settings.sampling_rate is None


def test_dify_env_file_names() -> None:
    env = {
        "ENABLE_OTEL": "true",
        "OTLP_BASE_ENDPOINT": "http://collector:4318/",
        "OTLP_API_KEY": "dify-key",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http",
        "OTEL_EXPORTER_TYPE": "otlp",
        "OTEL_SAMPLING_RATE": "0.25",
        "OTEL_BATCH_EXPORT_SCHEDULE_DELAY": "1000",
        "OTEL_MAX_QUEUE_SIZE": "100",
        "OTEL_MAX_EXPORT_BATCH_SIZE": "50",
        "OTEL_BATCH_EXPORT_TIMEOUT": "2000",
        "OTEL_METRIC_EXPORT_INTERVAL": "15000",
        "OTEL_METRIC_EXPORT_TIMEOUT": "5000",
    }
    settings = load_settings(environ=env)
    assert settings.enabled is True
    assert settings.traces_endpoint == "http://collector:4318/v1/traces"
    assert settings.metrics_endpoint == "http://collector:4318/v1/metrics"
    assert settings.protocol == "http/protobuf"
    assert settings.export_headers() == {"authorization": "Bearer dify-key"}
    assert (
        settings.bsp_schedule_delay_ms,
        settings.bsp_max_queue_size,
        settings.bsp_max_export_batch_size,
        settings.bsp_export_timeout_ms,
        settings.metric_export_interval_ms,
        settings.metric_export_timeout_ms,
    ) == (1000, 100, 50, 2000, 15000, 5000)
    assert (
        build_sampler(settings)
        .get_description()
        .startswith("ParentBased{root:TraceIdRatioBased{0.25}")
    )


def test_dify_signal_endpoints_are_used_as_given() -> None:
    settings = load_settings(
        environ={
            "OTLP_TRACE_ENDPOINT": "http://c:4318/custom/traces",
            "OTLP_METRIC_ENDPOINT": "http://c:4318/custom/metrics",
            "OTLP_BASE_ENDPOINT": "http://ignored:4318",
        }
    )
    assert settings.traces_endpoint == "http://c:4318/custom/traces"
    assert settings.metrics_endpoint == "http://c:4318/custom/metrics"


def test_explicit_headers_win_over_the_dify_key() -> None:
    settings = load_settings(
        environ={
            "OTLP_API_KEY": "dify-key",
            "OTEL_EXPORTER_OTLP_HEADERS": "Authorization=Basic%20abc,x-team=ops",
        }
    )
    assert settings.export_headers() == {"authorization": "Basic abc", "x-team": "ops"}


@pytest.mark.parametrize(
    ("env", "description"),
    [
        ({}, "ParentBased{root:AlwaysOnSampler"),
        (
            {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.5"},
            "TraceIdRatioBased{0.5}",
        ),
        ({"OTEL_TRACES_SAMPLER": "parentbased_always_off"}, "ParentBased{root:AlwaysOffSampler"),
    ],
)
def test_sampler(env: dict[str, str], description: str) -> None:
    assert build_sampler(load_settings(environ=env)).get_description().startswith(description)


def test_masked_hides_every_secret() -> None:
    secrets = {
        "OTLP_API_KEY": "sk-very-secret",
        "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20hdr-secret,x-tenant=t1",
    }
    masked = load_settings(environ=secrets).masked()
    assert masked["api_key"] == "****"
    assert masked["headers"] == "{authorization: ****, x-tenant: ****}"
    shown = repr(masked)
    assert "sk-very-secret" not in shown
    assert "hdr-secret" not in shown
    assert masked["sampling_rate"] == "None"
    assert set(masked) == {s.name for s in SETTINGS}
    empty = load_settings(environ={}).masked()
    assert empty["api_key"] == "''"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:hunter2@10.0.0.5:6379/1", "redis://:****@10.0.0.5:6379/1"),
        ("amqp://guest:hunter2@mq:5672//", "amqp://guest:****@mq:5672//"),
        (
            "sentinel://:hunter2@s1:26379;sentinel://:hunter2@s2:26379/0",
            "sentinel://:****@s1:26379;sentinel://:****@s2:26379/0",
        ),
    ],
)
def test_broker_urls_show_all_but_the_password(url: str, shown: str) -> None:
    masked = load_settings(environ={"DIFYTRACE_OPS_TRACE_BROKER_URL": url}).masked()
    assert masked["ops_trace_broker_url"] == repr(shown)
    assert "hunter2" not in masked["ops_trace_broker_url"]


def test_a_malformed_broker_url_is_named_without_its_password() -> None:
    message = _error({"CELERY_BROKER_URL": "redis://:hunter2@[::1"})
    assert "CELERY_BROKER_URL=**** is invalid: malformed URL" in message
    assert "hunter2" not in message


def test_bad_secret_value_is_not_echoed() -> None:
    message = _error({"OTEL_EXPORTER_OTLP_TRACES_HEADERS": "Bearer sk-123"})
    assert "sk-123" not in message


def test_metrics_take_their_own_protocol_headers_and_endpoint() -> None:
    settings = load_settings(
        environ={
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://tempo:4317",
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "x-dataset=spans",
            "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://mimir:4318/v1/metrics",
            "OTEL_EXPORTER_OTLP_METRICS_HEADERS": "x-scope-orgid=ops",
        }
    )
    assert (settings.protocol, settings.metrics_protocol) == ("grpc", "http/protobuf")
    assert settings.export_headers() == {"x-dataset": "spans"}
    assert settings.export_headers("metrics") == {"x-scope-orgid": "ops"}
    assert settings.metrics_endpoint == "http://mimir:4318/v1/metrics"


def test_the_generic_protocol_and_headers_serve_both_signals() -> None:
    settings = load_settings(
        environ={
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_HEADERS": "x-team=ops",
            "OTLP_API_KEY": "dify-key",
        }
    )
    assert (settings.protocol, settings.metrics_protocol) == ("grpc", "grpc")
    assert settings.metrics_endpoint == "http://localhost:4317"
    for signal in ("traces", "metrics"):
        assert settings.export_headers(signal) == {
            "x-team": "ops",
            "authorization": "Bearer dify-key",
        }


def test_an_endpoint_with_credentials_is_shown_without_its_password() -> None:
    settings = load_settings(environ={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://ops:s3cret@otel:4318"})
    shown = settings.masked()
    assert shown["traces_endpoint"] == "'http://ops:****@otel:4318/v1/traces'"
    assert "s3cret" not in "".join(shown.values())
