"""Reading fields of provider objects without pydantic's raising ``__getattr__``: the same
answers as ``getattr(obj, name, None)`` for real OpenAI and litellm objects, dicts, mappings,
plain objects, pydantic extras, properties and fields deleted from a model."""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import pydantic
import pytest
from openai.types import CompletionUsage
from openai.types.chat import ChatCompletionChunk

from difytrace.instrumentation.llm.fields import field, fields_of

with warnings.catch_warnings():  # litellm's own, at import (see test_litellm.py)
    warnings.simplefilter("ignore")
    litellm_types = pytest.importorskip("litellm.types.utils")

NAMES = ("prompt_tokens", "cache_read_input_tokens", "cached_tokens", "content", "missing")


class Extra(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="allow")
    declared: int = 1

    @property
    def computed(self) -> str:
        return "from a property"


class Strict(pydantic.BaseModel):
    declared: int = 2


class Plain:
    def __init__(self) -> None:
        self.prompt_tokens = 5


class ReadOnly(Mapping[str, Any]):
    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


def samples() -> list[Any]:
    with warnings.catch_warnings():  # litellm builds its pydantic schemas on first use
        warnings.simplefilter("ignore")
        return _samples()


def _samples() -> list[Any]:
    deleted = Extra(declared=3, cache_read_input_tokens=7)
    del deleted.declared  # as litellm does with fields OpenAI omits
    return [
        CompletionUsage(prompt_tokens=3, completion_tokens=4, total_tokens=7),
        CompletionUsage.model_validate(  # an OpenAI-compatible server's extra field
            {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7, "cached_tokens": 9}
        ),
        litellm_types.Usage(prompt_tokens=5, completion_tokens=3, cache_read_input_tokens=2),
        litellm_types.Delta(content="hi"),
        ChatCompletionChunk.model_validate(
            {
                "id": "c",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "m",
                "choices": [{"index": 0, "delta": {"content": "x"}}],
            }
        ),
        Extra(content="text", prompt_tokens=1),
        deleted,
        Strict(),
        Plain(),
        {"prompt_tokens": 8, "content": None},
        ReadOnly({"cached_tokens": 4}),
        None,
    ]


def expected(obj: Any, name: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


@pytest.mark.parametrize("obj", samples(), ids=lambda o: type(o).__name__)
@pytest.mark.parametrize("name", [*NAMES, "declared", "computed", "model_extra"])
def test_field_answers_as_getattr_does(obj: Any, name: str) -> None:
    assert field(obj, name) == expected(obj, name)


@pytest.mark.parametrize("obj", samples(), ids=lambda o: type(o).__name__)
def test_fields_of_answers_as_getattr_does(obj: Any) -> None:
    names = frozenset(NAMES)
    fields = fields_of(obj, names)
    for name in names:
        assert fields.get(name) == expected(obj, name), name


def test_fields_of_a_class_defining_a_name_read_falls_back_to_attributes() -> None:
    model = Extra(computed_source=1)
    assert fields_of(model, frozenset({"computed"})).get("computed") == "from a property"
    assert fields_of(model, frozenset({"declared"})).get("declared") == 1
