"""CPU cost of Celery instrumentation: bare Celery, contrib opentelemetry-instrumentation-celery,
and difytrace, measured in one run on the local Redis.

* **publish**: CPU µs per ``apply_async`` to Redis (to a queue no worker reads), in the
  publishing process (``time.process_time``, so the span processor's thread is counted too);
* **round trip**: CPU µs per task published and run on a real solo worker: the client's
  publish of a batch while the worker is stopped, plus the worker's CPU (``/proc/<pid>/stat``)
  while it then runs the batch alone (see :func:`measure_redis`).

Batches are taken in turns across the variants, the best of each process kept, and the median
of that over several sets of fresh processes reported: the machine's load drifts by more than
the differences measured (in turns it hits every variant alike), and one process's figures
stay off by up to ±10 µs for its whole life.

Each variant runs in its own subprocesses, with the same SDK setup for both instrumentations
(batch span processor, an exporter that drops, a meter provider with a reader that never
exports), so only the instrumentation differs. Run: ``python benchmarks/bench_celery.py``.
"""

from __future__ import annotations

import math
import os
import signal
import statistics
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
ROUNDS = int(os.environ.get("BENCH_CELERY_ROUNDS", "5"))
GENERATIONS = int(os.environ.get("BENCH_CELERY_GENERATIONS", "3"))
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


def child_redis(variant: str, queue: str) -> None:
    """Serves batches on request, as :func:`child_inproc`. A line ``publish`` publishes
    ``PUBLISHES`` tasks to a queue nobody consumes (``{queue}-unread``); ``fill`` publishes
    ``TASKS`` tasks and a closing ``mark`` to the variant's worker on ``queue`` (the parent has
    stopped it); both answer CPU µs per publish. ``drain`` waits until the worker has run that
    batch (the parent has let it go on and reads its CPU time)."""
    setup_variant(variant)
    unread = f"{queue}-unread"
    for _ in range(WARMUP):
        noop.apply_async(queue=unread)
    for _ in range(WARMUP):
        noop.apply_async(queue=queue)
    assert mark.apply_async(queue=queue).get(timeout=120) == "done"
    print("ready", flush=True)
    closing = None
    for line in sys.stdin:
        request = line.strip()
        if request == "drain":
            assert closing is not None
            assert closing.get(timeout=600) == "done"
            print("done", flush=True)
            continue
        target, count = (unread, PUBLISHES) if request == "publish" else (queue, TASKS)
        start = _cpu()
        for _ in range(count):
            noop.apply_async(queue=target)
        print((_cpu() - start) / count * 1e6, flush=True)
        if request == "fill":
            closing = mark.apply_async(queue=queue)


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
        """CPU µs per operation of one batch of ``request`` in ``variant``'s child (NaN for a
        request that measures nothing)."""
        child = self.children[variant]
        assert child.stdin is not None
        assert child.stdout is not None
        child.stdin.write(request + "\n")
        child.stdin.flush()
        answer = child.stdout.readline().strip()
        return math.nan if answer == "done" else float(answer)


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


def child_fill(variant: str, queue: str, tasks: int) -> None:
    """Publishes ``tasks`` tasks and a closing ``mark`` to ``queue`` as ``variant``'s client
    and prints the mark's task id."""
    setup_variant(variant)
    for _ in range(tasks):
        noop.apply_async(queue=queue)
    print(mark.apply_async(queue=queue).id, flush=True)


def child_count(variant: str, path: str, operations: int) -> None:
    """For :mod:`instructions`: ``path`` ``operations`` times after the set-up and warm-up of
    :func:`child_inproc` (``publish``, ``run``) or :func:`child_redis` (``redis``: a publish to
    the real broker, to a queue of this child's own that nobody reads, deleted at the end)."""
    setup_variant(variant)
    if path == "redis":
        queue = f"bench-count-{variant}-{uuid.uuid4().hex[:8]}"

        def call() -> None:
            noop.apply_async(queue=queue)

    else:
        task = _inproc_task()
        call = task.apply_async if path == "publish" else task.apply
    for _ in range(WARMUP):
        call()
    for _ in range(operations):
        call()
    if variant != "bare":
        from opentelemetry import trace

        trace.get_tracer_provider().force_flush()  # type: ignore[attr-defined]
    if path == "redis":
        with app.connection_for_write() as connection:
            connection.default_channel.queue_delete(queue)


def measure_instructions() -> dict[str, dict[str, float]]:
    """Instructions per in-process publish and run, and per publish to Redis, of every
    variant (valgrind; {} without)."""
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
            for path in ("publish", "run", "redis")
        }
    return found


def _worker_instructions(variant: str, tasks: int) -> int:
    """Instructions of a solo worker of ``variant`` that runs ``tasks`` tasks from Redis and
    stops (valgrind): the tasks are queued first by a client of the same variant, so that
    they carry its headers (trace context, publish time) as in production."""
    queue = f"bench-count-{variant}-{uuid.uuid4().hex[:8]}"
    filled = subprocess.run(
        [sys.executable, str(Path(__file__)), "--child", "fill", variant, queue, str(tasks)],
        env=_env(variant, queue, "client"),
        cwd=HERE,
        capture_output=True,
        text=True,
        check=True,
    )
    done = app.AsyncResult(filled.stdout.strip())
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


_REDIS = ("publish_us", "client_us", "worker_us")  # the figures of measure_redis


def measure_redis(tmp: Path) -> dict[str, dict[str, float]]:
    """CPU µs per publish to Redis and per task round trip of every variant: the median over
    ``GENERATIONS`` sets of fresh processes of each set's best of ``ROUNDS`` batches.

    A round trip is the client's publish of a batch to the variant's solo worker, stopped
    meanwhile (SIGSTOP), then the worker running the batch alone: neither competes with the
    other for the machine's two cores (with both running, they and Redis crowd two cores and
    the columns measured the crowding). Batches are taken in turns across the variants; fresh
    processes per generation, because one process's figures stay off by up to ±10 µs for its
    whole life (memory layout, hash seed)."""
    generations = [_measure_redis_once(tmp) for _ in range(GENERATIONS)]
    return {
        variant: {key: statistics.median(g[variant][key] for g in generations) for key in _REDIS}
        for variant in VARIANTS
    }


def _measure_redis_once(tmp: Path) -> dict[str, dict[str, float]]:
    queues = {variant: f"bench-{variant}-{uuid.uuid4().hex[:8]}" for variant in VARIANTS}
    workers = {v: _start_worker(v, q, tmp / f"{q}.log") for v, q in queues.items()}
    best = {v: dict.fromkeys(_REDIS, math.inf) for v in VARIANTS}
    try:
        with _Servers("redis", queues) as servers:
            for variant in servers.in_turns(ROUNDS):
                row, worker = best[variant], workers[variant]
                row["publish_us"] = min(row["publish_us"], servers.ask(variant, "publish"))
                worker.send_signal(signal.SIGSTOP)
                try:
                    row["client_us"] = min(row["client_us"], servers.ask(variant, "fill"))
                    worker_start = _proc_cpu(worker.pid)
                finally:
                    worker.send_signal(signal.SIGCONT)
                servers.ask(variant, "drain")
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


def table_instructions(results: dict[str, dict[str, float]], worker: dict[str, float]) -> str:
    """Thousands of instructions per operation and the overhead ratios: in-process publish and
    run, publish to Redis, and the round trip on a real solo worker (the publish to Redis plus
    the worker's instructions per task)."""
    figures = {
        variant: (
            *(row[c] for c in ("publish_instr", "run_instr", "redis_instr")),
            row["redis_instr"] + worker[variant],
        )
        for variant, row in results.items()
    }
    rows = [
        "| variant | publish (memory://) | added | run (Task.apply) | added "
        "| publish to Redis | added | round trip, client + worker | added |",
        "| --- |" + " ---: |" * 8,
    ]
    added = {v: [f - b for f, b in zip(figures[v], figures["bare"], strict=True)] for v in VARIANTS}
    for variant in VARIANTS:
        cells = []
        for figure, extra in zip(figures[variant], added[variant], strict=True):
            cells.append(f"{figure / 1000:,.0f}k")
            cells.append("-" if variant == "bare" else f"+{extra / 1000:,.0f}k")
        rows.append(f"| {variant} | " + " | ".join(cells) + " |")
    ratios = zip(added["difytrace"], added["contrib"], strict=True)
    cells = [f"**{ours / theirs:.2f}x**" for ours, theirs in ratios]
    rows.append("| **difytrace / contrib added** | | " + " | | ".join(cells) + " |")
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
        print(
            "\nThe same paths in instructions per operation (valgrind; load cannot move them). "
            "The round trip is the publish to Redis plus a real solo worker's instructions per "
            "task (1,000 tasks from Redis: prefetch, acks and result backend calls included):\n"
        )
        print(table_instructions(counted, measure_worker_instructions()))


def _child(argv: list[str]) -> None:
    kind, variant, queue, *rest = argv
    if kind == "count":
        child_count(variant, queue, int(rest[0]))
        return
    if kind == "fill":
        child_fill(variant, queue, int(rest[0]))
    elif kind == "redis":
        child_redis(variant, queue)
    elif kind == "inproc":
        child_inproc(variant)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        _child(sys.argv[2:])
    else:
        main()
