"""The registry YAML as a model: attributes, groups, spans, metrics, provider refinements.

Reads both formats the conventions use (``groups:`` of semantic-conventions ≤ 1.4x,
``definition/2`` of semantic-conventions-genai) and resolves a definition's requirement levels
through ``extends``, ``ref_group`` and, for ``span_refinements`` / ``metric_refinements``, the
definition it refines. Checking telemetry against it is
:mod:`difytrace.testing.genai_validation`'s job.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

_OPERATION_SPANS = {
    "chat": "gen_ai.inference.client",
    "text_completion": "gen_ai.inference.client",
    "generate_content": "gen_ai.inference.client",
    "embeddings": "gen_ai.embeddings.client",
}


@dataclass
class AttributeDef:
    """One registry attribute."""

    name: str
    type: str  # string, int, double, boolean, string[], ..., or "enum"
    members: frozenset[str] = frozenset()
    enum_base: str = "string"
    deprecated: bool = False


@dataclass(frozen=True)
class Level:
    """A requirement level: ``required``, ``conditionally_required`` (with its condition
    text), ``recommended`` or ``opt_in``.

    >>> Level.parse({"conditionally_required": "If available."})
    Level(kind='conditionally_required', condition='If available.')
    """

    kind: str
    condition: str = ""

    @classmethod
    def parse(cls, raw: Any) -> Level | None:
        """The level of a YAML ``requirement_level`` (None when the reference gives none)."""
        if raw is None:
            return None
        if isinstance(raw, Mapping):
            ((kind, condition),) = raw.items()
            return cls(str(kind), str(condition or ""))
        return cls(str(raw))


_RECOMMENDED = Level("recommended")


@dataclass
class Group:
    """An attribute group, span or metric definition as parsed: its own references (a level
    of None defers to the parents), its parents, and kind / instrument / unit when it has them.
    """

    refs: dict[str, Level | None] = field(default_factory=dict)  # None: as the parent says
    parents: list[str] = field(default_factory=list)  # extends / ref_group / refined ids
    kind: str | None = None
    instrument: str | None = None
    unit: str | None = None


@dataclass
class RegistryModel:
    """Attributes, attribute groups, spans, metrics and refinements of one registry directory,
    resolved the way weaver resolves them; the checks live in
    :class:`~difytrace.testing.genai_validation.Registry`."""

    attributes: dict[str, AttributeDef] = field(default_factory=dict)
    groups: dict[str, Group] = field(default_factory=dict)
    spans: dict[str, str] = field(default_factory=dict)  # span type → group id
    metrics: dict[str, str] = field(default_factory=dict)  # metric name → group id
    #: (refined span type or metric name, provider name) → group id of the refinement
    refinements: dict[tuple[str, str], str] = field(default_factory=dict)

    @classmethod
    def load(cls, directory: str | Path) -> Self:
        """Parse every ``*.yaml`` under ``directory`` (both formats).

        >>> from difytrace.testing.genai import REGISTRY_DIR
        >>> registry = RegistryModel.load(REGISTRY_DIR / "v1.41")
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
            group = Group(
                kind=raw.get("span_kind"), instrument=raw.get("instrument"), unit=raw.get("unit")
            )
            if raw.get("extends"):
                group.parents.append(str(raw["extends"]))
            for attr in raw.get("attributes") or ():
                if "id" in attr and "type" in attr:
                    self._add_attribute(str(attr["id"]), attr)
                name = attr.get("ref") or attr.get("id")
                if name is not None:
                    group.refs[str(name)] = Level.parse(attr.get("requirement_level"))
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
        for key, prefix in (("span_refinements", "span"), ("metric_refinements", "metric")):
            for raw in doc.get(key) or ():
                # A refinement is its base definition with its own references layered on top.
                group = self._v2_group(raw)
                group.parents.insert(0, f"{prefix}.{raw['ref']}")
                gid = f"{prefix}.{raw['id']}"
                self.groups[gid] = group
                self.refinements[(str(raw["ref"]), _refined_provider(raw))] = gid

    @staticmethod
    def _v2_group(raw: Mapping[str, Any]) -> Group:
        group = Group()
        for attr in raw.get("attributes") or ():
            if "ref_group" in attr:
                group.parents.append(str(attr["ref_group"]))
            elif "ref" in attr:
                group.refs[str(attr["ref"])] = Level.parse(attr.get("requirement_level"))
        return group

    # --- resolution ---------------------------------------------------------------------
    def resolved(self, gid: str) -> dict[str, Level]:
        """Attribute → requirement level of a group with its parents (extends, ref_group,
        the definition it refines). A reference that states a level overrides its parents';
        one that states none keeps theirs (weaver's inheritance), else ``recommended``.

        >>> from difytrace.testing import genai_registry
        >>> genai_registry("latest").resolved("span.openai.inference.client")[
        ...     "gen_ai.request.model"]
        Level(kind='required', condition='')
        """
        group = self.groups.get(gid)
        if group is None:
            return {}
        out: dict[str, Level] = {}
        for parent in group.parents:
            out.update(self.resolved(parent))
        for name, level in group.refs.items():
            if level is not None:
                out[name] = level
            else:
                out.setdefault(name, _RECOMMENDED)
        return out

    def inherited(self, gid: str, field_name: str) -> str | None:
        """A group's span kind, instrument or unit, else the first of its parents'.

        >>> from difytrace.testing import genai_registry
        >>> genai_registry("latest").inherited("metric.openai.client.token.usage", "unit")
        '{token}'
        """
        group = self.groups.get(gid)
        if group is None:
            return None
        own: str | None = getattr(group, field_name)
        if own:
            return own
        return next(filter(None, (self.inherited(p, field_name) for p in group.parents)), None)

    def _refinement(self, base: str, provider: Any) -> str | None:
        """The refinement of ``base`` (a span type or metric name) for ``provider``."""
        return self.refinements.get((base, provider)) if isinstance(provider, str) else None

    def span_group(self, operation: Any, provider: Any) -> str | None:
        """The group a GenAI span is judged against: the provider's refinement of the span
        definition of ``operation`` when there is one, else that definition.

        >>> from difytrace.testing import genai_registry
        >>> genai_registry("latest").span_group("chat", "openai")
        'span.openai.inference.client'
        >>> genai_registry("latest").span_group("chat", "dify")
        'span.gen_ai.inference.client'
        """
        base = _OPERATION_SPANS.get(str(operation))
        if base is None:
            return None
        # v1.4x defines provider spans as span types of their own (span.openai.inference.client)
        own = self.spans.get(f"{provider}.{base.removeprefix('gen_ai.')}")
        return self._refinement(base, provider) or own or self.spans.get(base)

    def metric_group(self, name: str, provider: Any) -> str | None:
        """The group a metric point is judged against (the provider's refinement first).

        >>> from difytrace.testing import genai_registry
        >>> genai_registry("latest").metric_group("gen_ai.client.token.usage", "openai")
        'metric.openai.client.token.usage'
        """
        return self._refinement(name, provider) or self.metrics.get(name)


#: How refinements name their provider: "`gen_ai.provider.name` MUST be set to `"openai"`"
#: (span refinements' note), "when the provider is `openai`" (metric refinements' brief).
_PROVIDER_IN_PROSE = re.compile(
    r'gen_ai\.provider\.name` MUST be set to `"([^"`]+)"`|when the provider is `([^`]+)`'
)


def _refined_provider(raw: Mapping[str, Any]) -> str:
    """The provider a refinement applies to: as its text states it, else its id without the
    refined name's tail (``openai.inference.client`` refines ``gen_ai.inference.client``)."""
    match = _PROVIDER_IN_PROSE.search(f"{raw.get('note') or ''} {raw.get('brief') or ''}")
    if match:
        return match.group(1) or match.group(2)
    return str(raw["id"]).removesuffix("." + str(raw["ref"]).removeprefix("gen_ai."))
