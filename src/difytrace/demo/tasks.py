"""The demo's Celery app: a workflow run shaped like Dify's (nodes, an iteration, an LLM node
and a tool that fails), executed by a separate worker process.

Broker settings come from the environment the demo runner sets for both processes:
``DIFYTRACE_DEMO_BROKER_URL`` and, for the embedded filesystem broker,
``DIFYTRACE_DEMO_BROKER_DIR``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from celery import Celery, signals
from opentelemetry import trace

from difytrace.demo import _manual, llm

QUEUE = "difytrace_demo"
WORKFLOW_TASK = "difytrace.demo.run_workflow"


def broker_options(url: str, folder: str | None) -> dict[str, Any]:
    """Celery settings for ``url``; the filesystem broker keeps its messages in ``folder``."""
    options: dict[str, Any] = {
        "broker_url": url,
        "task_default_queue": QUEUE,
        "worker_hijack_root_logger": False,
        "broker_connection_retry_on_startup": False,
    }
    if url.startswith("filesystem://") and folder:
        options["broker_transport_options"] = {
            "data_folder_in": folder,
            "data_folder_out": folder,
            "store_processed": False,
            "polling_interval": 0.05,
            "control_folder": os.path.join(folder, "control"),
        }
    return options


app = Celery("difytrace_demo")
app.conf.update(
    broker_options(
        os.environ.get("DIFYTRACE_DEMO_BROKER_URL", "filesystem://"),
        os.environ.get("DIFYTRACE_DEMO_BROKER_DIR"),
    )
)

_tracer = trace.get_tracer("difytrace.demo.workflow")


class ToolError(RuntimeError):
    """The demo tool's failure (a search API refusing the request)."""


@contextmanager
def node(node_type: str, title: str, **attrs: Any) -> Iterator[trace.Span]:
    """One workflow node span."""
    with _tracer.start_as_current_span(
        f"node {title}", attributes={"dify.node.type": node_type, "dify.node.title": title, **attrs}
    ) as span:
        yield span


def _search_tool(query: str) -> str:
    raise ToolError(f"search API returned 429 for {query!r}")


@app.task(name=WORKFLOW_TASK)  # type: ignore[untyped-decorator]
def run_workflow(
    inputs: dict[str, Any], model_base_url: str, trace_carrier: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run the demo workflow: start → iteration(code for each topic) → llm → tool (fails) → end."""
    with (
        _manual.consume(WORKFLOW_TASK, trace_carrier),
        _tracer.start_as_current_span(
            "workflow research", attributes={"dify.workflow.id": "wf-demo"}
        ),
    ):
        with node("start", "Start"):
            topics = list(inputs.get("topics") or ["a", "b", "c"])
        with node("iteration", "Each topic", **{"dify.iteration.length": len(topics)}):
            notes = []
            for index, topic in enumerate(topics):
                with node("code", "Summarise", **{"dify.iteration.index": index}):
                    notes.append(f"{topic}: ok")
        with node("llm", "Answer"):
            answer = llm.complete(model_base_url, "Write a summary of: " + "; ".join(notes))
        with node("tool", "Web search") as span:
            try:
                _search_tool(answer[:20])
            except ToolError as exc:
                span.record_exception(exc)
                span.set_status(trace.StatusCode.ERROR, str(exc))
        with node("end", "End"):
            return {"answer": answer, "notes": notes}


@signals.worker_init.connect  # type: ignore[untyped-decorator]
def _configure_worker(**_: Any) -> None:
    from difytrace.demo import telemetry

    telemetry.setup("difytrace-demo-worker")
    import openai  # noqa: F401 - imported now so the first task does not pay for it


@signals.worker_ready.connect  # type: ignore[untyped-decorator]
def _announce_ready(**_: Any) -> None:
    ready = os.environ.get("DIFYTRACE_DEMO_READY_FILE")
    if ready:
        Path(ready).write_text(str(os.getpid()))


@signals.worker_shutdown.connect  # type: ignore[untyped-decorator]
def _flush(**_: Any) -> None:
    import difytrace

    difytrace.shutdown()
