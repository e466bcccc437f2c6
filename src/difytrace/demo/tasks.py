"""The demo's Celery app: a workflow run shaped like Dify's (an iteration of code nodes, an LLM
node that asks for a tool, the tool failing, an LLM node answering anyway), executed by a
separate worker process, then handed to ops_trace as a record.

Broker settings come from the environment the demo runner sets for both processes:
``DIFYTRACE_DEMO_BROKER_URL``, ``DIFYTRACE_DEMO_QUEUE`` and, for the filesystem broker,
``DIFYTRACE_DEMO_BROKER_DIR``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from celery import Celery, signals

from difytrace.demo import llm, recording

WORKFLOW_TASK = "difytrace.demo.run_workflow"
SEARCH_TOOL = {
    "type": "function",
    "function": {
        "name": "web_search",
        "description": "Search the web.",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
    },
}


def broker_options(url: str, folder: str | None, queue: str) -> dict[str, Any]:
    """Celery settings for ``url``; the filesystem broker keeps its messages in ``folder``."""
    options: dict[str, Any] = {
        "broker_url": url,
        "task_default_queue": queue,
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
    elif url.startswith("redis"):
        options["broker_transport_options"] = {"polling_interval": 0.05}
    return options


app = Celery("difytrace_demo")
app.conf.update(
    broker_options(
        os.environ.get("DIFYTRACE_DEMO_BROKER_URL", "filesystem://"),
        os.environ.get("DIFYTRACE_DEMO_BROKER_DIR"),
        os.environ.get("DIFYTRACE_DEMO_QUEUE", "difytrace_demo"),
    )
)


class ToolError(RuntimeError):
    """The demo tool's failure (a search API refusing the request)."""


def web_search(query: str) -> str:
    """The tool: its API is rate limited today."""
    raise ToolError(f"search API answered 429 Too Many Requests for {query!r}")


def _research(run: recording.WorkflowRun, topics: list[str], model: tuple[str, str]) -> str:
    with run.node("iteration", "Each topic") as iteration:
        notes = []
        for index, topic in enumerate(topics):
            with run.node("code", "Summarise", parent=iteration, iteration_index=index) as code:
                code.inputs, code.outputs = {"topic": topic}, {"note": f"{topic}: ok"}
                notes.append(code.outputs["note"])
        iteration.outputs = {"notes": notes}
    with run.node("llm", "Plan") as plan:
        plan.answer = llm.complete(
            *model, "Plan research on: " + "; ".join(notes), tools=[SEARCH_TOOL]
        )
        plan.outputs = {"tool_calls": [name for name, _ in plan.answer.tool_calls]}
    for name, arguments in plan.answer.tool_calls:
        with run.node("tool", name) as tool:
            tool.inputs = arguments
            try:
                tool.outputs = {"result": web_search(str(arguments.get("query", "")))}
            except ToolError as exc:
                tool.error = str(exc)  # Dify's "continue on error": the run goes on
    with run.node("llm", "Answer") as answer:
        answer.answer = llm.complete(*model, "Answer from the notes: " + "; ".join(notes))
        answer.outputs = {"text": answer.answer.text}
    return answer.answer.text


@app.task(name=WORKFLOW_TASK)  # type: ignore[untyped-decorator]
def run_workflow(inputs: dict[str, Any], model_base_url: str, model_api_key: str) -> dict[str, Any]:
    """Run the demo workflow and hand its record to ops_trace."""
    run = recording.WorkflowRun("research", inputs)
    with run.node("start", "Start") as start:
        start.outputs = inputs
        topics = [str(t) for t in inputs.get("topics") or ["a", "b"]]
    text = _research(run, topics, (model_base_url, model_api_key))
    with run.node("end", "End") as end:
        end.outputs = {"answer": text}
    recording.submit(run.record({"answer": text}, recording.trace_id()))
    return {"answer": text}


@signals.worker_init.connect  # type: ignore[untyped-decorator]
def _configure_worker(**_: Any) -> None:
    from difytrace.demo import telemetry

    telemetry.setup("difytrace-demo-worker")
    # Built now so that the first task does not pay for the SDK's imports.
    llm.client(os.environ["DIFYTRACE_DEMO_MODEL_URL"], os.environ["DIFYTRACE_DEMO_MODEL_KEY"])


@signals.worker_ready.connect  # type: ignore[untyped-decorator]
def _announce_ready(**_: Any) -> None:
    ready = os.environ.get("DIFYTRACE_DEMO_READY_FILE")
    if ready:
        Path(ready).write_text(str(os.getpid()))


@signals.worker_shutdown.connect  # type: ignore[untyped-decorator]
def _flush(**_: Any) -> None:
    import difytrace

    difytrace.shutdown()
