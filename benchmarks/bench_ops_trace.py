"""ops_trace: request-path cost, delivery throughput, lag, and memory during an outage.

* **submit()**: µs per call on the request path (a pre-built workflow record of 10 nodes), the
  publisher thread running against the local Redis;
* **throughput**: traces/s one worker process (solo pool) delivers to a loopback Langfuse OTLP
  endpoint (a separate sink process), 10 observations per trace; against the langfuse SDK
  exporting the same traces in-process (its own TracerProvider) to the same sink. The sink
  (Python, parsing every span) shares the machine's cores, so the worker's own capacity is
  its CPU time per trace (user + system, from ``/proc``): traces per CPU-second; the median of
  ``BENCH_OPS_RUNS`` runs, with the range;
* **instructions per trace** (valgrind, :mod:`ops_trace_inproc`): the real delivery code in
  one process against a sink that answers at once; a figure the machine's load cannot move;
* **lag**: record finished → received by the sink, at half the target load (1,000 traces/s);
* **outage memory**: RSS growth of the submitting (API) process at 500 records/s while the
  destination is down (records wait in Redis), and while the broker itself is down (the
  bounded in-process buffer).

Run: ``python benchmarks/bench_ops_trace.py`` (env ``BENCH_OPS_*`` to resize;
``BENCH_OPS_ONLY=throughput,instructions`` to run some parts only).
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
WARMUP = 400  # traces delivered before the throughput clock starts
# An interpreter with the langfuse SDK (the baseline), when this environment has none: e.g. a
# separate venv, so that its OpenTelemetry requirements never touch difytrace's.
SDK_PYTHON = os.environ.get("BENCH_OPS_SDK_PYTHON", "")
SUBMITS = int(os.environ.get("BENCH_OPS_SUBMITS", "20000"))
RUNS = int(os.environ.get("BENCH_OPS_RUNS", "3"))
LAG_RATE, LAG_S = 1000, float(os.environ.get("BENCH_OPS_LAG_S", "8"))
OUTAGE_RATE, OUTAGE_S = 500, float(os.environ.get("BENCH_OPS_OUTAGE_S", "60"))
PK, SK = "pk-bench", "sk-bench"
# The measured worker: one process, "solo" (tasks in its main thread) by default; e.g.
# BENCH_OPS_POOL=threads BENCH_OPS_CONCURRENCY=2 overlaps one message's request with the next.
POOL = os.environ.get("BENCH_OPS_POOL", "solo")
CONCURRENCY = int(os.environ.get("BENCH_OPS_CONCURRENCY", "1"))


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
def sink_main(target: int, skip: int = 0) -> None:
    """A loopback Langfuse OTLP endpoint that reports when ``target`` spans have arrived
    (``first``: when span ``skip + 1`` did, the ones before being a warm-up)."""
    from difytrace.testing.vendors import FakeLangfuse

    class Sink(FakeLangfuse):
        first = 0.0
        seen = 0
        lags: list[float] = []

        def _otlp_span(self, span: Any, tenant: str) -> None:
            Sink.seen += 1
            if Sink.seen == skip + 1:
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

    def __init__(self, target: int, skip: int = 0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "sink", str(target), str(skip)],
            stdout=subprocess.PIPE,
            text=True,
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
        POOL,
        "--concurrency",
        str(CONCURRENCY),
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
    from difytrace.ops_trace.records import to_payload
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
        "bytes": len(to_payload(records[0])),
    }


def bench_throughput(tmp: Path) -> dict[str, float]:
    """One worker process delivering ``TRACES`` traces; its start-up and first messages (lazy
    imports, connections) are left out: a warm-up batch is delivered before the clock starts."""
    from difytrace.ops_trace.config import Runtime
    from difytrace.ops_trace.records import to_payload
    from difytrace.settings import load_settings

    sink = SinkProcess((WARMUP + TRACES) * 10, skip=WARMUP * 10)
    queue = f"bench_{uuid.uuid4().hex[:8]}"
    env = _env(queue, _routes(tmp, sink.endpoint))
    runtime = Runtime(load_settings(environ=env))
    payloads = [(uuid.uuid4().hex, to_payload(_record(i))) for i in range(WARMUP + TRACES)]
    _enqueue(runtime, payloads[:WARMUP])
    worker = start_worker(env, tmp / "w-throughput.log")
    _wait_until(lambda: runtime.store.counts()["pending"] == 0, "the warm-up delivered")
    cpu_start = _cpu_s(worker.pid)
    _enqueue(runtime, payloads[WARMUP:])
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
        "cpu_us_per_trace": cpu / TRACES * 1e6,
        "traces_per_cpu_s": TRACES / cpu,
        "load": os.getloadavg()[0],
    }


def _enqueue(runtime: Any, items: list[tuple[str, bytes]]) -> None:
    """Store records and publish their messages (200 a message), as the outbox does."""
    for start in range(0, len(items), 200):
        chunk = items[start : start + 200]
        runtime.store.put(chunk, time.time() + 600)
        runtime.publish([u for u, _ in chunk])


def _wait_until(predicate: Any, what: str, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not predicate():
        if time.time() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def bench_throughput_runs(tmp: Path) -> dict[str, Any]:
    """:func:`bench_throughput` ``RUNS`` times: the run of median CPU per trace, and the range."""
    runs = sorted((bench_throughput(tmp) for _ in range(RUNS)), key=lambda r: r["cpu_us_per_trace"])
    median = dict(runs[len(runs) // 2])
    median["runs"] = runs
    return median


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
    python = SDK_PYTHON or sys.executable
    probe = subprocess.run([python, "-c", "import langfuse"], check=False, capture_output=True)
    if probe.returncode:
        return None
    sink = SinkProcess(TRACES * 10)
    proc = subprocess.Popen(
        [python, __file__, "sdk", sink.endpoint, str(TRACES)],
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


def _parts() -> set[str]:
    only = os.environ.get("BENCH_OPS_ONLY", "")
    every = {"submit", "throughput", "sdk", "instructions", "lag", "outage"}
    return {p.strip() for p in only.split(",") if p.strip()} or every


def main() -> None:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    print(f"(load average before the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)\n")
    parts = _parts()
    found: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if "submit" in parts:
            found["submit"] = bench_submit(tmp)
        if "throughput" in parts:
            found["ours"] = bench_throughput_runs(tmp)
        if "sdk" in parts:
            found["sdk"] = bench_sdk(tmp)
        if "instructions" in parts:
            import ops_trace_inproc

            found["instructions"] = ops_trace_inproc.measure_instructions()
        if "lag" in parts:
            # Half the target load, or half what this machine delivered when that is less.
            delivered = found.get("ours", {}).get("traces_per_s", 2 * LAG_RATE)
            found["lag"] = bench_lag(tmp, min(LAG_RATE, delivered / 2))
        if "outage" in parts:
            found["outage"] = bench_outage(tmp, broker_down=False)
            found["down"] = bench_outage(tmp, broker_down=True)
    print_table(found)
    raw = json.dumps(found, indent=1)
    print(f"\n<details><summary>raw</summary>\n\n```\n{raw}\n```\n</details>")


def print_table(found: dict[str, Any]) -> None:
    """The README's ops_trace table (rows of the parts that ran)."""
    print("| measure | difytrace | baseline / target |")
    print("| --- | --- | --- |")
    submit, ours, sdk = found.get("submit"), found.get("ours"), found.get("sdk")
    if submit:
        print(
            f"| submit() p50 / p99 (workflow record, {submit['bytes']} B stored) | "
            f"{submit['p50_us']:.1f} µs / "
            f"{submit['p99_us']:.1f} µs | target p50 ≤ 20 µs |"
        )
    if ours:
        sdk_text = (
            ""
            if sdk is None
            else f"langfuse SDK in-process: {sdk['traces_per_s']:,.0f} traces/s "
            f"({ours['traces_per_s'] / sdk['traces_per_s']:.1f}x); "
        )
        print(
            f"| delivery, 1 worker process, 10 obs/trace, wall (sink on the same cores) | "
            f"{ours['traces_per_s']:,.0f} traces/s | {sdk_text}target ≥ 2,000 |"
        )
        low, high = ours["runs"][-1], ours["runs"][0]
        sdk_cpu = "" if sdk is None else f"langfuse SDK: {sdk['traces_per_cpu_s']:,.0f}; "
        print(
            f"| same, worker CPU per trace (median of {len(ours['runs'])}; range) | "
            f"{ours['cpu_us_per_trace']:.0f} µs = {ours['traces_per_cpu_s']:,.0f} "
            f"traces/CPU-s ({low['traces_per_cpu_s']:,.0f} to {high['traces_per_cpu_s']:,.0f}) "
            f"| {sdk_cpu}target ≥ 2,000 |"
        )
    if found.get("instructions"):
        print(
            f"| same, instructions per trace (valgrind, in-process, instant sink) | "
            f"{found['instructions'] / 1e6:.2f} M | load-independent |"
        )
    lag = found.get("lag")
    if lag:
        print(
            f"| lag at {lag['rate']:.0f} traces/s, p50 / p99 | "
            f"{lag['p50_ms']:.0f} ms / {lag['p99_ms']:.0f} ms | target p99 < 1 s |"
        )
    outage, down = found.get("outage"), found.get("down")
    if outage and down:
        print(
            f"| API RSS growth, destination down {OUTAGE_S:.0f} s at {OUTAGE_RATE}/s | "
            f"{outage['rss_growth_mb']:.1f} MB (Redis +{outage['redis_growth_mb']:.0f} MB for "
            f"{outage['sent']} records) | target < 50 MB |"
        )
        print(
            f"| API RSS growth, broker down {OUTAGE_S:.0f} s at {OUTAGE_RATE}/s | "
            f"{down['rss_growth_mb']:.1f} MB ({down['buffered']} buffered, the rest dropped "
            f"and counted) | bounded by DIFYTRACE_OPS_TRACE_BUFFER_SIZE |"
        )


if __name__ == "__main__":
    if sys.argv[1:2] == ["sink"]:
        sink_main(int(sys.argv[2]), int(sys.argv[3]))
    elif sys.argv[1:2] == ["sdk"]:
        sdk_main(sys.argv[2], int(sys.argv[3]))
    else:
        main()
