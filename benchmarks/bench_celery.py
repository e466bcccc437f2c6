"""CPU cost of Celery instrumentation: bare Celery, contrib opentelemetry-instrumentation-celery,
and difytrace, measured in one run on the local Redis.

* **publish**: CPU µs per ``apply_async`` to Redis (to a queue no worker reads), in the
  publishing process (``time.process_time``, so the span processor's thread is counted too);
* **round trip**: CPU µs per task published and run on a real solo worker: the client's
  process time plus the worker's (``/proc/<pid>/stat``), over a batch that ends when the
  worker has run it all.

Every variant's client and worker run at once, and batches are taken in turns across the
variants, the best of each kept: the machine's load drifts by more than the differences
measured, and in turns it hits every variant alike (one variant after the other, the
worker column swung by ±30 µs a task between runs).

Each variant runs in its own subprocesses, with the same SDK setup for both instrumentations
(batch span processor, an exporter that drops, a meter provider with a reader that never
exports), so only the instrumentation differs. Run: ``python benchmarks/bench_celery.py``.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from celery import Celery

import instructions

HERE = Path(__file__).parent
BROKER = os.environ.get("BENCH_CELERY_BROKER", "redis://127.0.0.1:6379/11")
VARIANTS = ("bare", "contrib", "difytrace")
# Per batch; ROUNDS batches of every variant, in turns, the quietest kept. The worker's CPU is
# read in clock ticks (10 ms), so a task batch must take well over a second of worker CPU.
PUBLISHES = int(os.environ.get("BENCH_CELERY_PUBLISHES", "1000"))
TASKS = int(os.environ.get("BENCH_CELERY_TASKS", "2000"))
ROUNDS = int(os.environ.get("BENCH_CELERY_ROUNDS", "8"))
INPROC_ROUNDS = int(os.environ.get("BENCH_CELERY_INPROC_ROUNDS", "20"))
INPROC_BATCH = 500
WARMUP = 200

app = Celery("bench_celery", broker=BROKER, backend=BROKER)
app.conf.update(
    task_default_queue=os.environ.get("BENCH_QUEUE", "bench"),
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    worker_prefetch_multiplier=4,
    result_expires=300,
)


@app.task(name="bench.noop", ignore_result=True)
def noop() -> None:
    """The measured task: nothing but the round trip."""


@app.task(name="bench.mark")
def mark() -> str:
    """Ends a batch: the solo worker runs tasks in order, so all before it are done."""
    return "done"


# --- instrumentation of one variant ----------------------------------------------------------


def setup_variant(variant: str) -> None:
    """Install the SDK (not for bare) and the variant's Celery instrumentation."""
    if variant == "bare":
        return
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Drop(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Drop()))
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))
    if variant == "contrib":
        from opentelemetry.instrumentation.celery import CeleryInstrumentor as Contrib

        Contrib().instrument()
    else:
        from difytrace.instrumentation.celery import CeleryInstrumentor

        CeleryInstrumentor().instrument()


if os.environ.get("BENCH_ROLE") == "worker":
    setup_variant(os.environ["BENCH_VARIANT"])


# --- children --------------------------------------------------------------------------------


def _cpu() -> float:
    return time.process_time()


def _proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _batch(queue: str, count: int) -> None:
    for _ in range(count):
        noop.apply_async(queue=queue)
    assert mark.apply_async(queue=queue).get(timeout=120) == "done"


def child_redis(variant: str, queue: str) -> None:
    """Serves batches on request, as :func:`child_inproc`: a line ``publish`` publishes
    ``PUBLISHES`` tasks to a queue nobody consumes (``{queue}-unread``), a line ``trip`` runs
    a batch of ``TASKS`` through the variant's worker on ``queue``; CPU µs per task out."""
    setup_variant(variant)
    unread = f"{queue}-unread"
    for _ in range(WARMUP):
        noop.apply_async(queue=unread)
    _batch(queue, WARMUP)
    print("ready", flush=True)
    for line in sys.stdin:
        start = _cpu()
        if line.strip() == "publish":
            for _ in range(PUBLISHES):
                noop.apply_async(queue=unread)
            print((_cpu() - start) / PUBLISHES * 1e6, flush=True)
        else:
            _batch(queue, TASKS)
            print((_cpu() - start) / TASKS * 1e6, flush=True)


def _inproc_task() -> Any:
    """A no-op task on an app of its own over kombu's in-memory transport."""
    local = Celery("bench_inproc", broker="memory://", set_as_current=False)
    local.conf.task_default_queue = "bench-inproc"

    def inproc() -> None:
        """Nothing: only the instrumented path is measured."""

    return local.task(name="bench.inproc", ignore_result=True)(inproc)


def child_inproc(variant: str) -> None:
    """The same two paths without sockets: publish to kombu's in-memory transport, and run
    through ``Task.apply`` (the worker's trace function: prerun/postrun, state handling).
    Serves batches on request (a line ``publish`` or ``run`` in, CPU µs per call out), so that
    the parent can alternate batches across variants: drifts of the machine's speed then hit
    every variant alike."""
    setup_variant(variant)
    task = _inproc_task()
    calls = {"publish": task.apply_async, "run": task.apply}
    for call in calls.values():
        for _ in range(WARMUP):
            call()
    print("ready", flush=True)
    for line in sys.stdin:
        call = calls[line.strip()]
        start = _cpu()
        for _ in range(INPROC_BATCH):
            call()
        print((_cpu() - start) / INPROC_BATCH * 1e6, flush=True)


class _Servers:
    """One serving child per variant (:func:`child_inproc`, :func:`child_redis`), asked for
    batches in turns: each round starts with the next variant, so drifts of the machine's
    speed hit every variant alike."""

    def __init__(self, kind: str, queues: dict[str, str]) -> None:
        self.children = {
            variant: subprocess.Popen(
                [sys.executable, str(Path(__file__)), "--child", kind, variant, queue],
                env=_env(variant, queue, "client"),
                cwd=HERE,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for variant, queue in queues.items()
        }

    def __enter__(self) -> _Servers:
        for variant, child in self.children.items():
            assert child.stdout is not None
            if child.stdout.readline().strip() != "ready":
                raise RuntimeError(f"the {variant} {' '.join(map(str, child.args))} did not start")
        return self

    def __exit__(self, *_: object) -> None:
        for child in self.children.values():
            assert child.stdin is not None
            child.stdin.close()
            child.wait(timeout=60)

    def in_turns(self, rounds: int) -> Iterator[str]:
        """The variants, ``rounds`` times, each round starting one further."""
        for round_ in range(rounds):
            yield from VARIANTS[round_ % len(VARIANTS) :] + VARIANTS[: round_ % len(VARIANTS)]

    def ask(self, variant: str, request: str) -> float:
        """CPU µs per operation of one batch of ``request`` in ``variant``'s child."""
        child = self.children[variant]
        assert child.stdin is not None
        assert child.stdout is not None
        child.stdin.write(request + "\n")
        child.stdin.flush()
        return float(child.stdout.readline())


def measure_inproc() -> dict[str, dict[str, float]]:
    """CPU µs per in-process publish and run of every variant: the best of ``INPROC_ROUNDS``
    batches, taken in turns across the variants' processes."""
    best = {v: {"inproc_publish_us": math.inf, "inproc_run_us": math.inf} for v in VARIANTS}
    with _Servers("inproc", dict.fromkeys(VARIANTS, "-")) as servers:
        for variant in servers.in_turns(INPROC_ROUNDS):
            for path in ("publish", "run"):
                key = f"inproc_{path}_us"
                best[variant][key] = min(best[variant][key], servers.ask(variant, path))
    return best


def child_count(variant: str, path: str, operations: int) -> None:
    """For :mod:`instructions`: the in-process ``path`` (publish or run), ``operations`` times
    after the set-up and warm-up of :func:`child_inproc`."""
    setup_variant(variant)
    task = _inproc_task()
    call = task.apply_async if path == "publish" else task.apply
    for _ in range(WARMUP):
        call()
    for _ in range(operations):
        call()
    if variant != "bare":
        from opentelemetry import trace

        trace.get_tracer_provider().force_flush()  # type: ignore[attr-defined]


def measure_instructions() -> dict[str, dict[str, float]]:
    """Instructions per in-process publish and run of every variant (valgrind; {} without)."""
    if not instructions.available():
        return {}
    found: dict[str, dict[str, float]] = {}
    for variant in VARIANTS:
        env = _env(variant, "-", "client")
        found[variant] = {
            f"{path}_instr": instructions.per_operation(
                lambda n, path=path, variant=variant: [
                    sys.executable,
                    str(Path(__file__)),
                    "--child",
                    "count",
                    variant,
                    path,
                    str(n),
                ],
                env=env,
            )
            for path in ("publish", "run")
        }
    return found


def _worker_instructions(variant: str, tasks: int) -> int:
    """Instructions of a solo worker of ``variant`` that runs ``tasks`` tasks from Redis and
    stops (valgrind): the tasks are queued first, by this process, uninstrumented."""
    queue = f"bench-count-{variant}-{uuid.uuid4().hex[:8]}"
    for _ in range(tasks):
        noop.apply_async(queue=queue)
    done = mark.apply_async(queue=queue)
    command = [sys.executable, "-m", "celery", "-A", "bench_celery:app", "worker", "-P", "solo"]
    command += ["-Q", queue, "-n", f"{queue}@%h", "-l", "WARNING"]
    command += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    env = {"PYTHONHASHSEED": "0", **_env(variant, queue, "worker")}
    valgrind = ["valgrind", "--tool=cachegrind", "--cache-sim=no"]
    valgrind += ["--cachegrind-out-file=/dev/null"]
    worker = subprocess.Popen(
        [*valgrind, *command],
        env=env,
        cwd=HERE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        done.get(timeout=900)
    finally:
        worker.terminate()  # valgrind passes SIGTERM on: a warm shutdown
        _, stderr = worker.communicate(timeout=300)
        with app.connection_for_write() as connection:
            connection.default_channel.queue_delete(queue)
    found = instructions.I_REFS.search(stderr)
    if found is None:
        raise RuntimeError(f"the {variant} worker failed under valgrind:\n{stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def measure_worker_instructions(tasks: int = 1000) -> dict[str, float]:
    """Instructions per task of a real solo worker (Redis, prefetch, acks, result backend
    calls included): ``(count(tasks) - count(0)) / tasks`` for each variant."""
    if not instructions.available():
        return {}
    return {
        variant: (_worker_instructions(variant, tasks) - _worker_instructions(variant, 0)) / tasks
        for variant in VARIANTS
    }


# --- orchestration ---------------------------------------------------------------------------


def _env(variant: str, queue: str, role: str) -> dict[str, str]:
    env = {**os.environ, "BENCH_VARIANT": variant, "BENCH_QUEUE": queue, "BENCH_ROLE": role}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    # Only what the variant installs: no other instrumentation, no exporter of difytrace's own.
    env.pop("DIFYTRACE_STRICT", None)
    return env


def _start_worker(variant: str, queue: str, log: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "celery", "-A", "bench_celery:app", "worker", "-P", "solo"]
    command += ["-Q", queue, "-n", f"{queue}@%h", "-l", "WARNING"]
    command += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    with log.open("wb") as handle:
        worker = subprocess.Popen(
            command, env=_env(variant, queue, "worker"), cwd=HERE, stdout=handle, stderr=handle
        )
    return worker


def measure_redis(tmp: Path) -> dict[str, dict[str, float]]:
    """CPU µs per publish to Redis and per task round trip (client + solo worker) of every
    variant: the best of ``ROUNDS`` batches, taken in turns across the variants' clients and
    workers, all running at once (so drifts of the machine's load hit every variant alike)."""
    queues = {variant: f"bench-{variant}-{uuid.uuid4().hex[:8]}" for variant in VARIANTS}
    workers = {v: _start_worker(v, q, tmp / f"{q}.log") for v, q in queues.items()}
    best = {v: dict.fromkeys(("publish_us", "client_us", "worker_us"), math.inf) for v in VARIANTS}
    try:
        with _Servers("redis", queues) as servers:
            for variant in servers.in_turns(ROUNDS):
                row, worker = best[variant], workers[variant]
                row["publish_us"] = min(row["publish_us"], servers.ask(variant, "publish"))
                worker_start = _proc_cpu(worker.pid)
                row["client_us"] = min(row["client_us"], servers.ask(variant, "trip"))
                worker_us = (_proc_cpu(worker.pid) - worker_start) / TASKS * 1e6
                row["worker_us"] = min(row["worker_us"], worker_us)
    finally:
        for worker in workers.values():
            worker.terminate()
            worker.wait(30)
        with app.connection_for_write() as connection:
            for queue in queues.values():
                connection.default_channel.queue_delete(f"{queue}-unread")
                connection.default_channel.queue_delete(queue)
    return best


def table(results: dict[str, dict[str, float]]) -> str:
    """The markdown table of per-operation CPU and the overhead added over bare Celery."""
    bare = results["bare"]
    rows = [
        "| variant | publish CPU µs | added | task round trip CPU µs (client + worker) | added |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    added: dict[str, tuple[float, float]] = {}
    for variant in VARIANTS:
        r = results[variant]
        trip = r["client_us"] + r["worker_us"]
        pub_add = r["publish_us"] - bare["publish_us"]
        trip_add = trip - (bare["client_us"] + bare["worker_us"])
        added[variant] = (pub_add, trip_add)
        name = {"bare": "bare celery", "contrib": "contrib instrumentation + SDK"}.get(
            variant, "difytrace + SDK"
        )
        detail = f"{trip:.0f} ({r['client_us']:.0f} + {r['worker_us']:.0f})"
        extra = ("-", "-") if variant == "bare" else (f"+{pub_add:.0f}", f"+{trip_add:.0f}")
        rows.append(f"| {name} | {r['publish_us']:.0f} | {extra[0]} | {detail} | {extra[1]} |")
    (cp, ct), (dp, dt) = added["contrib"], added["difytrace"]
    rows.append(
        f"| **difytrace added / contrib added** | | **{dp / cp:.2f}** | | **{dt / ct:.2f}** |"
    )
    return "\n".join(rows)


def table_inproc(results: dict[str, dict[str, float]]) -> str:
    """The in-process (no socket) figures: publish to memory://, run through Task.apply."""
    bare = results["bare"]
    rows = [
        "| variant | publish (memory://) CPU µs | added | run (Task.apply) CPU µs | added |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    added = {}
    for variant in VARIANTS:
        r = results[variant]
        pub = r["inproc_publish_us"] - bare["inproc_publish_us"]
        run = r["inproc_run_us"] - bare["inproc_run_us"]
        added[variant] = (pub, run)
        extra = ("-", "-") if variant == "bare" else (f"+{pub:.0f}", f"+{run:.0f}")
        rows.append(
            f"| {variant} | {r['inproc_publish_us']:.0f} | {extra[0]} | "
            f"{r['inproc_run_us']:.0f} | {extra[1]} |"
        )
    (cp, cr), (dp, dr) = added["contrib"], added["difytrace"]
    rows.append(f"| **difytrace / contrib added** | | **{dp / cp:.2f}** | | **{dr / cr:.2f}** |")
    return "\n".join(rows)


def table_instructions(results: dict[str, dict[str, float]]) -> str:
    """Thousands of instructions per in-process publish and run, and the overhead ratios."""
    bare = results["bare"]
    rows = [
        "| variant | publish k instr | added | run k instr | added |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    added = {}
    for variant in VARIANTS:
        r = results[variant]
        pub = r["publish_instr"] - bare["publish_instr"]
        run = r["run_instr"] - bare["run_instr"]
        added[variant] = (pub, run)
        extra = ("-", "-") if variant == "bare" else (f"+{pub / 1000:.0f}", f"+{run / 1000:.0f}")
        rows.append(
            f"| {variant} | {r['publish_instr'] / 1000:.0f} | {extra[0]} | "
            f"{r['run_instr'] / 1000:.0f} | {extra[1]} |"
        )
    (cp, cr), (dp, dr) = added["contrib"], added["difytrace"]
    rows.append(f"| **difytrace / contrib added** | | **{dp / cp:.2f}** | | **{dr / cr:.2f}** |")
    return "\n".join(rows)


def main() -> None:
    """Measure every variant, batches taken in turns across them, and print the tables."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="bench-celery-") as tmp:
        best = measure_redis(Path(tmp))
    quiet = measure_inproc()
    print(
        f"CPU per operation, best of {ROUNDS} batches of {PUBLISHES} publishes and of {TASKS} "
        "tasks, taken in turns across the variants; Redis on 127.0.0.1, solo workers:\n"
    )
    print(table(best))
    print(
        f"\nSame paths in one process, no sockets (quieter: the instrumentation's own cost), "
        f"best of {INPROC_ROUNDS} batches of {INPROC_BATCH}, taken in turns across the variants:\n"
    )
    print(table_inproc(quiet))
    counted = measure_instructions()
    if counted:
        print("\nThe same in-process paths in instructions (valgrind; load cannot move them):\n")
        print(table_instructions(counted))
        worker = measure_worker_instructions()
        bare = worker["bare"]
        added = {v: worker[v] - bare for v in VARIANTS}
        print(
            f"\nA real solo worker, per task from Redis: bare {bare / 1000:.0f}k instructions, "
            f"contrib +{added['contrib'] / 1000:.0f}k, difytrace +{added['difytrace'] / 1000:.0f}k "
            f"(**{added['difytrace'] / added['contrib']:.2f}x**)"
        )


def _child(argv: list[str]) -> None:
    kind, variant, queue, *rest = argv
    if kind == "count":
        child_count(variant, queue, int(rest[0]))
        return
    if kind == "redis":
        child_redis(variant, queue)
    elif kind == "inproc":
        child_inproc(variant)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        _child(sys.argv[2:])
    else:
        main()
