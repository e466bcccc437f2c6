"""The worker's own cost per trace, without a sink or a broker sharing the CPU.

A child process runs the real delivery code (:class:`~difytrace.ops_trace.delivery.Deliverer`:
outbox load from the real Redis, parse, build, encode, route, account, commit) on records the
parent stored beforehand, in messages of ``BATCH`` uids as the worker gets them; the Langfuse
destination's HTTP session answers 200 at once (a requests adapter, no socket), so what is
measured is the worker's CPU only. What it leaves out: Celery's per-message work (one message
per ``BATCH`` traces) and the socket write of each request body; a real worker under valgrind
counted the same instructions per trace to 1 %.

* ``python ops_trace_inproc.py``: instructions per trace (``BENCH_OPS_COUNT`` traces);
* ``python ops_trace_inproc.py count PREFIX N``: set up, warm up, deliver N traces, exit (what
  :func:`measure_instructions` runs under valgrind);
* ``python ops_trace_inproc.py cpu N [--profile]``: CPU µs per trace of N traces (stores its
  own records first); with ``--profile``, cProfile's table (``SORT``, ``LINES`` env).

The parent stores the records (:func:`prepare`) so that their building is not counted.
A real SDK MeterProvider records the metrics, as in a production worker.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))

REDIS = os.environ.get("BENCH_OPS_REDIS", "redis://127.0.0.1:6379/11")
BATCH = 200
WARMUP = 2 * BATCH
PK, SK = "pk-bench", "sk-bench"


def _env(prefix: str) -> dict[str, str]:
    return {
        "DIFYTRACE_OPS_TRACE_BROKER_URL": REDIS,
        "DIFYTRACE_OPS_TRACE_QUEUE": "inproc",
        "DIFYTRACE_OPS_TRACE_KEY_PREFIX": prefix,
        "DIFYTRACE_OPS_TRACE_BATCH_SIZE": str(BATCH),
    }


def _uid(i: int) -> str:
    return f"u{i:08d}"


def prepare(prefix: str, total: int) -> None:
    """Store ``total`` workflow records of 10 observations (uids ``_uid(0..total-1)``)."""
    from difytrace.ops_trace.config import Runtime
    from difytrace.ops_trace.records import to_payload
    from difytrace.settings import load_settings
    from tests.ops_trace.factories import workflow

    runtime = Runtime(load_settings(environ=_env(prefix)))
    templates = [workflow(f"t-{i}", f"tenant-{i % 10}", nodes=9) for i in range(BATCH)]
    for start in range(0, total, BATCH):
        items = [
            (
                _uid(i),
                to_payload(
                    templates[i % BATCH].model_copy(
                        update={"record_id": f"rec-{i}-{uuid.uuid4().hex[:6]}"}
                    )
                ),
            )
            for i in range(start, min(start + BATCH, total))
        ]
        runtime.store.put(items, time.time() + 3600)
    runtime.close()


def cleanup(prefix: str) -> None:
    """Delete every key of ``prefix``."""
    import redis

    client = redis.Redis.from_url(REDIS)
    keys = list(client.scan_iter(match=prefix + ":*"))
    if keys:
        client.delete(*keys)


def _deliverer(prefix: str) -> Any:
    import requests
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from difytrace.ops_trace.config import Runtime
    from difytrace.ops_trace.delivery import Deliverer
    from difytrace.ops_trace.routing import Router, StaticResolver
    from difytrace.settings import load_settings

    metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))

    class Instant(requests.adapters.BaseAdapter):
        """Answers every request 200 with an empty body, without a socket."""

        def send(self, request: Any, **_: Any) -> requests.Response:
            response = requests.Response()
            response.status_code = 200
            response._content = b""
            response.request = request
            response.url = request.url
            return response

        def close(self) -> None:
            pass

    class InstantRouter(Router):
        def destination(self, config: Any) -> Any:
            dest = super().destination(config)
            dest.session.mount("http://", Instant())
            return dest

    dests = [{"kind": "langfuse", "host": "http://127.0.0.1:9", "public_key": PK, "secret_key": SK}]
    router = InstantRouter(StaticResolver({"default": dests}), timeout_s=5)
    return Deliverer(Runtime(load_settings(environ=_env(prefix))), router)


def _deliver(deliverer: Any, first: int, count: int) -> None:
    for start in range(first, first + count, BATCH):
        uids = [_uid(i) for i in range(start, min(start + BATCH, first + count))]
        deliverer.deliver(uids, None, 1)


def _worker_heap() -> None:
    """The worker's heap and garbage-collector settings: Celery and its app imported, then
    :func:`difytrace.ops_trace.worker.tune_gc` as the worker calls it when ready (garbage
    collection is a large part of the worker's cost: its heap matters)."""
    from difytrace.ops_trace import worker

    if os.environ.get("BENCH_OPS_DEFAULT_GC") != "1":
        worker.tune_gc()


def count_main(prefix: str, n: int) -> None:
    """Warm up on ``WARMUP`` records, then deliver ``n`` (already stored by the parent)."""
    deliverer = _deliverer(prefix)
    _worker_heap()
    _deliver(deliverer, 0, WARMUP)
    _deliver(deliverer, WARMUP, n)
    left = deliverer.runtime.store.counts()["pending"]
    if left:
        raise SystemExit(f"{left} records left unconfirmed")


def cpu_main(n: int, profile: bool = False) -> None:
    """CPU µs per trace over ``n`` traces (records stored here first, not timed)."""
    prefix = f"bench:inproc:{uuid.uuid4().hex[:8]}"
    prepare(prefix, WARMUP + n)
    try:
        deliverer = _deliverer(prefix)
        _worker_heap()
        _deliver(deliverer, 0, WARMUP)
        if profile:
            import cProfile
            import pstats

            prof = cProfile.Profile()
            prof.enable()
        start = time.process_time()
        _deliver(deliverer, WARMUP, n)
        cpu = time.process_time() - start
        if profile:
            prof.disable()
            pstats.Stats(prof).sort_stats(os.environ.get("SORT", "tottime")).print_stats(
                int(os.environ.get("LINES", "35"))
            )
        print(json.dumps({"traces": n, "cpu_us_per_trace": cpu / n * 1e6}))
    finally:
        cleanup(prefix)


def measure_instructions(n: int = int(os.environ.get("BENCH_OPS_COUNT", "1000"))) -> float | None:
    """Instructions per trace delivered: ``(count(n) - count(0)) / n`` (valgrind; None
    without it)."""
    import instructions

    if not instructions.available():
        return None
    counts = []
    for size in (0, n):
        prefix = f"bench:inproc:{uuid.uuid4().hex[:8]}"
        prepare(prefix, WARMUP + size)
        try:
            counts.append(
                instructions.count([sys.executable, __file__, "count", prefix, str(size)])
            )
        finally:
            cleanup(prefix)
    return (counts[1] - counts[0]) / n


if __name__ == "__main__":
    if sys.argv[1:2] == ["count"]:
        count_main(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1:2] == ["cpu"]:
        cpu_main(int(sys.argv[2]), profile="--profile" in sys.argv)
    else:
        sys.path.insert(0, str(HERE))
        print(json.dumps({"instructions_per_trace": measure_instructions()}))
