"""Which broker the demo picks, and that it leaves someone's Redis as it found it."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from difytrace.demo import embedded

REAL = "redis://127.0.0.1:6379/12"


def test_a_reachable_redis_is_used_with_names_of_its_own(tmp_path: Path) -> None:
    client = redis.Redis.from_url(REAL)
    client.set("someone:else", "kept")
    with embedded.broker(tmp_path, {"REDIS_URL": REAL}) as broker:
        assert broker.url == REAL
        assert broker.note == "Redis from REDIS_URL"
        assert broker.app_queue.startswith("difytrace_demo_")
        assert broker.ops_queue.startswith("ops_trace_demo_")
        client.lpush(broker.app_queue, "message")
        client.sadd(f"_kombu.binding.{broker.ops_queue}", "binding")
        client.hset(f"{broker.key_prefix}:rec", "id", "record")
        embedded.clean(broker)
    assert (
        client.exists(
            broker.app_queue, f"_kombu.binding.{broker.ops_queue}", f"{broker.key_prefix}:rec"
        )
        == 0
    )
    assert client.get("someone:else") == b"kept"
    client.delete("someone:else")
    client.close()


def test_an_unreachable_redis_falls_back_to_the_embedded_one(
    tmp_path: Path, closed_port: int
) -> None:
    env = {"CELERY_BROKER_URL": f"redis://127.0.0.1:{closed_port}/0"}
    with embedded.broker(tmp_path, env) as broker:
        assert broker.note.startswith("CELERY_BROKER_URL is set but its Redis does not answer")
        assert broker.redis
        assert broker.app_queue == "difytrace_demo"
        client = redis.Redis.from_url(broker.url)
        assert client.ping()
        client.close()
        embedded.clean(broker)  # nothing to clean on our own Redis


def test_without_fakeredis_the_filesystem_broker_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(__import__("sys").modules, "fakeredis", None)
    with embedded.broker(tmp_path, {}) as broker:
        assert broker.url == "filesystem://"
        assert not broker.redis
        assert "ops_trace skipped" in broker.note
        assert Path(broker.folder or "").is_dir()
