"""ops_trace: request-path cost, delivery throughput, lag, and memory during an outage.

* **submit()**: µs per call on the request path (a pre-built workflow record of 10 nodes), the
  publisher thread running against the local Redis;
* **throughput**: traces/s one worker process (solo pool) delivers to a loopback Langfuse OTLP
  endpoint (a separate sink process), 10 observations per trace; against the langfuse SDK
  exporting the same traces in-process (its own TracerProvider) to the same sink;
* **lag**: record finished → received by the sink, at half the target load (1,000 traces/s);
* **outage memory**: RSS growth of the submitting (API) process at 500 records/s while the
  destination is down (records wait in Redis), and while the broker itself is down (the
  bounded in-process buffer).

Run: ``python benchmarks/bench_ops_trace.py`` (env ``BENCH_OPS_*`` to resize).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))
REDIS = os.environ.get("BENCH_OPS_REDIS", "redis://127.0.0.1:6379/11")
TRACES = int(os.environ.get("BENCH_OPS_TRACES", "6000"))
SUBMITS = int(os.environ.get("BENCH_OPS_SUBMITS", "20000"))
LAG_RATE, LAG_S = 1000, float(os.environ.get("BENCH_OPS_LAG_S", "8"))
OUTAGE_RATE, OUTAGE_S = 500, float(os.environ.get("BENCH_OPS_OUTAGE_S", "60"))
PK, SK = "pk-bench", "sk-bench"


def _env(queue: str, routes: Path, **extra: str) -> dict[str, str]:
    return {
        "DIFYTRACE_OPS_TRACE_BROKER_URL": REDIS,
        "DIFYTRACE_OPS_TRACE_QUEUE": queue,
        "DIFYTRACE_OPS_TRACE_KEY_PREFIX": f"bench:{queue}",
        "DIFYTRACE_OPS_TRACE_DESTINATIONS": str(routes),
        "DIFYTRACE_OPS_TRACE_BATCH_SIZE": "200",
        **extra,
    }


def _routes(tmp: Path, endpoint: str) -> Path:
    path = tmp / f"routes-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(
        json.dumps(
            {
                "default": [
                    {"kind": "langfuse", "host": endpoint, "public_key": PK, "secret_key": SK}
                ]
            }
        )
    )
    return path


def _record(i: int, finished: Any = None) -> Any:
    from tests.ops_trace.factories import workflow

    record = workflow(f"bench-{i}-{uuid.uuid4().hex[:6]}", f"tenant-{i % 10}", nodes=9)
    if finished is not None:
        record = record.model_copy(
            update={"end_time": finished, "start_time": finished.replace(microsecond=0)}
        )
    return record


# --- sink process ---------------------------------------------------------------------------
def sink_main(target: int) -> None:
    """A loopback Langfuse OTLP endpoint that reports when ``target`` spans have arrived."""
    from difytrace.testing.vendors import FakeLangfuse

    class Sink(FakeLangfuse):
        first = 0.0
        lags: list[float] = []

        def _otlp_span(self, span: Any, tenant: str) -> None:
            if not self.first:
                Sink.first = time.time()
            if not span.parent_span_id:
                Sink.lags.append(time.time() - span.end_time_unix_nano / 1e9)
            super()._otlp_span(span, tenant)

    server = Sink(validate=False).start()
    server.add_project(PK, SK, "bench")
    print(json.dumps({"endpoint": server.endpoint}), flush=True)
    server.wait_for_count(target, timeout=600)
    print(
        json.dumps(
            {
                "first": Sink.first,
                "done": time.time(),
                "spans": len(server.entities),
                "lags": Sink.lags,
            }
        ),
        flush=True,
    )


class SinkProcess:
    """The sink in its own process (so it does not share a core's GIL with the measured)."""

    def __init__(self, target: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "sink", str(target)], stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        self.endpoint = json.loads(self.proc.stdout.readline())["endpoint"]

    def result(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        self.proc.wait(30)
        return dict(json.loads(line))


# --- workers --------------------------------------------------------------------------------
def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "difytrace.ops_trace.worker",
        "worker",
        "-Q",
        env["DIFYTRACE_OPS_TRACE_QUEUE"],
        "--pool",
        "solo",
        "-l",
        "info",
        "-f",
        str(log),
        "-n",
        f"bench{uuid.uuid4().hex[:6]}@%h",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    proc = subprocess.Popen(
        cmd, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        if log.exists() and " ready." in log.read_text(errors="replace"):
            return proc
        time.sleep(0.05)
    raise RuntimeError("worker did not start")


def cleanup(env: dict[str, str]) -> None:
    import redis

    client = redis.Redis.from_url(REDIS)
    keys = list(client.scan_iter(match=env["DIFYTRACE_OPS_TRACE_KEY_PREFIX"] + ":*"))
    keys.append(env["DIFYTRACE_OPS_TRACE_QUEUE"])
    client.delete(*keys)


# --- measurements ---------------------------------------------------------------------------
def bench_submit(tmp: Path) -> dict[str, float]:
    from difytrace.ops_trace import outbox
    from difytrace.settings import load_settings

    queue = f"bench_{uuid.uuid4().hex[:8]}"
    env = _env(
        queue, _routes(tmp, "http://127.0.0.1:9"), DIFYTRACE_OPS_TRACE_BUFFER_SIZE=str(SUBMITS * 2)
    )
    box = outbox.configure(load_settings(environ=env))
    records = [_record(i) for i in range(2000)]
    for r in records[:500]:
        box.submit(r)
    box.flush(30)
    samples = []
    clock = time.perf_counter_ns
    for i in range(SUBMITS):
        record = records[i % len(records)]
        start = clock()
        box.submit(record)
        samples.append(clock() - start)
    box.flush(60)
    outbox.shutdown(1)
    cleanup(env)
    samples.sort()
    return {
        "p50_us": samples[len(samples) // 2] / 1000,
        "p99_us": samples[int(len(samples) * 0.99)] / 1000,
        "bytes": len(records[0].model_dump_json()),
    }


def bench_throughput(tmp: Path) -> dict[str, float]:
    from difytrace.ops_trace.config import Runtime
    from difytrace.settings import load_settings

    sink = SinkProcess(TRACES * 10)
    queue = f"bench_{uuid.uuid4().hex[:8]}"
    env = _env(queue, _routes(tmp, sink.endpoint))
    runtime = Runtime(load_settings(environ=env))
    payloads = [_record(i).model_dump_json().encode() for i in range(TRACES)]
    uids = [uuid.uuid4().hex for _ in payloads]
    for start in range(0, TRACES, 200):
        chunk = list(zip(uids[start : start + 200], payloads[start : start + 200], strict=True))
        runtime.store.put(chunk, time.time() + 600)
        runtime.publish([u for u, _ in chunk])
    worker = start_worker(env, tmp / "w-throughput.log")
    cpu_start = _cpu_s(worker.pid)
    result = sink.result()
    cpu = _cpu_s(worker.pid) - cpu_start
    worker.terminate()
    worker.wait(20)
    runtime.close()
    cleanup(env)
    elapsed = result["done"] - result["first"]
    return {
        "traces_per_s": TRACES / elapsed,
        "spans": result["spans"],
        "seconds": elapsed,
        "traces_per_cpu_s": TRACES / cpu,
    }


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (``/proc/<pid>/stat``)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sdk_main(endpoint: str, traces: int) -> None:
    """The baseline: the langfuse SDK creating and exporting the same traces in-process."""
    from langfuse import Langfuse
    from opentelemetry.sdk.trace import TracerProvider

    lf = Langfuse(
        public_key=PK,
        secret_key=SK,
        host=endpoint,
        tracer_provider=TracerProvider(),
        otel_compression="none",
        flush_at=512,
    )
    start, cpu = time.time(), time.process_time()
    for i in range(traces):
        root = lf.start_observation(
            name="my workflow",
            as_type="chain",
            input={"q": "hi"},
            output={"answer": "done"},
            metadata={"tenant": f"t{i % 10}"},
        )
        for n in range(9):
            child = root.start_observation(
                name=f"LLM {n}",
                as_type="generation",
                model="gpt-4o",
                input={"prompt": f"p{n}"},
                output={"text": f"answer {n}"},
                usage_details={"input": 10, "output": 5},
            )
            child.end()
        root.end()
    lf.flush()
    print(json.dumps({"start": start, "cpu": time.process_time() - cpu}), flush=True)


def bench_sdk(tmp: Path) -> dict[str, float] | None:
    try:
        import langfuse  # noqa: F401
    except ImportError:
        return None
    sink = SinkProcess(TRACES * 10)
    proc = subprocess.Popen(
        [sys.executable, __file__, "sdk", sink.endpoint, str(TRACES)],
        stdout=subprocess.PIPE,
        text=True,
    )
    result = sink.result()
    assert proc.stdout is not None
    report = json.loads(proc.stdout.readline())
    proc.wait(60)
    return {
        "traces_per_s": TRACES / (result["done"] - report["start"]),
        "traces_per_cpu_s": TRACES / report["cpu"],
    }


def _paced(rate: float, seconds: float, action: Any) -> int:
    """Call ``action(i)`` ``rate * seconds`` times, spread evenly over ``seconds``."""
    total, count, start = int(rate * seconds), 0, time.perf_counter()
    while count < total:
        due = min(int((time.perf_counter() - start) * rate) + 1, total)
        while count < due:
            action(count)
            count += 1
        time.sleep(0.002)
    return count


def bench_lag(tmp: Path, rate: float) -> dict[str, float]:
    from datetime import UTC, datetime

    from difytrace.ops_trace import outbox
    from difytrace.settings import load_settings

    total = int(rate * LAG_S)
    sink = SinkProcess(total * 10)
    queue = f"bench_{uuid.uuid4().hex[:8]}"
    env = _env(queue, _routes(tmp, sink.endpoint))
    worker = start_worker(env, tmp / "w-lag.log")
    box = outbox.configure(load_settings(environ=env))
    template = [_record(i) for i in range(200)]

    def submit(i: int) -> None:
        now = datetime.now(UTC)
        rec = template[i % 200].model_copy(
            update={
                "record_id": f"lag-{i}",
                "end_time": now,
                "start_time": now.replace(microsecond=0),
            }
        )
        box.submit(rec)

    sent = _paced(rate, LAG_S, submit)
    result = sink.result()
    worker.terminate()
    worker.wait(20)
    outbox.shutdown(1)
    cleanup(env)
    lags = sorted(result["lags"])
    return {
        "sent": sent,
        "rate": rate,
        "p50_ms": lags[len(lags) // 2] * 1000,
        "p99_ms": lags[int(len(lags) * 0.99)] * 1000,
    }


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def bench_outage(tmp: Path, broker_down: bool) -> dict[str, float]:
    import gc

    import redis

    from difytrace.ops_trace import outbox
    from difytrace.settings import load_settings

    queue = f"bench_{uuid.uuid4().hex[:8]}"
    env = _env(queue, _routes(tmp, "http://127.0.0.1:9"))  # the destination is down
    if broker_down:
        env["DIFYTRACE_OPS_TRACE_BROKER_URL"] = "redis://127.0.0.1:1/0"
    worker = None if broker_down else start_worker(env, tmp / "w-outage.log")
    box = outbox.configure(load_settings(environ=env))
    template = [_record(i) for i in range(200)]
    gc.collect()
    before = _rss_mb()
    client = redis.Redis.from_url(REDIS)
    redis_before = client.info("memory")["used_memory"] / 2**20
    peak = [before]
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(1):
            peak.append(_rss_mb())

    threading.Thread(target=watch, daemon=True).start()
    sent = _paced(OUTAGE_RATE, OUTAGE_S, lambda i: box.submit(template[i % 200]))
    stop.set()
    redis_after = client.info("memory")["used_memory"] / 2**20
    buffered = len(box.buffer)
    outbox.shutdown(0.1)
    if worker is not None:
        worker.terminate()
        worker.wait(20)
    cleanup(env)
    return {
        "sent": sent,
        "rss_growth_mb": max(peak) - before,
        "buffered": buffered,
        "redis_growth_mb": redis_after - redis_before,
    }


def main() -> None:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    print(f"(load average before the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)\n")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        submit = bench_submit(tmp)
        ours = bench_throughput(tmp)
        sdk = bench_sdk(tmp)
        # Half the target load, or half what this machine delivered when that is less.
        lag = bench_lag(tmp, min(LAG_RATE, ours["traces_per_s"] / 2))
        outage = bench_outage(tmp, broker_down=False)
        down = bench_outage(tmp, broker_down=True)
    print("| measure | difytrace | baseline / target |")
    print("| --- | --- | --- |")
    print(
        f"| submit() p50 / p99 ({submit['bytes']} B record) | {submit['p50_us']:.1f} µs / "
        f"{submit['p99_us']:.1f} µs | target p50 ≤ 20 µs |"
    )
    sdk_text = (
        "langfuse SDK not installed"
        if sdk is None
        else (
            f"langfuse SDK in-process: {sdk['traces_per_s']:,.0f} traces/s "
            f"(ratio {ours['traces_per_s'] / sdk['traces_per_s']:.1f}x)"
        )
    )
    print(
        f"| delivery, 1 worker process, 10 obs/trace | {ours['traces_per_s']:,.0f} traces/s | "
        f"{sdk_text}; target ≥ 2,000 |"
    )
    if sdk is not None:
        print(
            f"| same, per CPU-second of the delivering process | "
            f"{ours['traces_per_cpu_s']:,.0f} traces/CPU-s | langfuse SDK: "
            f"{sdk['traces_per_cpu_s']:,.0f} traces/CPU-s |"
        )
    print(
        f"| lag at {lag['rate']:.0f} traces/s, p50 / p99 | "
        f"{lag['p50_ms']:.0f} ms / {lag['p99_ms']:.0f} ms "
        f"| target p99 < 1 s |"
    )
    print(
        f"| API RSS growth, destination down {OUTAGE_S:.0f} s at {OUTAGE_RATE}/s | "
        f"{outage['rss_growth_mb']:.1f} MB (Redis +{outage['redis_growth_mb']:.0f} MB for "
        f"{outage['sent']} records) | target < 50 MB |"
    )
    print(
        f"| API RSS growth, broker down {OUTAGE_S:.0f} s at {OUTAGE_RATE}/s | "
        f"{down['rss_growth_mb']:.1f} MB ({down['buffered']} buffered, the rest dropped and "
        f"counted) | bounded by DIFYTRACE_OPS_TRACE_BUFFER_SIZE |"
    )
    raw = json.dumps(
        {"submit": submit, "ours": ours, "sdk": sdk, "lag": lag, "outage": outage, "down": down},
        indent=1,
    )
    print(f"\n<details><summary>raw</summary>\n\n```\n{raw}\n```\n</details>")


if __name__ == "__main__":
    if sys.argv[1:2] == ["sink"]:
        sink_main(int(sys.argv[2]))
    elif sys.argv[1:2] == ["sdk"]:
        sdk_main(sys.argv[2], int(sys.argv[3]))
    else:
        main()
