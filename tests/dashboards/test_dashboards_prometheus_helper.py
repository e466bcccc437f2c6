"""difytrace.prometheus.serve(): a /metrics endpoint fed by the global meter provider."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SCRIPT = """
import urllib.request
from opentelemetry import metrics
from difytrace import semconv
from difytrace.prometheus import serve

endpoint = serve(port=0)
assert endpoint.host == "127.0.0.1" and endpoint.port > 0
spec = semconv.OPS_TRACE_DELIVERED
meter = metrics.get_meter("helper-test")
meter.create_counter(spec.name, unit=spec.unit).add(3, {semconv.OPS_TRACE_DESTINATION: "otlp"})
body = urllib.request.urlopen(endpoint.url, timeout=5).read().decode()
endpoint.close()
line = next(l for l in body.splitlines() if l.startswith(spec.prometheus_name + "{"))
print(line)
"""


def test_serve_exposes_metrics_under_their_prometheus_names() -> None:
    pytest.importorskip("opentelemetry.exporter.prometheus")
    env = {**os.environ, "DIFYTRACE_STRICT": "1", "OTEL_SERVICE_NAME": "helper-test"}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert 'difytrace_ops_trace_destination="otlp"' in proc.stdout
    assert proc.stdout.strip().endswith(" 3.0")
