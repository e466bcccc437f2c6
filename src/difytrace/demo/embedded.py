"""Where the demo's Celery broker (and the ops_trace outbox) live: a Redis named by
``CELERY_BROKER_URL`` / ``REDIS_URL`` when it answers, else an embedded Redis-protocol server
(fakeredis, in this process), else kombu's filesystem broker (then without ops_trace)."""

from __future__ import annotations

import socket
import threading
import urllib.parse
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Broker:
    """The broker the demo uses, why, and the names it may use on it."""

    url: str
    folder: str | None  # the filesystem broker's directory
    note: str
    app_queue: str = "difytrace_demo"
    ops_queue: str = "ops_trace"
    key_prefix: str = "difytrace:ops_trace"

    @property
    def redis(self) -> bool:
        """Whether this is a Redis (ops_trace needs one for its outbox)."""
        return self.url.startswith(("redis://", "rediss://"))


def reachable(url: str, timeout: float = 0.5) -> bool:
    """Whether a TCP connection to the URL's host and port opens within ``timeout``."""
    parts = urllib.parse.urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or 6379), timeout=timeout
        ):
            return True
    except OSError:
        return False


@contextmanager
def _fake_redis() -> Iterator[str | None]:
    try:
        from fakeredis import TcpFakeServer
    except ImportError:
        yield None
        return
    server = TcpFakeServer(("127.0.0.1", 0), server_type="redis")
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="difytrace-demo-redis")
    thread.start()
    try:
        yield f"redis://127.0.0.1:{server.server_address[1]}/0"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def broker(workdir: Path, environ: Mapping[str, str]) -> Iterator[Broker]:
    """The broker to use for this run (an embedded one lives as long as the block)."""
    why = ""
    for var in ("CELERY_BROKER_URL", "REDIS_URL"):
        url = environ.get(var, "")
        if not url.startswith(("redis://", "rediss://")):
            continue
        if reachable(url):
            # Someone's Redis: names of our own, so that nothing of theirs is touched.
            run = uuid.uuid4().hex[:8]
            yield Broker(
                url,
                None,
                f"Redis from {var}",
                f"difytrace_demo_{run}",
                f"ops_trace_demo_{run}",
                f"difytrace:demo:{run}",
            )
            return
        why = f"{var} is set but its Redis does not answer; "
        break
    with _fake_redis() as fake_url:
        if fake_url is not None:
            yield Broker(fake_url, None, why + f"embedded Redis (fakeredis) at {fake_url}")
            return
    folder = workdir / "broker"
    (folder / "control").mkdir(parents=True, exist_ok=True)
    yield Broker(
        "filesystem://",
        str(folder),
        why + f"embedded filesystem broker in {folder} "
        "(ops_trace skipped: pip install 'fakeredis[lua]' for an embedded Redis)",
    )


def clean(broker: Broker) -> None:
    """Delete what the run left on someone's Redis (its own queue and key names only)."""
    if not broker.redis or broker.app_queue == "difytrace_demo":
        return
    import redis

    client = redis.Redis.from_url(broker.url, socket_timeout=2)
    try:
        queues = (broker.app_queue, broker.ops_queue)
        keys = [
            *queues,
            *(f"_kombu.binding{kind}.{q}" for q in queues for kind in ("", "_permanent")),
            *client.scan_iter(match=f"{broker.key_prefix}:*", count=500),
        ]
        client.delete(*keys)
    except redis.RedisError:
        return
    finally:
        client.close()
