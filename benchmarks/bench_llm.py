"""Per-call client CPU of OpenAI SDK calls: bare, with difytrace, and with the peer instrumentors.

Each variant runs in its own subprocess against one fake OpenAI server in another process on
loopback; CPU is the client process's (``time.process_time``: every thread, so the batch span
processor's export thread and difytrace's scrubbing count too). Every instrumented variant gets
the same SDK pipeline: a ``TracerProvider`` with a ``BatchSpanProcessor`` into a discarding
exporter, and a ``MeterProvider`` with an in-memory reader. Added cost = variant - bare of the
same virtualenv, median of ``--repeat`` runs.

The instruction counts (valgrind) export through a ``SimpleSpanProcessor`` instead: the same
export work, in the calling thread, so that no second thread's scheduling under valgrind enters
the count. (The swings of 20k-106k a call seen before came mostly from a hash seed per process,
now pinned by :mod:`instructions`.)

The peers are never installed into the project's environment: they go into throwaway venvs
(``/tmp/bench-llm-venv`` and ``/tmp/bench-llm-venv-v2``, see ``VENV_PACKAGES``), created on
first use with ``uv venv`` + ``uv pip install`` (needs the package index), with the same
``openai`` version as the project's environment.

Run: ``python benchmarks/bench_llm.py [--calls 1000 --streams 200 --repeat 3]``; prints a
markdown table.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import instructions

VENV_ROOT = os.environ.get("BENCH_LLM_VENV", "/tmp/bench-llm-venv")
#: peer → (module:Instrumentor, its throwaway venv, what that venv needs). openai-v2 needs an
#: older opentelemetry-util-genai than genai-openai, hence its own venv.
PEERS = {
    "genai-openai": ("opentelemetry.instrumentation.genai.openai:OpenAIInstrumentor", ""),
    "openai-v2": ("opentelemetry.instrumentation.openai_v2:OpenAIInstrumentor", "-v2"),
    "openllmetry": ("opentelemetry.instrumentation.openai:OpenAIInstrumentor", ""),
    "openinference": ("openinference.instrumentation.openai:OpenAIInstrumentor", ""),
}
VENV_PACKAGES = {
    "": (
        "opentelemetry-sdk",
        "opentelemetry-instrumentation-genai-openai",
        "opentelemetry-instrumentation-openai",
        "openinference-instrumentation-openai",
    ),
    # openai-v2 imports httpx (openai 3.x itself uses httpx2)
    "-v2": (
        "opentelemetry-sdk",
        "opentelemetry-instrumentation-openai-v2",
        "httpx",
        "opentelemetry-util-genai<1.2",
    ),
}
CHUNKS = 50
MESSAGES = [{"role": "user", "content": "Say hello in a few words."}]


# --- child side ---------------------------------------------------------------------------
def _pipeline(synchronous: bool = False) -> tuple[object, object]:
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SimpleSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class Discard(SpanExporter):
        def export(self, spans: object) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    exporter: SpanExporter = Discard()
    if os.environ.get("BENCH_SCRUB") == "1":  # difytrace's real export path includes scrubbing
        from difytrace.scrub import Scrubber, ScrubbingSpanExporter

        exporter = ScrubbingSpanExporter(exporter, Scrubber())
    tracer_provider = TracerProvider()
    processor = SimpleSpanProcessor if synchronous else BatchSpanProcessor
    tracer_provider.add_span_processor(processor(exporter))
    trace.set_tracer_provider(tracer_provider)
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    metrics.set_meter_provider(meter_provider)
    return tracer_provider, meter_provider


def _instrument(variant: str) -> None:
    if variant == "bare":
        return
    if variant == "sdk-floor":
        _instrument_floor()
        return
    if variant == "difytrace":
        from difytrace.instrumentation.llm.openai import OpenAIInstrumentor
        from difytrace.settings import load_settings

        OpenAIInstrumentor().instrument(settings=load_settings({}))
        return
    module, _, cls = PEERS[variant][0].partition(":")
    __import__(module)
    getattr(sys.modules[module], cls)().instrument()


def _instrument_floor() -> None:
    """The least any GenAI instrumentor pays in the SDK: one client span with 15 attributes
    and three histogram records (duration, input and output tokens) per call."""
    import wrapt
    from opentelemetry import metrics, trace

    tracer = trace.get_tracer("floor")
    meter = metrics.get_meter("floor")
    duration, tokens = meter.create_histogram("d", unit="s"), meter.create_histogram("t")
    labels = {f"gen_ai.k{i}": "v" for i in range(6)}
    span_attrs = {f"gen_ai.a{i}": "value" for i in range(8)}
    end_attrs = {f"gen_ai.b{i}": i for i in range(7)}

    def wrapper(wrapped: object, instance: object, args: tuple, kwargs: dict) -> object:  # type: ignore[type-arg]
        span = tracer.start_span("chat", kind=trace.SpanKind.CLIENT, attributes=span_attrs)
        result = wrapped(*args, **kwargs)  # type: ignore[operator]
        span.set_attributes(end_attrs)
        duration.record(0.1, labels)
        tokens.record(10, {**labels, "gen_ai.token.type": "input"})
        tokens.record(5, {**labels, "gen_ai.token.type": "output"})
        span.end()
        return result

    wrapt.wrap_function_wrapper("openai.resources.chat.completions", "Completions.create", wrapper)


def _measure(fn: object, count: int) -> float:
    start = time.process_time()
    for _ in range(count):
        fn()  # type: ignore[operator]
    return (time.process_time() - start) / count


def child(variant: str, base_url: str, calls: int, streams: int) -> dict[str, float]:
    """Run in the variant's subprocess: CPU seconds per plain call and per streamed call."""
    tracer_provider, _ = _pipeline()
    _instrument(variant)
    import openai

    client = openai.OpenAI(
        base_url=base_url, api_key="sk-test-difytrace-0123456789abcdef", max_retries=0
    )

    def plain() -> None:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]

    def stream() -> None:
        for _ in client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            stream=True,  # type: ignore[arg-type]
            stream_options={"include_usage": True},
        ):
            pass

    _measure(plain, max(calls // 5, 20))
    _measure(stream, max(streams // 5, 10))
    result = {"plain": _measure(plain, calls), "stream": _measure(stream, streams)}
    tracer_provider.shutdown()  # type: ignore[attr-defined]
    return result


def child_count(variant: str, base_url: str, what: str, count: int) -> None:
    """For :mod:`instructions`: set up, warm up, then ``count`` plain calls or streams."""
    tracer_provider, _ = _pipeline(synchronous=True)
    _instrument(variant)
    import openai

    client = openai.OpenAI(
        base_url=base_url, api_key="sk-test-difytrace-0123456789abcdef", max_retries=0
    )
    extra = {"stream": True, "stream_options": {"include_usage": True}} if what == "stream" else {}

    def call() -> None:
        response = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,  # type: ignore[arg-type]
            **extra,  # type: ignore[arg-type]
        )
        if what == "stream":
            for _ in response:  # type: ignore[union-attr]
                pass

    for _ in range(20):
        call()
    # Whether a full collection of the start-up heap falls among the n calls or not would
    # swing the count by ~100k instructions a call; frozen, only the calls' own objects count.
    gc.collect()
    gc.freeze()
    for _ in range(count):
        call()
    tracer_provider.shutdown()  # type: ignore[attr-defined]


def measure_instructions(
    plan: list[tuple[str, Path | str, str, bool]], base_url: str, calls: int = 200
) -> dict[str, dict[str, float]]:
    """Instructions per plain call and per stream of every variant (valgrind; {} without)."""
    if not instructions.available():
        return {}
    found: dict[str, dict[str, float]] = {}
    for label, python, variant, scrub in plan:
        env = {**os.environ, "BENCH_SCRUB": "1" if scrub else "0"}
        found[label] = {}
        for what, count in (("plain", calls), ("stream", max(calls // 4, 10))):

            def argv(
                n: int, python: Path | str = python, variant: str = variant, what: str = what
            ) -> list[str]:
                return [
                    str(python), str(Path(__file__).resolve()), "--child", variant,
                    "--base-url", base_url, "--count", str(n), "--what", what,
                ]  # fmt: skip

            found[label][what] = instructions.per_operation(argv, count, env=env)
    return found


# --- parent side --------------------------------------------------------------------------
def _ensure_peer_venv(suffix: str) -> Path | None:
    venv = Path(VENV_ROOT + suffix)
    python = venv / "bin" / "python"
    if python.exists():
        return python
    uv = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    try:
        subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
        subprocess.run(
            [
                uv,
                "pip",
                "install",
                "-q",
                "--python",
                str(python),
                f"openai=={version('openai')}",
                *VENV_PACKAGES[suffix],
            ],
            check=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"peer venv {venv} not available ({exc})", file=sys.stderr)
        return None
    return python


def _start_server() -> tuple[subprocess.Popen[str], str]:
    code = (
        "import sys\n"
        "from difytrace.testing.openai_server import OpenAIServer, Reply\n"
        "s = OpenAIServer().start()\n"
        f"s.next_reply = lambda: Reply(chunks={CHUNKS})\n"
        "print(s.base_url, flush=True)\n"
        "sys.stdin.read()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def _run(
    python: Path | str, variant: str, base_url: str, args: argparse.Namespace, scrub: bool = False
) -> dict[str, float]:
    env = {**os.environ, "BENCH_SCRUB": "1" if scrub else "0"}
    out = subprocess.run(
        [
            str(python),
            str(Path(__file__).resolve()),
            "--child",
            variant,
            "--base-url",
            base_url,
            "--calls",
            str(args.calls),
            "--streams",
            str(args.streams),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        print(f"{variant} failed:\n{out.stderr[-2000:]}", file=sys.stderr)
        return {"plain": float("nan"), "stream": float("nan")}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    """Measure every variant and print the markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child")
    parser.add_argument("--base-url")
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--what", choices=("plain", "stream"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--no-instructions", action="store_true", help="skip the valgrind instruction counts"
    )
    args = parser.parse_args(argv)
    if args.child and args.count is not None:
        child_count(args.child, args.base_url, args.what, args.count)
        return
    if args.child:
        print(json.dumps(child(args.child, args.base_url, args.calls, args.streams)))
        return
    server, base_url = _start_server()
    plan: list[tuple[str, Path | str, str, bool]] = [
        ("bare", sys.executable, "bare", False),
        ("difytrace", sys.executable, "difytrace", True),
        ("difytrace without the export scrubber", sys.executable, "difytrace", False),
        ("sdk-floor (SDK span + 3 histograms, no logic)", sys.executable, "sdk-floor", False),
    ]
    for name, (_, suffix) in PEERS.items():
        python = _ensure_peer_venv(suffix)
        if python is not None:
            plan.append((name, python, name, False))
    runs: dict[str, list[dict[str, float]]] = {label: [] for label, *_ in plan}
    try:
        for _ in range(args.repeat):  # interleaved, so load drift hits every variant alike
            for label, python, variant, scrub in plan:
                runs[label].append(_run(python, variant, base_url, args, scrub))
        counted = {} if args.no_instructions else measure_instructions(plan, base_url)
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(timeout=10)
    _print_table(runs)
    if counted:
        print("\nInstructions (valgrind; the load of other processes cannot move them):\n")
        _print_instructions(counted)


def _print_instructions(counted: dict[str, dict[str, float]]) -> None:
    base = counted["bare"]
    peers = [label for label in counted if label.split()[0] in PEERS]
    cheapest = {
        what: min((counted[p][what] - base[what] for p in peers), default=float("nan"))
        for what in ("plain", "stream")
    }
    print(
        "| variant | added k instr / call | vs cheapest peer "
        f"| added k instr / {CHUNKS}-chunk stream | vs cheapest peer |"
    )
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, figures in counted.items():
        if label == "bare":
            continue
        plain, stream = (figures[w] - base[w] for w in ("plain", "stream"))
        print(
            f"| {label} | {plain / 1000:+.0f} | {plain / cheapest['plain']:.2f}x "
            f"| {stream / 1000:+.0f} | {stream / cheapest['stream']:.2f}x |"
        )


def _print_table(runs: dict[str, list[dict[str, float]]]) -> None:
    med = {
        label: {k: statistics.median(r[k] for r in rs) for k in ("plain", "stream")}
        for label, rs in runs.items()
    }
    print(
        f"| variant | CPU/call (µs) | added (µs) | CPU/{CHUNKS}-chunk stream (µs) "
        "| added (µs) | per chunk beyond a plain call (µs) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for label, m in med.items():
        base = med["bare"]
        add_p = (m["plain"] - base["plain"]) * 1e6
        add_s = (m["stream"] - base["stream"]) * 1e6
        print(
            f"| {label} | {m['plain'] * 1e6:.0f} | {add_p:+.0f} | {m['stream'] * 1e6:.0f} "
            f"| {add_s:+.0f} | {(add_s - add_p) / CHUNKS:+.1f} |"
        )


if __name__ == "__main__":
    main()
