"""Every dashboard panel query returns data from a real Prometheus scraping real difytrace.

Three processes run tests/dashboards/workload.py with difytrace configured and expose their
metrics (difytrace.prometheus): a Flask API (HTTP, SSE, OpenAI SDK calls to a fake OpenAI
server, ops_trace submits), a Celery worker, and the ops_trace worker delivering to fake
Langfuse servers (one accepting, one refusing with 400) and a closed port. The API exports its
spans to a stalled collector and the Celery worker to a real OTLP receiver, so exporter health
is live too. A Prometheus started here (Debian package, 127.0.0.1, temporary storage, 1 s
scrapes) scrapes them while the test drives traffic in rounds until every live series has what
rate() and quantiles need. Every difytrace metric is live (``LIVE``); only the collector's span
metrics are backfilled from dash_synthetic.py. Then every target of every dashboard, with its
template variables resolved by their own queries against the same server, must return a
non-empty result whose series carry every ``by (...)`` label, with finite values.
``$__rate_interval`` is resolved to 5m.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import dash_synthetic as synthetic
import pytest
from dashgen.__main__ import DEFAULT_OUT as DASHBOARDS
from dashgen.alerts import ALERTS
from dashgen.grafana import by_labels
from dashgen.promql import label

from difytrace import semconv as sc
from difytrace.semconv import MetricSpec

HERE = Path(__file__).resolve().parent
REDIS_DB = 15  # this test's own database (13 is the doctor tests')
RATE_INTERVAL = "5m"
ERROR = label(sc.ERROR_TYPE)
QUEUE = label(sc.MESSAGING_DESTINATION_NAME)
#: module emitting them → the metrics the workload makes live. Together: all of sc.METRICS.
LIVE: dict[str, tuple[MetricSpec, ...]] = {
    "difytrace.instrumentation.flask": (sc.HTTP_SERVER_DURATION, sc.HTTP_STREAM_DURATION),
    "difytrace.instrumentation.celery": (
        sc.CELERY_TASK_DURATION,
        sc.CELERY_QUEUE_WAIT_DURATION,
        sc.CELERY_TASK_PUBLISHED,
    ),
    "difytrace.instrumentation.llm.openai": sc.GENAI_METRICS,
    # queue.depth: the worker's sweeper samples the real Redis queue (every 5 s).
    "difytrace.ops_trace.worker": sc.OPS_TRACE_METRICS,
    # api → stalled collector (failures, drops); worker → OTLP receiver (exported).
    "difytrace.export_health": sc.EXPORTER_METRICS,
}
#: The only synthetic series: what the collector alone computes.
SYNTHETIC = sc.COLLECTOR_METRICS
#: Counters that must grow in the window (ratio denominators); the others only need two samples
#: (a flat counter is a rate of 0: data). Histograms always must grow (quantiles of nothing are
#: NaN).
#: Dead letters too: the dead-letter alert must fire on the live series.
MUST_GROW = {
    sc.OPS_TRACE_DELIVERED,
    sc.OPS_TRACE_SUBMITTED,
    sc.OPS_TRACE_DEAD_LETTERED,
    sc.CELERY_TASK_PUBLISHED,
    sc.EXPORTER_SPANS_EXPORTED,
    sc.EXPORTER_SPANS_DROPPED,
}
T = TypeVar("T")


def live_specs() -> list[MetricSpec]:
    missing = [mod for mod in LIVE if importlib.util.find_spec(mod) is None]
    assert not missing, f"LIVE names modules that do not exist: {missing}"
    return [s for specs in LIVE.values() for s in specs]


def test_only_collector_series_are_synthetic() -> None:
    """Every metric difytrace emits is produced live by the workload; nothing else is faked."""
    live = live_specs()
    assert sorted(s.name for s in sc.METRICS) == sorted(s.name for s in live)
    assert not set(SYNTHETIC) & set(live)


def poll(what: str, check: Callable[[], T | None], timeout: float = 30.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
    except OSError:
        return False
    return True


class Prom:
    """A tiny client of the Prometheus HTTP API."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path: str, **params: Any) -> Any:
        url = f"{self.base}{path}?{urllib.parse.urlencode(params, doseq=True)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                body = json.load(resp)
        except urllib.error.HTTPError as exc:  # 400 = bad PromQL: say which and why
            raise AssertionError(f"{exc.code} {exc.read().decode()} for {params}") from None
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return list(self.get("/api/v1/query", query=expr)["result"])

    def label_values(self, label: str, series: str) -> list[str]:
        return list(self.get(f"/api/v1/label/{label}/values", **{"match[]": series}))


def _spawn(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=HERE)


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, prometheus_bin: str, promtool: str
) -> Iterator[dict[str, Any]]:
    if not redis_up():
        pytest.skip("no Redis on 127.0.0.1:6379")
    tmp = tmp_path_factory.mktemp("dash")
    queue = f"dash-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "DIFYTRACE_STRICT": "1",
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    for var in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER"):
        env.pop(var, None)
    redis_url = f"redis://127.0.0.1:6379/{REDIS_DB}"
    env.update({
        "DIFYTRACE_OPS_TRACE_BROKER_URL": redis_url,
        "DIFYTRACE_OPS_TRACE_QUEUE": f"{queue}-ops",
        "DIFYTRACE_OPS_TRACE_KEY_PREFIX": f"dash:{queue}",
        "DIFYTRACE_OPS_TRACE_RETRY_BASE_MS": "100",
        "DIFYTRACE_OPS_TRACE_RETRY_MAX_MS": "500",
        "DIFYTRACE_OPS_TRACE_SWEEP_INTERVAL_MS": "200",
        "DIFYTRACE_OPS_TRACE_HTTP_TIMEOUT_MS": "2000",
    })  # fmt: skip
    procs: list[subprocess.Popen[bytes]] = []
    try:
        ports = {}
        roles = ("worker", "ops", "api")
        for role in roles:  # started together, awaited together: imports are slow under load
            args = ["--redis", redis_url, "--queue", queue, "--ready", str(tmp / f"{role}.json")]
            cmd = [sys.executable, str(HERE / "workload.py"), role, *args]
            procs.append(_spawn(cmd, tmp / f"{role}.log", env))
        for role, proc in zip(roles, procs, strict=True):
            ready = tmp / f"{role}.json"
            text = poll(f"{role} ready", lambda r=ready, p=proc: _ready_file(r, p), timeout=120)
            ports[role] = json.loads(text)
        live = live_specs()
        data = tmp / "data"
        (tmp / "synthetic.om").write_text(synthetic.openmetrics(SYNTHETIC, int(time.time())))
        subprocess.run(
            [
                promtool,
                "tsdb",
                "create-blocks-from",
                "openmetrics",
                str(tmp / "synthetic.om"),
                str(data),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(DASHBOARDS / "alerts" / "difytrace.rules.yaml")],
            "scrape_configs": [
                {
                    "job_name": f"dash-{role}",
                    "static_configs": [{"targets": [f"127.0.0.1:{ports[role]['metrics_port']}"]}],
                }
                for role in ("api", "worker", "ops")
            ],
        }
        (tmp / "prometheus.yml").write_text(json.dumps(config))
        port = free_port()
        procs.append(
            _spawn(
                [
                    prometheus_bin,
                    f"--config.file={tmp / 'prometheus.yml'}",
                    f"--storage.tsdb.path={data}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                tmp / "prometheus.log",
                env,
            )
        )
        prom = Prom(port)
        poll("prometheus ready", lambda: _ready(prom.base), timeout=60)
        api = f"http://127.0.0.1:{ports['api']['http_port']}"
        yield {"prom": prom, "api": api, "live": live, "tmp": tmp}
    finally:
        _stop(procs)
        _cleanup_redis(redis_url, queue)


def _cleanup_redis(url: str, queue: str) -> None:
    """Delete this run's queues, kombu bindings and ops_trace keys (all named after queue)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"*{queue}*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
    finally:
        client.close()


def _ready_file(path: Path, proc: subprocess.Popen[bytes]) -> str | None:
    if proc.poll() is not None:
        log = path.with_suffix(".log").read_text(errors="replace")[-3000:]
        raise AssertionError(f"{path.stem} exited with {proc.returncode}:\n{log}")
    return path.read_text() if path.exists() else None


def _ready(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/-/ready", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def _hit(api: str, path: str) -> None:
    try:
        with urllib.request.urlopen(api + path, timeout=30) as resp:
            resp.read()
    except urllib.error.HTTPError as exc:
        if exc.code != 500:  # /fail answers 500 on purpose
            raise


def _traffic(api: str) -> None:
    for path in (
        "/ok",
        "/ok",
        "/fail",
        "/stream",
        "/stream",
        "/enqueue/ok",
        "/enqueue/fail",
        "/enqueue/retry",
        "/chat/tenant-a/app-1",
        "/chat/tenant-b/app-2",
        "/trace/tenant-a/app-1",
        "/trace/tenant-b/app-2",
        "/trace/tenant-c/app-3",
    ):
        _hit(api, path)


def _count(prom: Prom, expr: str) -> int:
    result = prom.query(f"count({expr})")
    return int(float(result[0]["value"][1])) if result else 0


def _not_ready(prom: Prom, specs: list[MetricSpec]) -> list[str]:
    """Live metrics whose series lack what the panels need inside the rate window."""
    lacking = []
    for spec in specs:
        series = spec.prometheus_name + ("_count" if spec.instrument == "histogram" else "")
        series += '{job=~"dash-.*"}'
        total = _count(prom, series)
        if spec.instrument == "histogram" or spec in MUST_GROW:
            ready = _count(prom, f"increase({series}[{RATE_INTERVAL}]) > 0")
        else:
            ready = _count(prom, f"count_over_time({series}[{RATE_INTERVAL}]) >= 2")
        if not total or ready < total:
            lacking.append(f"{spec.name} ({ready}/{total} series ready)")
    return lacking


@pytest.fixture(scope="module")
def scraped(stack: dict[str, Any]) -> dict[str, Any]:
    """Drive traffic until Prometheus has seen every live series grow (rounds of traffic)."""
    prom, live = stack["prom"], stack["live"]
    _traffic(stack["api"])
    if sc.CELERY_TASK_DURATION in live:  # the worker ran ok, fail and retry at least once
        states = f"count by (celery_task_state) ({sc.CELERY_TASK_DURATION.prometheus_name}_count)"
        poll("celery states", lambda: len(prom.query(states)) >= 3)
    rounds = 4  # under load a round may not be enough
    for round_ in range(rounds):
        _traffic(stack["api"])
        try:
            poll("every live series grew", lambda: not _not_ready(prom, live), timeout=20)
            break
        except AssertionError:
            if round_ == rounds - 1:
                raise AssertionError(f"not ready: {_not_ready(prom, live)}") from None
    return stack


def _resolve(prom: Prom, board: dict[str, Any]) -> dict[str, str]:
    values = {"__rate_interval": RATE_INTERVAL}
    for var in board["templating"]["list"]:
        if var["type"] != "query":
            continue
        found = prom.label_values(*_parse_label_values(var["query"]["query"]))
        assert found, f"{board['uid']}: variable {var['name']} ({var['definition']}) is empty"
        values[var["name"]] = (
            var.get("allValue") or "(" + "|".join(map(_grafana_escape, found)) + ")"
        )
    return values


def _grafana_escape(value: str) -> str:
    # As Grafana's Prometheus data source escapes a multi-value variable inside a PromQL string.
    return re.sub(r"([\\$^*{}\[\]'+?.()|])", r"\\\\\1", value)


def _parse_label_values(query: str) -> tuple[str, str]:
    match = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", query)
    assert match, query
    return match.group(2), match.group(1)


def _substitute(expr: str, values: dict[str, str]) -> str:
    def repl(match: re.Match[str]) -> str:
        return values[match.group(1) or match.group(2)]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", repl, expr)


BOARDS = sorted(DASHBOARDS.glob("*.json"))


def _check_board(prom: Prom, board: dict[str, Any]) -> Iterator[str]:
    values = _resolve(prom, board)
    for panel in board["panels"]:
        for target in panel["targets"]:
            expr = _substitute(target["expr"], values)
            result = prom.query(expr)
            where = f"{board['uid']} / {panel['title']} [{target['refId']}]: {expr}"
            if not result:
                yield f"no data: {where}"
            for series in result:
                missing = [lbl for lbl in by_labels(expr) if not series["metric"].get(lbl)]
                if missing:
                    yield f"labels {missing} missing in {series['metric']}: {where}"
                if not math.isfinite(float(series["value"][1])):
                    yield f"value {series['value'][1]} in {series['metric']}: {where}"


# One test over all boards and the rules: the stack (3 processes + Prometheus) starts once per
# run, also under xdist.
@pytest.mark.integration
def test_every_panel_returns_data(scraped: dict[str, Any]) -> None:
    prom: Prom = scraped["prom"]
    assert len(BOARDS) == 5
    problems = [p for path in BOARDS for p in _check_board(prom, json.loads(path.read_text()))]
    assert not problems, "\n".join(problems)
    # The live metrics are really scraped from the workload processes, not backfilled.
    for spec in scraped["live"]:
        suffix = "_count" if spec.instrument == "histogram" else ""
        found = prom.query(f"{spec.prometheus_name}{suffix}")
        assert {r["metric"]["job"] for r in found} & {"dash-api", "dash-worker", "dash-ops"}
        assert not [r for r in found if r["metric"].get("synthetic")], spec.name
    _check_exporter_health(prom)
    _check_alert_rules(prom)


def _by(prom: Prom, spec: MetricSpec, *labels: str) -> set[tuple[str, ...]]:
    found = prom.query(f"sum by ({', '.join(labels)}) ({spec.prometheus_name}) > 0")
    return {tuple(r["metric"].get(lbl, "") for lbl in labels) for r in found}


def _check_exporter_health(prom: Prom) -> None:
    """The stalled collector made the API's exports fail and its queue overflow; the worker's
    receiver took its spans. Each process reports only what happened to it."""
    reason = label(sc.EXPORTER_REASON)
    assert _by(prom, sc.EXPORTER_SPANS_DROPPED, "job", reason) == {
        ("dash-api", "export_failed"),
        ("dash-api", "queue_full"),
    }
    assert {job for job, _ in _by(prom, sc.EXPORTER_EXPORT_FAILURES, "job", ERROR)} == {"dash-api"}
    assert _by(prom, sc.EXPORTER_SPANS_EXPORTED, "job") == {("dash-worker",)}
    # The drop ratio shows both: the API (drops only, no exported series) and the worker.
    board = json.loads((DASHBOARDS / "exporter.json").read_text())
    (panel,) = [p for p in board["panels"] if p["title"] == "Drop ratio per process"]
    expr = _substitute(panel["targets"][0]["expr"], _resolve(prom, board))
    ratios = {r["metric"]["job"]: float(r["value"][1]) for r in prom.query(expr)}
    assert set(ratios) == {"dash-api", "dash-worker"}, ratios
    assert ratios["dash-api"] > 0, ratios
    assert ratios["dash-worker"] == 0, ratios
    # Sampled by the ops worker's sweeper from the real Redis queue it consumes.
    depth = [r["metric"] for r in prom.query(sc.OPS_TRACE_QUEUE_DEPTH.prometheus_name)]
    assert {(m["job"], m[QUEUE].rsplit("-", 1)[-1]) for m in depth} == {("dash-ops", "ops")}


def _check_alert_rules(prom: Prom) -> None:
    """The rule file loads in the same Prometheus, every rule evaluates without error, and the
    dead-letter alert fires (the workload's refusing destination dead-letters records)."""
    names = {a.name for a in ALERTS}

    def rules() -> list[dict[str, Any]]:
        return [r for g in prom.get("/api/v1/rules")["groups"] for r in g["rules"]]

    def settled() -> bool:
        found = {r["name"]: r for r in rules()}
        return (
            set(found) >= names
            and all(r.get("lastEvaluation", "").startswith("2") for r in found.values())
            and found["DifytraceOpsTraceDeadLetters"].get("state") == "firing"
            # for: 5m, so pending in this test's time, on the API's live drops
            and found["DifytraceSpansDropped"].get("state") in {"pending", "firing"}
            and {a["labels"].get("job") for a in found["DifytraceSpansDropped"]["alerts"]}
            == {"dash-api"}
        )

    try:
        poll("rules evaluated and the dead-letter alert firing", settled)
    except AssertionError:
        states = [(r["name"], r.get("state"), r.get("lastError")) for r in rules()]
        raw = prom.query("difytrace_ops_trace_dead_lettered_total[10m]")
        raise AssertionError(f"{states} {raw}") from None
    assert [(r["name"], r.get("lastError")) for r in rules() if r["health"] != "ok"] == []
