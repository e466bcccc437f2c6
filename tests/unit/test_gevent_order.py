"""patch_order_problems() in fresh interpreters: the right order is quiet, the wrong one named."""

from __future__ import annotations

import subprocess
import sys

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
