"""Durable, per-app delivery of LLM application traces (Langfuse, LangSmith, OTLP).

The app builds a record (:mod:`difytrace.ops_trace.records`) when a workflow run, a message, a
tool call, ... finishes and calls :func:`submit`; workers on the ``ops_trace`` queue deliver it
to every destination configured for its tenant and app, at least once, with deterministic ids.
"""

from __future__ import annotations

from difytrace.ops_trace.outbox import configure, flush, shutdown, submit
from difytrace.ops_trace.records import (
    Cost,
    DatasetRetrievalRecord,
    GenerateNameRecord,
    MessageRecord,
    ModerationRecord,
    NodeExecution,
    ParentRef,
    PromptGenerationRecord,
    Record,
    RetrievedDocument,
    SuggestedQuestionsRecord,
    ToolRecord,
    Usage,
    WorkflowRecord,
    parse_record,
)

__all__ = [
    "Cost",
    "DatasetRetrievalRecord",
    "GenerateNameRecord",
    "MessageRecord",
    "ModerationRecord",
    "NodeExecution",
    "ParentRef",
    "PromptGenerationRecord",
    "Record",
    "RetrievedDocument",
    "SuggestedQuestionsRecord",
    "ToolRecord",
    "Usage",
    "WorkflowRecord",
    "configure",
    "flush",
    "parse_record",
    "shutdown",
    "submit",
]
