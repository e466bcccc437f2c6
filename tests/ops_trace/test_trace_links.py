"""Trace URLs: looked up once per credential, logged per destination, kept on dead letters."""

from __future__ import annotations

import logging

import pytest

from difytrace.ops_trace.dlq import DeadLetters
from difytrace.ops_trace.links import TRACE_URL, langsmith_web_url, public_base
from difytrace.ops_trace.routing import LangSmithConfig
from difytrace.ops_trace.view import build_view
from difytrace.testing.vendors import basic_auth
from tests.ops_trace.factories import message
from tests.ops_trace.test_retries import _deliverer, _langfuse, _put


def _url_records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == level and hasattr(r, TRACE_URL)]


def test_langfuse_trace_url_is_logged_once_per_interval_and_looked_up_once(
    ops_env, fake_langfuse, caplog
) -> None:
    caplog.set_level(logging.DEBUG, logger="difytrace.ops_trace")
    fake_langfuse.add_project("pk-lf-1", "sk-lf-SECRET", "t")
    destination = {"kind": "langfuse", "host": fake_langfuse.endpoint}
    d = _deliverer(ops_env, {**destination, "public_key": "pk-lf-1", "secret_key": "sk-lf-SECRET"})
    assert fake_langfuse.lookups == []  # nothing is asked before a record needs a URL
    records = [message(f"m{i}") for i in range(3)]
    d.deliver(_put(d, records), None, 1)
    d.deliver(_put(d, [message("later")]), None, 1)
    project = fake_langfuse.project_id("t")
    urls = {
        r.record_id: f"{fake_langfuse.endpoint}/project/{project}/traces/{build_view(r).trace_id}"
        for r in [*records, message("later")]
    }
    (info,) = _url_records(caplog, logging.INFO)  # the second batch is inside the interval
    assert getattr(info, TRACE_URL) == urls["m2"]
    assert "3 records delivered to langfuse" in info.getMessage()
    debug = {getattr(r, TRACE_URL) for r in _url_records(caplog, logging.DEBUG)}
    assert debug == set(urls.values())
    assert [path for path, _, _ in fake_langfuse.lookups] == ["/api/public/projects"]
    assert "SECRET" not in caplog.text
    assert basic_auth("pk-lf-1", "sk-lf-SECRET").split()[1] not in caplog.text


def test_langsmith_run_url_needs_the_project_and_uses_the_web_url(
    ops_env, fake_langsmith, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="difytrace.ops_trace")
    fake_langsmith.credentials["key"] = "t"
    config = {
        "kind": "langsmith",
        "endpoint": fake_langsmith.endpoint,
        "api_key": "key",
        "project": "support-bot",
        "web_url": "https://smith.example.com/",
    }
    d = _deliverer(ops_env, config)
    record = message()
    d.deliver(_put(d, [record]), None, 1)
    view = build_view(record)
    org, project = fake_langsmith.org_id("t"), fake_langsmith.project_id("t", "support-bot")
    (info,) = _url_records(caplog, logging.INFO)
    assert getattr(info, TRACE_URL) == (
        f"https://smith.example.com/o/{org}/projects/p/{project}"
        f"/r/{view.observations[0].run_id}?trace_id={view.langsmith_trace_id}"
    )
    assert "key" not in info.getMessage()
    # web_url shapes links only: the same destination (key) with or without it
    base = {k: v for k, v in config.items() if k != "web_url"}
    assert LangSmithConfig(**config).key == LangSmithConfig(**base).key


def test_a_failed_lookup_gives_no_url_and_is_not_repeated_per_record(
    ops_env, fake_langfuse, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="difytrace.ops_trace")
    destination = _langfuse(fake_langfuse)
    d = _deliverer(ops_env, destination)
    fake_langfuse.credentials.clear()  # the key pair stops working after start: 401 everywhere
    d.deliver(_put(d, [message("a")]), None, 1)
    d.deliver(_put(d, [message("b")]), None, 1)
    (letter, _) = DeadLetters(d.runtime.store).entries()
    assert letter.reason == "http_401"
    assert letter.trace_url is None
    assert [status for _, _, status in fake_langfuse.lookups] == [401]
    assert "Langfuse project lookup failed (HTTP 401)" in caplog.text


def test_dead_letter_keeps_the_trace_url(ops_env, fake_langfuse) -> None:
    d = _deliverer(ops_env, _langfuse(fake_langfuse))
    record = message()
    fake_langfuse.fail(400)
    d.deliver(_put(d, [record]), None, 1)
    (letter,) = DeadLetters(d.runtime.store).entries()
    project = fake_langfuse.project_id("t")
    trace_id = build_view(record).trace_id
    assert letter.trace_url == f"{fake_langfuse.endpoint}/project/{project}/traces/{trace_id}"
    assert letter.summary()["trace_url"] == letter.trace_url


@pytest.mark.parametrize(
    ("api", "web"),
    [
        ("https://api.smith.langchain.com", "https://smith.langchain.com"),
        ("https://eu.api.smith.langchain.com", "https://eu.smith.langchain.com"),
        ("https://langsmith.corp.example/api/v1", "https://langsmith.corp.example"),
        ("http://127.0.0.1:1984", "http://localhost"),
    ],
)
def test_langsmith_web_url_follows_the_sdk(api: str, web: str) -> None:
    assert langsmith_web_url(api) == web


def test_urls_never_carry_credentials() -> None:
    assert public_base("https://user:s3cret@lf.example.com:8443/base/?token=x#f") == (
        "https://lf.example.com:8443/base"
    )
