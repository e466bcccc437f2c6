"""Check GenAI spans and metrics against semantic-conventions registry YAML.

Reads a directory of registry YAML in either format the conventions use (``groups:`` of
semantic-conventions ≤ 1.4x, or ``definition/2`` of semantic-conventions-genai, with its
``span_refinements`` and ``metric_refinements``), then reports findings on captured
telemetry::

    registry = Registry.load(REGISTRY_DIR / "v1.41")   # or genai_registry("v1.41")
    assert registry.check_spans(span_capture.spans()) == []
    assert registry.check_metrics(span_capture.metrics(), spans=span_capture.spans()) == []

:func:`difytrace.testing.assert_genai_valid` does both with a readable message.

What is checked, for spans carrying ``gen_ai.operation.name`` and metrics named ``gen_ai.*``,
against the span or metric definition — or its provider refinement (``openai.inference.client``
when ``gen_ai.provider.name`` is ``openai``) layered on it: every attribute of a convention
namespace (``gen_ai.``, ``openai.``, ``server.``, ``error.``) exists in the registry and is not
deprecated, has the declared type, and (metrics) belongs to the metric; required attributes are
present; conditionally required ones too where :mod:`~difytrace.testing.genai_conditions` can
decide the condition (``error.type`` on failed spans and on the duration points of failed calls,
``gen_ai.request.stream`` iff streamed, ``server.port`` with ``server.address``, and, given the
request bodies, ``choice.count``, ``seed``, ``output.type``, ``openai.request.service_tier``);
span kind, metric instrument and unit match.

Enums are open: their members are the well-known values, and instrumentations may use others
(semantic conventions, "Defining enum attribute members"); weaver's live check reports an
undocumented value as ``information``, not as a violation. So does this validator: a
:class:`Finding` of level ``information``, which never fails a check. Attributes of other
namespaces (``difytrace.``, ``langfuse.``, ``langsmith.``) are not the registry's to judge.
Needs PyYAML (difytrace's ``ops_trace`` and ``dev`` extras).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from difytrace.testing import genai_conditions as conditions
from difytrace.testing._genai_registry import AttributeDef, Level, RegistryModel

__all__ = ["AttributeDef", "Finding", "Level", "Registry"]

CHECKED_PREFIXES = ("gen_ai.", "openai.", "server.", "error.")
#: Enums whose members are only examples: the conventions ask for the library's own values
#: (``error.type``: the error code or the exception's name), so another value is not even noted.
OPEN_ENUMS = frozenset({"error.type"})
_INSTRUMENT_KINDS = {
    "histogram": {"histogram", "exponential_histogram"},
    "counter": {"sum"},
    "updowncounter": {"sum"},
    "gauge": {"gauge"},
}
_FIRST_CHUNK_MARKERS = ("gen_ai.response.time_to_first_chunk",)


@dataclass(frozen=True)
class Finding:
    """One result: a ``violation`` fails validation, ``information`` never does.

    >>> Finding("information", "span 'chat m': ...").level
    'information'
    """

    level: Literal["violation", "information"]
    message: str


@dataclass
class Registry(RegistryModel):
    """A parsed registry (:meth:`load`) and the checks of GenAI telemetry against it."""

    def check_attributes(self, where: str, attributes: Mapping[str, Any]) -> list[str]:
        """Violations of names, deprecation and types of convention attributes.

        >>> from difytrace.testing import genai_registry
        >>> genai_registry("v1.41").check_attributes("span 'x'", {"gen_ai.usage.input_tokens": "3"})
        ["span 'x': gen_ai.usage.input_tokens='3' is not of type int"]
        """
        return _violations(self.attribute_findings(where, attributes))

    def attribute_findings(self, where: str, attributes: Mapping[str, Any]) -> list[Finding]:
        """Findings on convention attributes; an undocumented enum value is information.

        >>> from difytrace.testing import genai_registry
        >>> genai_registry("latest").attribute_findings(
        ...     "span 'x'", {"openai.request.service_tier": "flex"})[0].level
        'information'
        """
        found: list[Finding] = []
        for key, value in attributes.items():
            if not key.startswith(CHECKED_PREFIXES):
                continue
            spec = self.attributes.get(key)
            if spec is None:
                found.append(_violation(f"{where}: {key} is not in the registry"))
            elif spec.deprecated:
                found.append(_violation(f"{where}: {key} is deprecated"))
            elif not _type_ok(spec, value):
                found.append(_violation(f"{where}: {key}={value!r} is not of type {spec.type}"))
            elif _undocumented_member(spec, value):
                found.append(
                    Finding(
                        "information",
                        f"{where}: {key}={value!r} is not a documented value "
                        f"{sorted(spec.members)} (enums are open: not a violation)",
                    )
                )
        return found

    def _requirement_findings(
        self, where: str, levels: Mapping[str, Level], facts: conditions.Facts
    ) -> list[Finding]:
        attributes = facts.attributes
        found: list[Finding] = []
        for name, level in levels.items():
            if level.kind == "required" and name not in attributes:
                found.append(_violation(f"{where}: required {name} missing"))
            if level.kind != "conditionally_required":
                continue
            decided = conditions.decide(name, level.condition, facts)
            if decided is None:
                continue
            condition, verdict = decided
            if verdict.required and name not in attributes:
                found.append(_violation(f"{where}: {name} missing although {verdict.reason}"))
            elif condition.exclusive and not verdict.required and attributes.get(name):
                value = attributes[name]
                found.append(_violation(f"{where}: {name}={value!r} although {verdict.reason}"))
        return found

    def span_findings(self, spans: Iterable[Any], *, requests: Any = None) -> list[Finding]:
        """Findings on every GenAI span (objects with name, kind, attributes, and optionally
        status_code, events, start_time_ns as :class:`~difytrace.testing.CapturedSpan`).

        ``requests``: the request body of each GenAI span (a mapping in OpenAI wire names, an
        object with ``.body`` such as ``openai_server.requests``, or None), in the order the
        spans started; it decides the conditions that depend on the request. Example::

            registry.span_findings(span_capture.spans(), requests=openai_server.requests)
        """
        genai = [s for s in spans if "gen_ai.operation.name" in s.attributes]
        bodies = _request_bodies(genai, requests)
        found: list[Finding] = []
        for span in genai:
            found += self._span_findings(span, bodies.get(id(span)))
        return found

    def _span_findings(self, span: Any, request: Mapping[str, Any] | None) -> list[Finding]:
        attrs = dict(span.attributes)
        operation = attrs["gen_ai.operation.name"]
        where = f"span {span.name!r}"
        found = self.attribute_findings(where, attrs)
        gid = self.span_group(operation, attrs.get("gen_ai.provider.name"))
        if gid is None:
            found.append(_violation(f"{where}: no span definition for operation {operation!r}"))
            return found
        facts = conditions.Facts(
            attrs,
            failed=_failed(span),
            first_chunk=any(m in attrs for m in _FIRST_CHUNK_MARKERS),
            request=request,
        )
        found += self._requirement_findings(where, self.resolved(gid), facts)
        kind = self.inherited(gid, "kind")
        if kind and str(span.kind).lower() != kind.lower():
            found.append(_violation(f"{where}: kind {span.kind} but the conventions say {kind}"))
        return found

    def check_spans(self, spans: Iterable[Any], *, requests: Any = None) -> list[str]:
        """Violations of every GenAI span (see :meth:`span_findings`).

        >>> from difytrace.testing import genai_registry
        >>> genai_registry("v1.41").check_spans([])
        []
        """
        return _violations(self.span_findings(spans, requests=requests))

    def metric_findings(
        self, metrics: Mapping[str, Iterable[Any]], *, spans: Iterable[Any] = ()
    ) -> list[Finding]:
        """Findings on every ``gen_ai.*`` metric (``{name: [points]}`` as the capture gives).

        With the ``spans`` of the same calls, every failed GenAI span must have its
        ``error.type`` on a point of each metric that conditionally requires ``error.type``
        (``gen_ai.client.operation.duration``), since a point alone cannot tell it failed.
        Example::

            registry.metric_findings(span_capture.metrics(), spans=span_capture.spans())
        """
        found: list[Finding] = []
        for name, points in metrics.items():
            if name.startswith("gen_ai."):
                found += self._metric_findings(name, list(points))
        found += self._failed_calls_in_metrics(metrics, spans)
        return found

    def _metric_findings(self, name: str, points: list[Any]) -> list[Finding]:
        if name not in self.metrics:
            return [_violation(f"metric {name}: not in the registry")]
        found: list[Finding] = []
        for point in points:
            gid = self.metric_group(name, point.attributes.get("gen_ai.provider.name")) or ""
            instrument, unit = self.inherited(gid, "instrument"), self.inherited(gid, "unit")
            levels = self.resolved(gid)
            where = f"metric {name} {dict(point.attributes)}"
            if instrument and point.kind not in _INSTRUMENT_KINDS.get(instrument, {instrument}):
                found.append(
                    _violation(f"{where}: a {point.kind}, the conventions say {instrument}")
                )
            if point.unit and unit and point.unit != unit:
                found.append(_violation(f"{where}: unit {point.unit!r}, expected {unit!r}"))
            found += self.attribute_findings(where, point.attributes)
            found += self._requirement_findings(where, levels, conditions.Facts(point.attributes))
            found += [
                _violation(f"{where}: {key} is not an attribute of this metric")
                for key in point.attributes
                if key.startswith(CHECKED_PREFIXES) and key not in levels
            ]
        return found

    def _failed_calls_in_metrics(
        self, metrics: Mapping[str, Iterable[Any]], spans: Iterable[Any]
    ) -> list[Finding]:
        failed = [s for s in spans if "gen_ai.operation.name" in s.attributes and _failed(s)]
        found: list[Finding] = []
        for name in self._metrics_requiring_error_type(metrics):
            points = list(metrics[name])
            for span in failed:
                if not any(_point_of_failed_call(p.attributes, span.attributes) for p in points):
                    error = span.attributes.get("error.type")
                    found.append(
                        _violation(
                            f"metric {name}: no point with error.type for the failed span "
                            f"{span.name!r} (error.type={error!r})"
                        )
                    )
        return found

    def _metrics_requiring_error_type(self, metrics: Mapping[str, Iterable[Any]]) -> list[str]:
        failure = conditions.Facts({}, failed=True)
        named = []
        for name in metrics:
            level = self.resolved(self.metrics.get(name, "")).get("error.type")
            if level is not None and level.kind == "conditionally_required":
                decided = conditions.decide("error.type", level.condition, failure)
                if decided is not None and decided[1].required:
                    named.append(name)
        return named

    def check_metrics(
        self, metrics: Mapping[str, Iterable[Any]], *, spans: Iterable[Any] = ()
    ) -> list[str]:
        """Violations of every ``gen_ai.*`` metric (see :meth:`metric_findings`).

        >>> from difytrace.testing import genai_registry
        >>> genai_registry("v1.41").check_metrics({"gen_ai.client.tokens": []})
        ['metric gen_ai.client.tokens: not in the registry']
        """
        return _violations(self.metric_findings(metrics, spans=spans))

    def findings(
        self,
        spans: Iterable[Any],
        metrics: Mapping[str, Iterable[Any]] | None = None,
        *,
        requests: Any = None,
    ) -> list[Finding]:
        """Every finding on ``spans`` and ``metrics``, violations and information.

        >>> from difytrace.testing import genai_registry
        >>> genai_registry("latest").findings([], {})
        []
        """
        spans = list(spans)
        return self.span_findings(spans, requests=requests) + self.metric_findings(
            metrics or {}, spans=spans
        )


def _violation(message: str) -> Finding:
    return Finding("violation", message)


def _violations(found: Iterable[Finding]) -> list[str]:
    return [f.message for f in found if f.level == "violation"]


def _failed(span: Any) -> bool:
    return str(getattr(span, "status_code", "UNSET")).upper().endswith("ERROR")


def _point_of_failed_call(point: Mapping[str, Any], span: Mapping[str, Any]) -> bool:
    if "error.type" not in point:
        return False
    keys = ("gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model", "error.type")
    return all(point.get(k) == span[k] for k in keys if k in span)


def _request_bodies(spans: Sequence[Any], requests: Any) -> dict[int, Mapping[str, Any]]:
    """id(span) → request body, pairing ``requests`` with the spans in start order."""
    if requests is None:
        return {}
    listed = list(requests)
    if len(listed) != len(spans):
        raise ValueError(
            f"requests: {len(listed)} given for {len(spans)} GenAI span(s); pass one per GenAI "
            "span, in the order the spans started (None for a span without a request)"
        )
    ordered = sorted(spans, key=lambda s: getattr(s, "start_time_ns", 0))
    bodies: dict[int, Mapping[str, Any]] = {}
    for span, request in zip(ordered, listed, strict=True):
        body = getattr(request, "body", request)
        if body is not None:
            if not isinstance(body, Mapping):
                raise ValueError(f"requests: {body!r} is not a request body (a mapping)")
            bodies[id(span)] = body
    return bodies


def _undocumented_member(spec: AttributeDef, value: Any) -> bool:
    return (
        spec.type == "enum"
        and spec.name not in OPEN_ENUMS
        and spec.enum_base == "string"
        and bool(spec.members)
        and str(value) not in spec.members
    )


def _type_ok(spec: AttributeDef, value: Any) -> bool:
    kind = spec.enum_base if spec.type == "enum" else spec.type
    if kind.endswith("[]"):
        return isinstance(value, tuple | list) and all(_scalar_ok(kind[:-2], v) for v in value)
    return _scalar_ok(kind, value)


def _scalar_ok(kind: str, value: Any) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "double":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return True  # any / template types: not judged here
