"""ops_trace test harness: a private queue and key prefix per test, real worker processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from difytrace.ops_trace import outbox
from difytrace.ops_trace.config import Runtime
from difytrace.settings import Settings, load_settings
from difytrace.testing.vendors import fake_langfuse, fake_langsmith  # noqa: F401 - fixtures

REDIS_DB = 11  # ops_trace tests' own database on the shared Redis; names are unique per test


def wait_until(predicate: Callable[[], Any], timeout: float = 20, what: str = "condition") -> Any:
    """Poll ``predicate`` until it is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


@dataclass
class OpsEnv:
    """Environment of one test: queue, prefix, broker, routing file, started workers."""

    tmp: Path
    broker_url: str
    queue: str = field(default_factory=lambda: f"ops_trace_{uuid.uuid4().hex[:10]}")
    prefix: str = field(default_factory=lambda: f"test:{uuid.uuid4().hex[:10]}")
    extra: dict[str, str] = field(default_factory=dict)
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    routes: Path | None = None

    @property
    def env(self) -> dict[str, str]:
        """Variables of every process of the test."""
        values = {
            "DIFYTRACE_OPS_TRACE_BROKER_URL": self.broker_url,
            "DIFYTRACE_OPS_TRACE_QUEUE": self.queue,
            "DIFYTRACE_OPS_TRACE_KEY_PREFIX": self.prefix,
            "DIFYTRACE_OPS_TRACE_RETRY_BASE_MS": "100",
            "DIFYTRACE_OPS_TRACE_RETRY_MAX_MS": "1000",
            "DIFYTRACE_OPS_TRACE_REDELIVER_AFTER": "5",
            "DIFYTRACE_OPS_TRACE_SWEEP_INTERVAL_MS": "200",
            "DIFYTRACE_OPS_TRACE_HTTP_TIMEOUT_MS": "2000",
            "DIFYTRACE_OPS_TRACE_BATCH_SIZE": "50",
        }
        if self.routes is not None:
            values["DIFYTRACE_OPS_TRACE_DESTINATIONS"] = str(self.routes)
        return {**values, **self.extra}

    def settings(self) -> Settings:
        """The settings a process with :attr:`env` resolves."""
        return load_settings(environ=self.env)

    def route(self, document: dict[str, Any]) -> None:
        """Write the routing YAML (destinations per tenant)."""
        self.routes = self.tmp / f"routes-{uuid.uuid4().hex[:6]}.yaml"
        self.routes.write_text(yaml.safe_dump(document))

    def start_worker(
        self, *, pool: str = "solo", concurrency: int = 1, extra_env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """A real ``celery worker`` process on the test's queue; returns once it is ready."""
        log = self.tmp / f"worker-{len(self.workers)}-{uuid.uuid4().hex[:6]}.log"
        env = {**os.environ, **self.env, "DIFYTRACE_STRICT": "1", **(extra_env or {})}
        env.pop("PYTEST_XDIST_WORKER", None)
        cmd = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "difytrace.ops_trace.worker",
            "worker",
            "-Q",
            self.queue,
            "--pool",
            pool,
            "-c",
            str(concurrency),
            "-l",
            "info",
            "-n",
            f"w{uuid.uuid4().hex[:8]}@%h",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-f",
            str(log),
        ]
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.workers.append(proc)

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"worker exited {proc.returncode}: {_tail(log)}")
            return log.exists() and " ready." in log.read_text(errors="replace")

        wait_until(ready, 30, "the celery worker to be ready")
        proc.log = log  # type: ignore[attr-defined]
        return proc

    def start_workers(self, count: int) -> list[subprocess.Popen[bytes]]:
        """Start ``count`` workers at once (they boot in parallel)."""
        import concurrent.futures

        with concurrent.futures.ThreadPoolExecutor(count) as pool:
            return list(pool.map(lambda _: self.start_worker(), range(count)))

    def stop_workers(self) -> None:
        """Stop every worker (TERM, then KILL)."""
        for proc in self.workers:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.workers:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.workers.clear()


def _tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def cleanup_redis(url: str, env: OpsEnv) -> None:
    """Delete the test's keys and queue."""
    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"{env.prefix}:*", count=1000))
    keys += [env.queue.encode(), f"{env.queue}\x06\x163".encode()]
    keys += list(client.scan_iter(match=f"{env.queue}*", count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start : start + 500])
    client.close()


@pytest.fixture
def ops_env(tmp_path: Path) -> Iterator[OpsEnv]:
    """A private queue / prefix on the shared Redis (DB 11); workers stopped at the end."""
    env = OpsEnv(tmp=tmp_path, broker_url=f"redis://127.0.0.1:6379/{REDIS_DB}")
    try:
        yield env
    finally:
        env.stop_workers()
        outbox.shutdown(0)
        cleanup_redis(env.broker_url, env)


@pytest.fixture
def runtime(ops_env: OpsEnv) -> Runtime:
    """A runtime (store, publisher) on the test's settings, for inspecting the outbox."""
    return Runtime(ops_env.settings())


class OwnRedis:
    """A private ``redis-server`` (AOF, fsync always) on a spare port, restartable."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.port = _free_port(6390, 6590)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> OwnRedis:
        """Start (or restart) the server on the same port and data directory."""
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
                str(self.dir),
                "--logfile",
                str(self.dir / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)

        def up() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        wait_until(up, 20, "redis-server to answer")
        client.close()
        return self

    def kill(self) -> None:
        """SIGKILL the server (what a crash or an OOM kill does)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def _free_port(low: int, high: int) -> int:
    import random
    import socket

    for port in random.sample(range(low, high), high - low):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {low}..{high}")


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    """A private redis-server for tests that kill and restart Redis (never the shared one)."""
    server = OwnRedis(tmp_path)
    try:
        yield server
    finally:
        server.kill()
