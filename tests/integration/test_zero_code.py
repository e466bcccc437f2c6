"""Zero-code and programmatic set-up: who turns difytrace on, and never twice."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from difytrace.testing import OTLPReceiver

HERE = Path(__file__).parent
BIN = Path(sys.executable).parent


def _run(receiver: OTLPReceiver, *, wrapper: bool, **env: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(HERE / "zero_code_app.py")]
    if wrapper:
        command = [str(BIN / "opentelemetry-instrument"), *command]
    full_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OTEL_", "DIFYTRACE_", "ENABLE_OTEL"))
    }
    full_env.update(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "DIFYTRACE_STRICT": "1",
            "OTEL_SERVICE_NAME": "zero-code",
            **env,
        }
    )
    return subprocess.run(
        command, env=full_env, capture_output=True, text=True, timeout=60, check=False
    )


def _server_spans(receiver: OTLPReceiver, expect: int) -> int:
    # The child has exited: its exit flush (a synchronous export) is already done.
    if expect:
        receiver.wait_for(count=expect, timeout=10)
    return sum(1 for s in receiver.spans() if s.kind == "SERVER")


@pytest.mark.parametrize("call_configure", ["0", "1"])
def test_wrapper_alone_enables_difytrace_and_never_twice(call_configure: str) -> None:
    with OTLPReceiver() as receiver:
        done = _run(receiver, wrapper=True, ZERO_CODE_CALL_CONFIGURE=call_configure)
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr, done.stderr
        assert _server_spans(receiver, 1) == 1
        if call_configure == "1":
            assert "configure() -> True" in done.stdout


def test_configure_without_enable_otel_does_nothing() -> None:
    with OTLPReceiver() as receiver:
        done = _run(receiver, wrapper=False, ZERO_CODE_CALL_CONFIGURE="1")
        assert done.returncode == 0, done.stderr
        assert "configure() -> False" in done.stdout
        assert _server_spans(receiver, 0) == 0


def test_configure_with_enable_otel_traces() -> None:
    with OTLPReceiver() as receiver:
        done = _run(receiver, wrapper=False, ZERO_CODE_CALL_CONFIGURE="1", ENABLE_OTEL="true")
        assert done.returncode == 0, done.stderr
        assert "configure() -> True" in done.stdout
        assert _server_spans(receiver, 1) == 1


@pytest.mark.parametrize(
    ("variable", "value", "accepted"),
    [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "udp", "accepted: http/protobuf (or http), grpc"),
        ("OTEL_SAMPLING_RATE", "1.5", "a number from 0 to 1"),
        ("OTLP_TRACE_ENDPOINT", "collector:4318", "absolute http:// or https:// URL"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "authorization", "name=value pairs"),
    ],
)
def test_bad_setting_stops_the_wrapped_process_with_one_line(
    variable: str, value: str, accepted: str
) -> None:
    with OTLPReceiver() as receiver:
        done = _run(receiver, wrapper=True, **{variable: value})
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    [line] = [line for line in done.stderr.splitlines() if line.startswith("difytrace:")]
    assert variable in line
    assert accepted in line


def test_wrapper_start_stays_offline_for_litellm() -> None:
    """litellm fetches its price map at import unless told otherwise; the distro tells it."""
    with OTLPReceiver() as receiver:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("LITELLM_")}
        done = subprocess.run(
            [
                str(BIN / "opentelemetry-instrument"),
                sys.executable,
                "-c",
                "import os; print(os.environ['LITELLM_LOCAL_MODEL_COST_MAP'])",
            ],
            env={**full_env, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"
