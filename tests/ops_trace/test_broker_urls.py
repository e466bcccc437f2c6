"""Redis URL forms (plain, TLS, Sentinel) for the outbox client and the Celery app."""

from __future__ import annotations

import pytest

from difytrace.exceptions import ConfigurationError
from difytrace.ops_trace.config import celery_config, outbox_url
from difytrace.ops_trace.store import redis_client
from difytrace.settings import load_settings


def test_tls_url_uses_an_ssl_connection() -> None:
    client = redis_client("rediss://:pw@cache.example:6380/3")
    kwargs = client.connection_pool.connection_kwargs
    assert client.connection_pool.connection_class.__name__ == "SSLConnection"
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("cache.example", 6380, 3)


def test_sentinel_url_names_every_sentinel_and_the_master() -> None:
    client = redis_client("sentinel://:pw@s1:26379/2;sentinel://s2:26380", sentinel_master="m1")
    pool = client.connection_pool
    assert pool.service_name == "m1"
    assert [
        (s.connection_pool.connection_kwargs["host"], s.connection_pool.connection_kwargs["port"])
        for s in pool.sentinel_manager.sentinels
    ] == [("s1", 26379), ("s2", 26380)]
    assert pool.connection_kwargs["db"] == 2
    settings = load_settings(
        environ={"CELERY_BROKER_URL": "sentinel://s1:26379", "CELERY_SENTINEL_MASTER_NAME": "m1"}
    )
    assert celery_config(settings)["broker_transport_options"]["master_name"] == "m1"


def test_broker_url_falls_back_to_dify_names_and_amqp_needs_an_outbox() -> None:
    settings = load_settings(environ={"CELERY_BROKER_URL": "redis://:p@r:6379/1"})
    assert settings.ops_trace_broker_url == "redis://:p@r:6379/1"
    assert outbox_url(settings) == "redis://:p@r:6379/1"
    amqp = load_settings(environ={"CELERY_BROKER_URL": "amqp://guest:guest@mq:5672//"})
    with pytest.raises(ConfigurationError, match="DIFYTRACE_OPS_TRACE_OUTBOX_URL is required"):
        outbox_url(amqp)
    with pytest.raises(ConfigurationError, match="DIFYTRACE_OPS_TRACE_BROKER_URL"):
        load_settings(environ={"DIFYTRACE_OPS_TRACE_BROKER_URL": "kafka://x"})
    assert "p@r" not in repr(settings.masked()["ops_trace_broker_url"])
