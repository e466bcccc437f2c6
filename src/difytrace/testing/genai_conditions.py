"""The conditions of ``conditionally_required`` GenAI attributes that a program can decide.

The registry YAML says *which* attribute is conditionally required in which span or metric,
and states the condition in prose (``"If the operation ended in an error."``). This module
holds only the evaluators of those conditions: each :class:`Condition` names the attribute,
matches the prose of the condition, and decides it from :class:`Facts` about one span or
metric point. The validator asks :func:`decide` for every conditionally required attribute
the YAML lists; conditions nothing here matches are not checked, and :data:`UNDECIDABLE`
says why for the ones the GenAI client spans and metrics carry (a test keeps that list
complete).

Facts that need the request (``seed``, ``n``, an output format, ``service_tier``, ``stream``)
come from the request body as the provider received it (OpenAI wire names), when the caller
passes it; without it those conditions are skipped.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Facts:
    """What a condition may look at for one span or metric point.

    ``failed``: the span status is ERROR (None for a metric point: a point cannot say);
    ``first_chunk``: the span carries a time-to-first-chunk marker (None for a point);
    ``request``: the request body as sent (OpenAI wire names), or None when not given.

    >>> Facts({"server.address": "api.openai.com"}).attributes["server.address"]
    'api.openai.com'
    """

    attributes: Mapping[str, Any]
    failed: bool | None = None
    first_chunk: bool | None = None
    request: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Verdict:
    """Whether the attribute is required here, and the fact that decided it (for messages).

    >>> Verdict(True, "the span status is ERROR").reason
    'the span status is ERROR'
    """

    required: bool
    reason: str


Evaluator = Callable[[Facts], Verdict | None]


@dataclass(frozen=True)
class Condition:
    """An evaluator for ``attribute`` where the YAML's condition text matches ``pattern``.

    ``exclusive``: the condition is "if and only if": when it does not hold, the attribute
    must not be set (to a true value) either.

    >>> condition = CONDITIONS[0]
    >>> condition.attribute, condition.evaluate(Facts({}, failed=True))
    ('error.type', Verdict(required=True, reason='the span status is ERROR'))
    """

    attribute: str
    pattern: str
    evaluate: Evaluator
    exclusive: bool = False

    def matches(self, attribute: str, condition: str) -> bool:
        """Whether this evaluator decides ``attribute`` under the YAML's ``condition`` text.

        >>> CONDITIONS[0].matches("error.type", "if the operation ended in an error")
        True
        """
        return attribute == self.attribute and re.search(self.pattern, condition, re.I) is not None


def operation_failed(facts: Facts) -> Verdict | None:
    """error.type: required when the span ended with status ERROR.

    >>> operation_failed(Facts({}, failed=False))
    Verdict(required=False, reason='the span status is not ERROR')
    """
    if facts.failed is None:
        return None
    if facts.failed:
        return Verdict(True, "the span status is ERROR")
    return Verdict(False, "the span status is not ERROR")


def streamed(facts: Facts) -> Verdict | None:
    """gen_ai.request.stream: iff the request streams; the request body decides, else a
    first chunk (time to first chunk) proves a stream. Without either: undecided.

    >>> streamed(Facts({}, first_chunk=True)).reason
    'a first chunk was received'
    >>> streamed(Facts({}, request={"model": "m"}))
    Verdict(required=False, reason='the request is not streaming')
    """
    if facts.request is not None:
        if facts.request.get("stream") is True:
            return Verdict(True, "the request set stream=true")
        return Verdict(False, "the request is not streaming")
    if facts.first_chunk:
        return Verdict(True, "a first chunk was received")
    return None


def server_address_set(facts: Facts) -> Verdict | None:
    """server.port: required with server.address.

    >>> server_address_set(Facts({"server.address": "h"}))
    Verdict(required=True, reason='server.address is set')
    """
    present = "server.address" in facts.attributes
    return Verdict(present, "server.address is set" if present else "no server.address")


def choice_count_not_one(facts: Facts) -> Verdict | None:
    """gen_ai.request.choice.count: required when the request asked for ``n`` ≠ 1.

    >>> choice_count_not_one(Facts({}, request={"n": 2}))
    Verdict(required=True, reason='the request set n=2')
    """
    if facts.request is None:
        return None
    n = facts.request.get("n")
    if n is not None and n != 1:
        return Verdict(True, f"the request set n={n!r}")
    return Verdict(False, "the request did not set n other than 1")


def seed_given(facts: Facts) -> Verdict | None:
    """gen_ai.request.seed: required when the request set a seed.

    >>> seed_given(Facts({}, request={"seed": 7}))
    Verdict(required=True, reason='the request set seed=7')
    """
    if facts.request is None:
        return None
    seed = facts.request.get("seed")
    if seed is None:
        return Verdict(False, "the request set no seed")
    return Verdict(True, f"the request set seed={seed!r}")


def output_format_given(facts: Facts) -> Verdict | None:
    """gen_ai.output.type: required when the request set an output format (chat
    ``response_format``, responses ``text.format``).

    >>> output_format_given(Facts({}, request={"text": {"format": {"type": "json_schema"}}}))
    Verdict(required=True, reason='the request set an output format')
    """
    if facts.request is None:
        return None
    text = facts.request.get("text")
    nested = text.get("format") if isinstance(text, Mapping) else None
    if facts.request.get("response_format") is not None or nested is not None:
        return Verdict(True, "the request set an output format")
    return Verdict(False, "the request set no output format")


def service_tier_given(facts: Facts) -> Verdict | None:
    """openai.request.service_tier: required when the request set a tier other than auto.

    >>> service_tier_given(Facts({}, request={"service_tier": "flex"}))
    Verdict(required=True, reason="the request set service_tier='flex'")
    """
    if facts.request is None:
        return None
    tier = facts.request.get("service_tier")
    if tier is None or tier == "auto":
        return Verdict(False, "the request set no service_tier other than auto")
    return Verdict(True, f"the request set service_tier={tier!r}")


#: Every condition decided here; the pattern matches the YAML's prose in both registries.
CONDITIONS: tuple[Condition, ...] = (
    Condition("error.type", r"operation ended in an error", operation_failed),
    Condition("gen_ai.request.stream", r"only if the request is streaming", streamed, True),
    Condition("server.port", r"`server\.address` is set", server_address_set),
    Condition("gen_ai.request.choice.count", r"in the request, and !=\s*1", choice_count_not_one),
    Condition("gen_ai.request.seed", r"request includes a seed", seed_given),
    Condition("gen_ai.output.type", r"request includes an output format", output_format_given),
    Condition(
        "openai.request.service_tier",
        r"request includes a service_tier and the value is not 'auto'",
        service_tier_given,
    ),
)

#: (attribute, pattern of the condition, why it is not checked) for the conditionally
#: required attributes of GenAI client spans and metrics that no evaluator decides.
UNDECIDABLE: tuple[tuple[str, str, str], ...] = (
    ("gen_ai.request.model", r"if available", "whether a model was named is not recorded"),
    ("gen_ai.request.top_k", r"if applicable", "applicability depends on the provider's API"),
    ("gen_ai.conversation.id", r"when available", "only the application knows a conversation"),
    ("gen_ai.prompt.name", r"named prompt template", "templates are the application's"),
    ("gen_ai.prompt.version", r"version is available", "templates are the application's"),
    (
        "openai.response.service_tier",
        r"response was received and includes a service_tier",
        "needs the response body, which the validator is not given",
    ),
    (
        "server.port",
        r"if not default \(443\)",
        "an unreported port cannot be told from the default",
    ),
    (
        "gen_ai.provider.name",
        r"involves a call to a GenAI provider",
        "every client call does; the metric's own check asks for it where it is required",
    ),
    (
        "error.type",
        r"operation ended in an error",
        "on a metric point: decided against the failed spans instead (see the validator)",
    ),
)


def decide(attribute: str, condition: str, facts: Facts) -> tuple[Condition, Verdict] | None:
    """The evaluator matching ``attribute`` and the YAML's ``condition`` text, and its verdict
    on ``facts``; None when nothing here decides it.

    >>> decide("server.port", "If `server.address` is set.", Facts({}))[1].required
    False
    >>> decide("gen_ai.conversation.id", "When available.", Facts({})) is None
    True
    """
    for candidate in CONDITIONS:
        if candidate.matches(attribute, condition):
            verdict = candidate.evaluate(facts)
            return None if verdict is None else (candidate, verdict)
    return None


def undecidable_reason(attribute: str, condition: str) -> str | None:
    """Why a condition is not checked, when it is a known undecidable one.

    >>> undecidable_reason("gen_ai.conversation.id", "When available.")
    'only the application knows a conversation'
    """
    for name, pattern, reason in UNDECIDABLE:
        if name == attribute and re.search(pattern, condition, re.I):
            return reason
    return None
