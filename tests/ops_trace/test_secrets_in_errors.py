"""Credentials never reach an error message: logs, dead letters and configuration errors."""

from __future__ import annotations

import pytest
import requests

from difytrace.exceptions import ConfigurationError
from difytrace.ops_trace.destinations.base import classify_exception
from difytrace.ops_trace.routing import LangfuseConfig, build_destination, parse_configs


def test_a_misspelt_field_is_named_without_quoting_its_secret() -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_configs(
            [{"kind": "langfuse", "public_key": "pk-lf-1", "secretKey": "sk-lf-TOPSECRET"}],
            "tenants.t.destinations",
        )
    message = str(caught.value)
    assert "secretKey: Extra inputs are not permitted" in message
    assert "secret_key: Field required" in message
    assert "TOPSECRET" not in message


@pytest.mark.parametrize("value", ["sk-lf-TOPSECRET\n", " sk-lf-TOPSECRET", "sk-lf\x00TOPSECRET"])
def test_a_credential_that_cannot_be_a_header_is_refused_by_name(value: str) -> None:
    with pytest.raises(ConfigurationError, match="secret_key has surrounding whitespace"):
        parse_configs([{"kind": "langfuse", "public_key": "pk", "secret_key": value}], "default")


def test_an_otlp_header_with_a_newline_is_refused_by_name() -> None:
    with pytest.raises(ConfigurationError, match=r"headers\.authorization has surrounding"):
        parse_configs(
            [
                {
                    "kind": "otlp",
                    "endpoint": "https://collector.example/v1/traces",
                    "headers": {"authorization": "Bearer tok\n"},
                }
            ],
            "default",
        )


@pytest.mark.parametrize(
    "url", ["https://[typo", "collector:4318/v1/traces", "ftp://host/x", "http://h:99999/x"]
)
def test_a_malformed_url_is_refused_by_name(url: str) -> None:
    with pytest.raises(ConfigurationError, match="endpoint must be an http:// or https:// URL"):
        parse_configs([{"kind": "otlp", "endpoint": url}], "default")


def test_redact_removes_every_form_of_the_credentials() -> None:
    config = LangfuseConfig(public_key="pk-lf-1", secret_key="sk-lf-TOPSECRET")  # type: ignore[arg-type]
    dest = build_destination(config, 1.0)
    header = dest.headers["Authorization"]
    text = f"sent {header} as pk-lf-1:sk-lf-TOPSECRET, token {header.split()[1]}, sk-lf-TOPSECRET"
    redacted = dest.redact(text)
    assert "TOPSECRET" not in redacted
    assert header.split()[1] not in redacted
    assert redacted.count("****") == 4


def test_an_invalid_header_is_permanent_and_not_quoted() -> None:
    session = requests.Session()
    with pytest.raises(requests.exceptions.InvalidHeader) as caught:
        session.post("http://127.0.0.1:9/", headers={"x-api-key": "lsv2_TOPSECRET\n"}, timeout=1)
    assert "TOPSECRET" in str(caught.value)  # what requests says, and why it is not passed on
    outcome = classify_exception(caught.value)
    assert (outcome.retryable, outcome.error_type) == (False, "invalid_request")
    assert "TOPSECRET" not in outcome.message
