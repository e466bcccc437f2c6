"""The public surface of difytrace.ops_trace, pinned."""

from __future__ import annotations

from difytrace import ops_trace


def test_public_names() -> None:
    assert sorted(ops_trace.__all__) == [
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
    for name in ops_trace.__all__:
        assert getattr(ops_trace, name).__doc__
