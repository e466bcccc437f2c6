"""Which command lines make difytrace apply gevent's patch order before anything else."""

from __future__ import annotations

import pytest

from difytrace.gevent import gevent_requested


@pytest.mark.parametrize(
    "argv",
    [
        ["/venv/bin/gunicorn", "-k", "gevent", "app:app"],
        ["/venv/bin/gunicorn", "-kgevent", "app:app"],
        ["/venv/bin/gunicorn", "--worker-class", "gevent", "app:app"],
        ["/venv/bin/gunicorn", "--worker-class=gunicorn.workers.ggevent.GeventWorker", "a:b"],
        ["/venv/bin/celery", "-A", "tasks", "worker", "-P", "gevent"],
        ["/venv/bin/celery", "-A", "tasks", "worker", "--pool=gevent", "-c", "50"],
        ["/venv/bin/celery", "-A", "tasks", "worker", "-Pgevent"],
        ["python", "-m", "celery", "-A", "tasks", "worker", "--pool", "gevent"],
    ],
)
def test_gevent_command_lines_are_detected(argv: list[str]) -> None:
    assert gevent_requested(argv, environ={})


@pytest.mark.parametrize(
    "argv",
    [
        ["/venv/bin/gunicorn", "-k", "sync", "app:app"],
        ["/venv/bin/gunicorn", "app:app"],
        ["/venv/bin/celery", "-A", "tasks", "worker", "-P", "prefork"],
        ["/venv/bin/celery", "-A", "gevent_tasks", "worker"],
        ["/venv/bin/flask", "run"],
        [],
    ],
)
def test_other_command_lines_are_not(argv: list[str]) -> None:
    assert not gevent_requested(argv, environ={})


def test_gunicorn_cmd_args_environment_counts() -> None:
    assert gevent_requested(["gunicorn", "app:app"], environ={"GUNICORN_CMD_ARGS": "-k gevent"})
