"""Check GenAI spans and metrics against semantic-conventions registry YAML.

Reads a directory of registry YAML in either format the conventions use (``groups:`` of
semantic-conventions ≤ 1.4x, or ``definition/2`` of semantic-conventions-genai), then
reports violations of captured telemetry::

    registry = Registry.load(REGISTRY_DIR / "v1.41")   # or genai_registry("v1.41")
    assert registry.check_spans(span_capture.spans()) == []
    assert registry.check_metrics(span_capture.metrics()) == []

:func:`difytrace.testing.assert_genai_valid` does both with a readable message.

What is checked, for spans carrying ``gen_ai.operation.name`` and metrics named ``gen_ai.*``:
every attribute of a convention namespace (``gen_ai.``, ``openai.``, ``server.``, ``error.``)
exists in the registry and is not deprecated, has the declared type, takes an enum member
where the attribute is an enum; required attributes (and ``server.port`` with
``server.address``) are present; span kind, metric instrument and unit match. Attributes of
other namespaces (``difytrace.``, ``langfuse.``, ``langsmith.``) are not the registry's to
judge. Needs PyYAML (difytrace's ``ops_trace`` and ``dev`` extras).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHECKED_PREFIXES = ("gen_ai.", "openai.", "server.", "error.")
#: Enums whose members are examples: the conventions ask for the library's own values
#: (``error.type``: the error code or the exception's name; ``_OTHER`` is only the fallback).
OPEN_ENUMS = frozenset({"error.type"})
_OPERATION_SPANS = {
    "chat": "gen_ai.inference.client",
    "text_completion": "gen_ai.inference.client",
    "generate_content": "gen_ai.inference.client",
    "embeddings": "gen_ai.embeddings.client",
}
_INSTRUMENT_KINDS = {
    "histogram": {"histogram", "exponential_histogram"},
    "counter": {"sum"},
    "updowncounter": {"sum"},
    "gauge": {"gauge"},
}


@dataclass
class AttributeDef:
    """One registry attribute."""

    name: str
    type: str  # string, int, double, boolean, string[], ..., or "enum"
    members: frozenset[str] = frozenset()
    enum_base: str = "string"
    deprecated: bool = False


@dataclass
class _Group:
    refs: dict[str, Any] = field(default_factory=dict)  # attribute → requirement level
    parents: list[str] = field(default_factory=list)  # extends / ref_group ids
    kind: str | None = None
    instrument: str | None = None
    unit: str | None = None


@dataclass
class Registry:
    """Attributes, attribute groups, spans and metrics of one registry directory."""

    attributes: dict[str, AttributeDef] = field(default_factory=dict)
    groups: dict[str, _Group] = field(default_factory=dict)
    spans: dict[str, str] = field(default_factory=dict)  # span type → group id
    metrics: dict[str, str] = field(default_factory=dict)  # metric name → group id

    @classmethod
    def load(cls, directory: str | Path) -> Registry:
        """Parse every ``*.yaml`` under ``directory`` (both formats).

        >>> from difytrace.testing.genai import REGISTRY_DIR
        >>> registry = Registry.load(REGISTRY_DIR / "v1.41")
        >>> registry.metrics["gen_ai.client.token.usage"]
        'metric.gen_ai.client.token.usage'
        """
        try:
            import yaml
        except ImportError:
            raise ImportError(
                "GenAI semconv validation reads the registry YAML with PyYAML, which is not "
                "installed: pip install 'difytrace[ops_trace]' (or pip install pyyaml)"
            ) from None

        files = sorted(Path(directory).rglob("*.yaml"))
        if not files:
            raise FileNotFoundError(f"no registry *.yaml under {directory}")
        registry = cls()
        for path in files:
            doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            registry._add_groups(doc.get("groups") or [])
            registry._add_v2(doc)
        return registry

    # --- parsing ------------------------------------------------------------------------
    def _add_attribute(self, name: str, raw: Mapping[str, Any]) -> None:
        kind = raw.get("type")
        deprecated = bool(raw.get("deprecated"))
        if isinstance(kind, Mapping):
            listed: list[dict[str, Any]] = list(kind.get("members") or ())
            members = frozenset(str(m.get("value")) for m in listed)
            sample = listed[0].get("value") if listed else None
            base = "int" if isinstance(sample, int) else "string"
            self.attributes[name] = AttributeDef(name, "enum", members, base, deprecated)
        else:
            self.attributes[name] = AttributeDef(name, str(kind), deprecated=deprecated)

    def _add_groups(self, groups: Iterable[Mapping[str, Any]]) -> None:
        for raw in groups:
            group = _Group(
                kind=raw.get("span_kind"), instrument=raw.get("instrument"), unit=raw.get("unit")
            )
            if raw.get("extends"):
                group.parents.append(str(raw["extends"]))
            for attr in raw.get("attributes") or ():
                if "id" in attr and "type" in attr:
                    self._add_attribute(str(attr["id"]), attr)
                    group.refs[str(attr["id"])] = attr.get("requirement_level", "recommended")
                elif "ref" in attr:
                    group.refs[str(attr["ref"])] = attr.get("requirement_level", "recommended")
            gid = str(raw.get("id"))
            self.groups[gid] = group
            if raw.get("type") == "span":
                self.spans[gid.removeprefix("span.")] = gid
            if raw.get("type") == "metric" and raw.get("metric_name"):
                self.metrics[str(raw["metric_name"])] = gid

    def _add_v2(self, doc: Mapping[str, Any]) -> None:
        for attr in doc.get("attributes") or ():
            if "key" in attr:
                self._add_attribute(str(attr["key"]), attr)
        for raw in doc.get("attribute_groups") or ():
            self.groups[str(raw["id"])] = self._v2_group(raw)
        for raw in doc.get("spans") or ():
            gid = f"span.{raw['type']}"
            self.groups[gid] = self._v2_group(raw)
            self.groups[gid].kind = raw.get("kind")
            self.spans[str(raw["type"])] = gid
        for raw in doc.get("metrics") or ():
            gid = f"metric.{raw['name']}"
            group = self._v2_group(raw)
            group.instrument, group.unit = raw.get("instrument"), raw.get("unit")
            self.groups[gid] = group
            self.metrics[str(raw["name"])] = gid

    @staticmethod
    def _v2_group(raw: Mapping[str, Any]) -> _Group:
        group = _Group()
        for attr in raw.get("attributes") or ():
            if "ref_group" in attr:
                group.parents.append(str(attr["ref_group"]))
            elif "ref" in attr:
                group.refs[str(attr["ref"])] = attr.get("requirement_level", "recommended")
        return group

    # --- resolution ---------------------------------------------------------------------
    def resolved(self, gid: str) -> dict[str, Any]:
        """Attribute → requirement level of a group, its parents included (own refs win)."""
        group = self.groups.get(gid)
        if group is None:
            return {}
        out: dict[str, Any] = {}
        for parent in group.parents:
            out.update(self.resolved(parent))
        out.update(group.refs)
        return out

    def _span_group(self, operation: Any, provider: Any) -> str | None:
        base = _OPERATION_SPANS.get(str(operation))
        if base is None:
            return None
        specific = base.replace("gen_ai.", f"{provider}.", 1)
        return self.spans.get(specific) or self.spans.get(base)

    # --- checks -------------------------------------------------------------------------
    def check_attributes(self, where: str, attributes: Mapping[str, Any]) -> list[str]:
        """Names, deprecation, types and enum values of convention attributes."""
        problems: list[str] = []
        for key, value in attributes.items():
            if not key.startswith(CHECKED_PREFIXES):
                continue
            spec = self.attributes.get(key)
            if spec is None:
                problems.append(f"{where}: {key} is not in the registry")
            elif spec.deprecated:
                problems.append(f"{where}: {key} is deprecated")
            elif not _type_ok(spec, value):
                problems.append(f"{where}: {key}={value!r} is not of type {spec.type}")
            elif (
                spec.type == "enum"
                and key not in OPEN_ENUMS
                and spec.enum_base == "string"
                and spec.members
                and (str(value) not in spec.members)
            ):
                problems.append(f"{where}: {key}={value!r} is not one of {sorted(spec.members)}")
        return problems

    def _required(
        self, where: str, levels: Mapping[str, Any], attributes: Mapping[str, Any]
    ) -> list[str]:
        problems = [
            f"{where}: required {name} missing"
            for name, level in levels.items()
            if level == "required" and name not in attributes
        ]
        if (
            "server.address" in attributes
            and "server.port" in levels
            and ("server.port" not in attributes)
        ):
            problems.append(f"{where}: server.port missing although server.address is set")
        return problems

    def check_spans(self, spans: Iterable[Any]) -> list[str]:
        """Violations of every GenAI span (objects with name, kind and attributes)."""
        problems: list[str] = []
        for span in spans:
            attrs = dict(span.attributes)
            operation = attrs.get("gen_ai.operation.name")
            if operation is None:
                continue
            where = f"span {span.name!r}"
            problems += self.check_attributes(where, attrs)
            gid = self._span_group(operation, attrs.get("gen_ai.provider.name"))
            if gid is None:
                problems.append(f"{where}: no span definition for operation {operation!r}")
                continue
            problems += self._required(where, self.resolved(gid), attrs)
            kind = self.groups[gid].kind
            if kind and str(span.kind).lower() != kind.lower():
                problems.append(f"{where}: kind {span.kind} but the conventions say {kind}")
        return problems

    def check_metrics(self, metrics: Mapping[str, Iterable[Any]]) -> list[str]:
        """Violations of every ``gen_ai.*`` metric (``{name: [points]}`` as the capture gives)."""
        problems: list[str] = []
        for name, points in metrics.items():
            if not name.startswith("gen_ai."):
                continue
            gid = self.metrics.get(name)
            if gid is None:
                problems.append(f"metric {name}: not in the registry")
                continue
            group, levels = self.groups[gid], self.resolved(gid)
            for point in points:
                where = f"metric {name} {dict(point.attributes)}"
                if group.instrument and point.kind not in _INSTRUMENT_KINDS.get(
                    group.instrument, {group.instrument}
                ):
                    problems.append(
                        f"{where}: a {point.kind}, the conventions say {group.instrument}"
                    )
                if point.unit and group.unit and point.unit != group.unit:
                    problems.append(f"{where}: unit {point.unit!r}, expected {group.unit!r}")
                problems += self.check_attributes(where, point.attributes)
                problems += self._required(where, levels, point.attributes)
                problems += [
                    f"{where}: {key} is not an attribute of this metric"
                    for key in point.attributes
                    if key.startswith(CHECKED_PREFIXES) and key not in levels
                ]
        return problems


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
