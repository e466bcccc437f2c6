"""The finished LLM-application traces a Dify-style app hands to :func:`submit`.

Every record kind shares :class:`RecordBase` (ids, identity, timings, status, inputs/outputs)
and is told apart by ``kind``; :data:`Record` is the discriminated union and
:func:`parse_record` the one way to read a record back from JSON. ``schema_version`` is carried
in every payload so that a worker can refuse (and dead-letter) a payload it does not know.

Records are frozen: what was submitted is what gets delivered. Timestamps must carry a timezone
(Langfuse silently drops naive ones), numbers must be finite.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from difytrace.exceptions import RecordError

#: The payload format version written by this release.
SCHEMA_VERSION: Literal[1] = 1

Status = Literal["success", "error", "stopped"]
_Id = Annotated[str, Field(min_length=1, max_length=255)]
_HexTraceId = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class Usage(_Model):
    """Token usage of one model call (or the sum over a run)."""

    input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)
    total_tokens: int | None = Field(default=None, ge=0)

    @property
    def total(self) -> int:
        """``total_tokens`` when given, else input + output."""
        if self.total_tokens is not None:
            return self.total_tokens
        return self.input_tokens + self.output_tokens


class Cost(_Model):
    """Cost of one model call (or the sum over a run), in ``currency``."""

    input: float | None = Field(default=None, ge=0)
    output: float | None = Field(default=None, ge=0)
    total: float | None = Field(default=None, ge=0)
    currency: str = "USD"


class ParentRef(_Model):
    """Another record this one nests under (e.g. a tool call under its chat message).

    Ids are deterministic, so the child lands under its parent even when it is delivered first.
    Nesting is one level deep: the parent is a record without a parent of its own (LangSmith's
    ``dotted_order`` is built from the parent as a trace root). :meth:`RecordBase.as_parent`
    makes one from the parent record.
    """

    record_id: _Id
    start_time: AwareDatetime
    #: The trace id the parent went out under (its own ``trace_id``), when it had one: the
    #: child joins that trace even when its own live trace differs (or it has none).
    trace_id: _HexTraceId | None = None

    @field_validator("trace_id", mode="before")
    @classmethod
    def _lower_trace_id(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


class _Timed(_Model):
    start_time: AwareDatetime
    end_time: AwareDatetime | None = None
    status: Status = "success"
    error: str | None = None
    inputs: JsonValue = None
    outputs: JsonValue = None
    metadata: dict[str, JsonValue] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _end_after_start(self) -> _Timed:
        if self.end_time is not None and self.end_time < self.start_time:
            raise ValueError("end_time is before start_time")
        return self


class _ModelCall(_Model):
    model: str | None = None
    model_provider: str | None = None
    model_parameters: dict[str, JsonValue] = Field(default_factory=dict)
    usage: Usage | None = None
    cost: Cost | None = None
    completion_start_time: AwareDatetime | None = None


class RecordBase(_Timed):
    """What every record carries. ``record_id`` is the host's id (message id, run id, ...)."""

    schema_version: Literal[1] = SCHEMA_VERSION
    kind: str
    record_id: _Id
    tenant_id: _Id
    app_id: str | None = None
    user_id: str | None = None
    session_id: str | None = None
    name: str = Field(default="", max_length=1000)
    trace_id: _HexTraceId | None = None
    parent: ParentRef | None = None
    tags: tuple[str, ...] = ()
    environment: str | None = None
    version: str | None = None
    release: str | None = None

    @field_validator("trace_id", mode="before")
    @classmethod
    def _lower_trace_id(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    def as_parent(self) -> ParentRef:
        """The reference a child record puts in its ``parent`` to nest under this record."""
        return ParentRef(
            record_id=self.record_id, start_time=self.start_time, trace_id=self.trace_id
        )


class NodeExecution(_Timed, _ModelCall):
    """One executed node of a workflow run.

    ``parent_id`` names the execution this one runs inside (an iteration or loop node, or an
    agent); nodes without it hang under the workflow itself. The order of ``nodes`` is free.
    """

    id: _Id
    node_id: str = ""
    node_type: str = Field(default="node", max_length=100)
    title: str = ""
    parent_id: str | None = None
    index: int | None = None
    iteration_index: int | None = None
    loop_index: int | None = None
    parallel_id: str | None = None
    parallel_branch_id: str | None = None


class WorkflowRecord(RecordBase, _ModelCall):
    """A finished workflow run with its node executions."""

    kind: Literal["workflow"] = "workflow"
    workflow_id: str | None = None
    nodes: tuple[NodeExecution, ...] = ()

    @model_validator(mode="after")
    def _tree(self) -> WorkflowRecord:
        by_id = {n.id: n for n in self.nodes}
        if len(by_id) != len(self.nodes):
            raise ValueError("nodes: node execution ids must be unique")
        for node in self.nodes:
            seen = {node.id}
            cursor = node.parent_id
            while cursor is not None:
                if cursor not in by_id:
                    raise ValueError(f"nodes: {node.id!r} has unknown parent_id {cursor!r}")
                if cursor in seen:
                    raise ValueError(f"nodes: parent_id cycle through {cursor!r}")
                seen.add(cursor)
                cursor = by_id[cursor].parent_id
        return self


class MessageRecord(RecordBase, _ModelCall):
    """A chat / completion message: the user's query in, the answer out."""

    kind: Literal["message"] = "message"
    conversation_id: str | None = None


class ModerationRecord(RecordBase):
    """An input or output moderation check."""

    kind: Literal["moderation"] = "moderation"
    flagged: bool = False
    action: str | None = None
    preset_response: str | None = None


class SuggestedQuestionsRecord(RecordBase, _ModelCall):
    """Suggested follow-up questions generated after a message."""

    kind: Literal["suggested_questions"] = "suggested_questions"
    questions: tuple[str, ...] = ()


class RetrievedDocument(_Model):
    """One document a dataset retrieval returned."""

    content: str = ""
    score: float | None = None
    document_id: str | None = None
    dataset_id: str | None = None
    metadata: dict[str, JsonValue] = Field(default_factory=dict)


class DatasetRetrievalRecord(RecordBase):
    """A knowledge-base (dataset) retrieval."""

    kind: Literal["dataset_retrieval"] = "dataset_retrieval"
    documents: tuple[RetrievedDocument, ...] = ()


class ToolRecord(RecordBase):
    """One tool call."""

    kind: Literal["tool"] = "tool"
    tool_name: str = ""
    tool_config: dict[str, JsonValue] = Field(default_factory=dict)


class GenerateNameRecord(RecordBase, _ModelCall):
    """Generation of a conversation's name."""

    kind: Literal["generate_name"] = "generate_name"
    conversation_id: str | None = None


class PromptGenerationRecord(RecordBase, _ModelCall):
    """Generation of a prompt (Dify's prompt generator)."""

    kind: Literal["prompt_generation"] = "prompt_generation"


Record = Annotated[
    WorkflowRecord
    | MessageRecord
    | ModerationRecord
    | SuggestedQuestionsRecord
    | DatasetRetrievalRecord
    | ToolRecord
    | GenerateNameRecord
    | PromptGenerationRecord,
    Field(discriminator="kind"),
]

RECORD_KINDS: tuple[str, ...] = (
    "workflow",
    "message",
    "moderation",
    "suggested_questions",
    "dataset_retrieval",
    "tool",
    "generate_name",
    "prompt_generation",
)

# The union needs the config too: without it, floats inside JsonValue fields accept NaN.
_ADAPTER: TypeAdapter[Record] = TypeAdapter(Record, config=ConfigDict(allow_inf_nan=False))


def explain(exc: ValidationError) -> str:
    """The first five errors as ``where: what``, never quoting the input (it may be a secret)."""
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "record"
        if len(where) > 120:
            where = where[:60] + "…" + where[-40:]
        parts.append(f"{where}: {err['msg']}")
    more = exc.error_count() - 5
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def parse_record(data: bytes | str | dict[str, Any]) -> Record:
    """Validate a record from JSON text or a dict; raise :class:`RecordError` with the reasons.

    A payload of another ``schema_version`` is refused with a message naming both versions.
    """
    try:
        raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
        if isinstance(raw, bytes) and (b"NaN" in raw or b"Infinity" in raw):
            data = _loads(raw)  # the JSON parser would take NaN; the model must see it
            if not isinstance(data, dict):
                raise RecordError("invalid ops_trace record: expected a JSON object")
        if isinstance(data, dict):
            _check_version(data.get("schema_version", SCHEMA_VERSION))
            return _ADAPTER.validate_python(data)
        return _ADAPTER.validate_json(data)
    except ValidationError as exc:
        for err in exc.errors():
            if err["loc"][-1:] == ("schema_version",):
                _check_version(err.get("input"))
        raise RecordError(f"invalid ops_trace record: {explain(exc)}") from None


def _loads(raw: bytes) -> Any:
    import json

    try:
        return json.loads(raw)
    except ValueError as exc:
        raise RecordError(f"invalid ops_trace record: not JSON ({exc})") from None


def _check_version(version: object) -> None:
    if version != SCHEMA_VERSION:
        raise RecordError(
            f"unsupported ops_trace schema_version {version!r}; this release reads {SCHEMA_VERSION}"
        )


def to_payload(record: RecordBase) -> bytes:
    """The JSON the outbox stores: fields left at None are left out (they read back as their
    default, None), a third smaller for a workflow run, and less for the worker to parse.

    Raises ``ValueError`` for text that is not valid UTF-8 (a lone surrogate).
    """
    return record.__pydantic_serializer__.to_json(record, exclude_none=True)


def record_duration_s(record: RecordBase) -> float | None:
    """Wall time of the record in seconds, when it has ended."""
    end: datetime | None = record.end_time
    return None if end is None else (end - record.start_time).total_seconds()
