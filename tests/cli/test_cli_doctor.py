"""`difytrace doctor` against fake destinations, a real Redis and a closed port."""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from difytrace import cli_doctor_ops
from difytrace.settings import load_settings
from difytrace.testing import OTLPReceiver
from tests.cli.cli_support import BIN, LANGFUSE_KEYS, LANGSMITH_KEY, run_cli

pytestmark = pytest.mark.integration

REDIS_DB = "redis://127.0.0.1:6379/13"


def _routing(
    tmp_path: Path, vendor: str, otlp: str, secret: str, langsmith_key: str = LANGSMITH_KEY
) -> Path:
    path = tmp_path / "destinations.yaml"
    path.write_text(
        "default:\n"
        f"  - {{kind: langfuse, host: '{vendor}', public_key: {LANGFUSE_KEYS[0]},"
        " secret_key: '${LF_SECRET}'}\n"
        "tenants:\n"
        "  t1:\n"
        f"    destinations: [{{kind: langsmith, endpoint: '{vendor}', api_key: {langsmith_key}}}]\n"
        "    apps:\n"
        f"      a1: [{{kind: otlp, endpoint: '{otlp}/v1/traces'}}]\n"
    )
    return path


def _env(
    tmp_path: Path,
    vendor: str,
    receiver: OTLPReceiver,
    secret: str,
    langsmith_key: str = LANGSMITH_KEY,
) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "DIFYTRACE_ENABLED": "true",
        "DIFYTRACE_OPS_TRACE_DESTINATIONS": str(
            _routing(tmp_path, vendor, receiver.endpoint, secret, langsmith_key)
        ),
        "LF_SECRET": secret,
        "DIFYTRACE_OPS_TRACE_BROKER_URL": REDIS_DB,
        "DIFYTRACE_OPS_TRACE_QUEUE": f"doctor-{uuid.uuid4().hex[:8]}",
        "DIFYTRACE_OPS_TRACE_KEY_PREFIX": f"doctor-test:{uuid.uuid4().hex[:8]}",
    }


def _line(out: str, *parts: str) -> str:
    for line in out.splitlines():
        if all(p in line for p in parts):
            return line
    raise AssertionError(f"no line with {parts} in:\n{out}")


def test_healthy_setup_passes(
    tmp_path: Path, fake_vendor: str, otlp_receiver: OTLPReceiver
) -> None:
    receiver = otlp_receiver
    proc = run_cli("doctor", env=_env(tmp_path, fake_vendor, receiver, LANGFUSE_KEYS[1]))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "✓" in _line(
        proc.stdout, "OTLP traces", receiver.endpoint, "(from OTEL_EXPORTER_OTLP_ENDPOINT)"
    )
    assert "credentials accepted" in _line(proc.stdout, "Langfuse", fake_vendor, "(default)")
    assert "credentials accepted" in _line(proc.stdout, "LangSmith", "(tenant t1)")
    assert "✓" in _line(proc.stdout, "OTLP", "(tenant t1 app a1)")
    assert "PING answered" in _line(proc.stdout, "broker redis://127.0.0.1:6379/13")
    assert "0 message(s) waiting" in proc.stdout
    assert "0 dead letter(s)" in proc.stdout
    assert re.search(r"doctor: \d+ passed, 0 failed", proc.stdout)
    assert receiver.spans() == []  # the probe exports nothing
    for name in ("difytrace_flask", "difytrace_celery", "difytrace_openai", "difytrace_litellm"):
        assert "installed and enabled" in _line(proc.stdout, "│ instrumentation ", name)


@pytest.fixture
def broken_run(
    tmp_path: Path, fake_vendor: str, closed_port: int, otlp_receiver: OTLPReceiver
) -> tuple[subprocess.CompletedProcess[str], int, str]:
    """One doctor run with four faults: wrong Langfuse and LangSmith keys, the broker down (with
    a password in its URL) and the live-telemetry OTLP endpoint down."""
    env = _env(tmp_path, fake_vendor, otlp_receiver, "sk-wrong", langsmith_key="lsv2-wrong")
    env["DIFYTRACE_OPS_TRACE_BROKER_URL"] = f"redis://:hunter2@127.0.0.1:{closed_port}/0"
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{closed_port}"
    return run_cli("doctor", env=env), closed_port, fake_vendor


def test_wrong_key_names_the_destination_and_the_401(
    broken_run: tuple[subprocess.CompletedProcess[str], int, str],
) -> None:
    proc, _, vendor = broken_run
    assert proc.returncode == 1
    line = _line(proc.stdout, "Langfuse", vendor)
    assert "✗" in line
    assert "credentials rejected (HTTP 401" in line
    assert "sk-wrong" not in proc.stdout + proc.stderr
    line = _line(proc.stdout, "LangSmith", vendor, "(tenant t1)")
    assert "✗" in line
    assert "credentials rejected (HTTP 401" in line
    assert "lsv2-wrong" not in proc.stdout + proc.stderr


def test_unreachable_broker_is_named(
    broken_run: tuple[subprocess.CompletedProcess[str], int, str],
) -> None:
    proc, port, _ = broken_run
    line = _line(proc.stdout, f"broker redis://:****@127.0.0.1:{port}/0")
    assert "✗" in line
    assert "unreachable" in line
    assert "hunter2" not in proc.stdout + proc.stderr


def test_unreachable_otlp_endpoint_fails(
    broken_run: tuple[subprocess.CompletedProcess[str], int, str],
) -> None:
    proc, port, _ = broken_run
    assert "unreachable" in _line(proc.stdout, "OTLP traces", f"127.0.0.1:{port}")
    assert re.search(r"doctor: \d+ passed, [4-9] failed", proc.stdout), proc.stdout


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        (
            "import requests\nfrom gevent import monkey\nmonkey.patch_all()\n",
            "Monkey-patching ssl after ssl has already been imported",
        ),
        ("from gevent import monkey\nmonkey.patch_all()\nimport requests\n", None),
    ],
    ids=["wrong-order", "right-order"],
)
def test_gevent_patch_order(
    tmp_path: Path, otlp_receiver: OTLPReceiver, source: str, problem: str | None
) -> None:
    receiver = otlp_receiver
    (tmp_path / "order_app.py").write_text(source)
    proc = run_cli(
        "doctor",
        "--import",
        "order_app:app",
        cwd=tmp_path,
        env={"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint},
    )
    line = _line(proc.stdout, "gevent", "patch order (order_app:app)")
    if problem is None:
        assert proc.returncode == 0, proc.stdout
        assert "✓" in line
    else:
        assert proc.returncode == 1
        assert "✗" in line
        assert problem in line


def test_consuming_workers_are_found_even_when_they_share_a_name(
    tmp_path: Path, fake_vendor: str, otlp_receiver: OTLPReceiver
) -> None:
    """Two workers on one host share celery's default node name; both must be counted."""
    env = _env(tmp_path, fake_vendor, otlp_receiver, LANGFUSE_KEYS[1])
    queue = env["DIFYTRACE_OPS_TRACE_QUEUE"]
    workers = [
        subprocess.Popen(
            [str(BIN / "difytrace"), "worker", "--pool", "solo", "--loglevel", "warning"],
            env={**os.environ, **env, "DIFYTRACE_STRICT": "1"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(2)
    ]
    try:
        settings = load_settings({**os.environ, **env})
        deadline = time.monotonic() + 60
        while "(x2)" not in " ".join(cli_doctor_ops._consumers(settings, 1.0)):
            assert all(w.poll() is None for w in workers), "an ops_trace worker exited"
            assert time.monotonic() < deadline, "the workers never both answered the ping"
        proc = run_cli("doctor", "--timeout", "10", env=env)  # a loaded CI machine
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=30)
    line = _line(proc.stdout, f"workers on {queue}")
    assert "✓" in line
    assert "@" in line  # the worker's node name
    assert "(x2)" in line
    assert proc.returncode == 0, proc.stdout


DIFY_ORDER = """from gevent import monkey
monkey.patch_all()
from grpc.experimental import gevent as grpc_gevent
grpc_gevent.init_gevent()
import requests
"""
GRPC_NOT_INITIALISED = "from gevent import monkey\nmonkey.patch_all()\nimport grpc\n"


@pytest.mark.parametrize(
    ("source", "ok"),
    [(DIFY_ORDER, True), (GRPC_NOT_INITIALISED, False)],
    ids=["dify-app-py-order", "grpc-not-initialised"],
)
def test_grpc_patch_order(
    tmp_path: Path, otlp_receiver: OTLPReceiver, source: str, ok: bool
) -> None:
    pytest.importorskip("grpc")
    (tmp_path / "grpc_app.py").write_text(source)
    proc = run_cli(
        "doctor",
        "--import",
        "grpc_app",
        cwd=tmp_path,
        env={"OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.endpoint},
    )
    line = _line(proc.stdout, "gevent", "patch order (grpc_app)")
    assert ("✓" in line) is ok, proc.stdout
    assert proc.returncode == (0 if ok else 1)


def test_a_disabled_instrumentation_is_flagged(otlp_receiver: OTLPReceiver) -> None:
    proc = run_cli(
        "doctor",
        env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.endpoint,
            "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "difytrace_openai",
        },
    )
    line = _line(proc.stdout, "│ instrumentation ", "difytrace_openai")
    assert "!" in line
    assert "disabled by OTEL_PYTHON_DISABLED_INSTRUMENTATIONS" in line
    assert "installed and enabled" in _line(proc.stdout, "│ instrumentation ", "difytrace_flask")


def test_doctor_counts_the_outbox_and_dead_letters_the_worker_writes(
    tmp_path: Path, fake_vendor: str, otlp_receiver: OTLPReceiver
) -> None:
    from difytrace.ops_trace import dlq
    from difytrace.ops_trace.config import Runtime

    env = _env(tmp_path, fake_vendor, otlp_receiver, LANGFUSE_KEYS[1])
    runtime = Runtime(load_settings({**os.environ, **env}))
    store = runtime.store  # the keys the worker and the publisher use
    try:
        store.put([("uid-1", b"{}"), ("uid-2", b"{}")], time.time() + 600)
        letter = dlq.new_letter(
            uid="uid-0",
            destination=None,
            kind="langfuse",
            reason="http_401",
            error="HTTP 401",
            attempts=1,
            record=b"{}",
        )
        dlq.DeadLetters(store).add([letter])
        proc = run_cli("doctor", env=env)
    finally:
        store.purge_all()
        runtime.close()
    assert "2 pending" in _line(proc.stdout, "│ ops_trace ", "outbox")
    assert "1 dead letter(s) (see: difytrace dlq list)" in proc.stdout


def test_an_app_that_prints_at_exit_still_gets_its_report(
    tmp_path: Path, otlp_receiver: OTLPReceiver
) -> None:
    (tmp_path / "chatty_app.py").write_text(
        "import atexit\nprint('starting up')\natexit.register(print, '{not the report')\n"
    )
    proc = run_cli(
        "doctor",
        "--import",
        "chatty_app:app",
        cwd=tmp_path,
        env={"OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.endpoint},
    )
    assert "✓" in _line(proc.stdout, "gevent", "patch order (chatty_app:app)"), proc.stdout
    assert "error" not in proc.stderr


def test_an_app_import_that_hangs_is_a_failed_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from difytrace.cli_appcheck import check_app

    (tmp_path / "slow_app.py").write_text("import time\ntime.sleep(30)\n")
    monkeypatch.chdir(tmp_path)  # the child imports from its working directory
    with pytest.raises(RuntimeError, match=r"importing slow_app took over 1 s"):
        check_app(["slow_app"], timeout_s=1)


def test_an_endpoint_with_credentials_is_probed_with_them_and_never_shown(
    otlp_receiver: OTLPReceiver,
) -> None:
    port = otlp_receiver.endpoint.rsplit(":", 1)[1]
    proc = run_cli(
        "doctor", env={"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://ops:s3cret@127.0.0.1:{port}"}
    )
    line = _line(proc.stdout, "OTLP traces", f"http://ops:****@127.0.0.1:{port}/v1/traces")
    assert "✓" in line, proc.stdout
    assert "s3cret" not in proc.stdout + proc.stderr
    (request,) = [r for r in otlp_receiver.requests() if r.path == "/v1/traces"]
    assert request.headers["authorization"] == "Basic b3BzOnMzY3JldA=="  # ops:s3cret
