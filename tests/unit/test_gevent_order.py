"""patch_order_problems() in fresh interpreters: the right order is quiet, the wrong one named."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("grpc")

CHECK = "from difytrace.gevent import patch_order_problems; print(patch_order_problems())"


def _problems(prelude: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", f"{prelude}\n{CHECK}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


def test_apply_patch_order_leaves_no_problem() -> None:
    assert _problems("from difytrace.gevent import apply_patch_order; apply_patch_order()") == "[]"


def test_app_that_initialised_grpc_itself_is_fine() -> None:
    prelude = (
        "from gevent import monkey; monkey.patch_all()\n"
        "import grpc.experimental.gevent as g; g.init_gevent()"
    )
    assert _problems(prelude) == "[]"


def test_grpc_without_init_gevent_is_named() -> None:
    prelude = "from gevent import monkey; monkey.patch_all()\nimport grpc"
    assert "init_gevent() was not called" in _problems(prelude)


def test_apply_patch_order_gives_psycopg2_a_gevent_wait_callback() -> None:
    pytest.importorskip("psycogreen")
    prelude = (
        "from difytrace.gevent import apply_patch_order; apply_patch_order()\n"
        "import psycopg2.extensions\n"
        "print(psycopg2.extensions.get_wait_callback().__module__)"
    )
    assert _problems(prelude).splitlines() == ["psycogreen.gevent", "[]"]


def test_psycopg2_without_a_wait_callback_is_named() -> None:
    pytest.importorskip("psycopg2")
    prelude = "from gevent import monkey; monkey.patch_all()\nimport psycopg2.extensions"
    assert "psycopg2 has no wait callback" in _problems(prelude)


def test_the_wrapper_warns_about_a_wrong_order_at_start(tmp_path: Path) -> None:
    """Under opentelemetry-instrument, an app that patched gevent itself but forgot psycogreen
    gets one warning line naming the missing step (and keeps running)."""
    pytest.importorskip("psycopg2")
    (tmp_path / "sitecustomize_app.py").write_text(
        "import logging, sys\n"
        "logging.basicConfig(stream=sys.stderr)\n"
        "from gevent import monkey\nmonkey.patch_all()\n"
        "import grpc.experimental.gevent as g\ng.init_gevent()\n"
        "import psycopg2.extensions\n"
        "import difytrace\n"
        "difytrace.configure(enabled=True)\n"
        "print('app ran')\n"
    )
    done = subprocess.run(
        [sys.executable, str(tmp_path / "sitecustomize_app.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "DIFYTRACE_"))},
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_METRICS_EXPORTER": "none",
        },
    )
    assert "app ran" in done.stdout
    warnings = [line for line in done.stderr.splitlines() if "gevent patch order" in line]
    assert len(warnings) == 1, done.stderr
    assert "psycogreen.gevent.patch_psycopg()" in warnings[0]


COOPERATIVE = """
{prelude}
import gevent, psycopg2
events = []
def query():
    conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    with conn, conn.cursor() as cur:
        cur.execute("SELECT pg_sleep(0.3)")
    conn.close()
    events.append("query done")
def other():
    gevent.sleep(0.05)  # the query is on the wire by then
    events.append("other greenlet ran")
gevent.joinall([gevent.spawn(query), gevent.spawn(other)], raise_error=True)
print(events)
"""


def _postgres_up() -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", 5432)) == 0


@pytest.mark.integration
@pytest.mark.skipif(not _postgres_up(), reason="no PostgreSQL on 127.0.0.1:5432")
@pytest.mark.parametrize(
    ("prelude", "order"),
    [
        (
            "from difytrace.gevent import apply_patch_order; apply_patch_order()",
            ["other greenlet ran", "query done"],
        ),
        # gevent alone: psycopg2 blocks the whole process while PostgreSQL sleeps.
        ("from gevent import monkey; monkey.patch_all()", ["query done", "other greenlet ran"]),
    ],
    ids=["difytrace-order", "without-psycogreen"],
)
def test_a_postgres_query_yields_to_other_greenlets(prelude: str, order: list[str]) -> None:
    pytest.importorskip("psycogreen")
    done = subprocess.run(
        [sys.executable, "-c", COOPERATIVE.format(prelude=prelude)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == repr(order)
