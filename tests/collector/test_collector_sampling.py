"""What the profiles do with spans, checked without a collector binary: span metrics see every
span (computed before any sampling or filtering), and the tail-sampling policies keep what the
README promises, on the attribute names difytrace really emits.

The OTTL conditions are read out of the configs and evaluated here for the one shape they use
(``attributes["K"] != nil and attributes["K"] >= N``), so a changed threshold or attribute name
is tested, and a condition of another shape fails until this evaluator learns it.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Any

import pytest
from collector_support import COLLECTOR, PROFILES, load_profile

from difytrace import semconv
from difytrace import semconv_genai as genai

#: Processors that drop spans (sampling or filtering): none may run before span metrics.
DROPPING = {"tail_sampling", "probabilistic_sampler", "filter"}
SAMPLING_PROFILES = ("gateway", "single-node")
ENV = re.compile(r"\$\{env:([A-Z0-9_]+)(?::-([^}]*))?\}")
COST_CONDITION = re.compile(r'attributes\["([^"]+)"\] != nil and attributes\["\1"\] >= ([0-9.]+)')


def _type(component_id: str) -> str:
    return component_id.split("/", 1)[0]


def _trace_pipelines(config: dict[str, Any]) -> dict[str, dict[str, list[str]]]:
    pipelines = config["service"]["pipelines"]
    return {k: v for k, v in pipelines.items() if _type(k) == "traces"}


def _upstream(config: dict[str, Any], pipeline: str) -> set[str]:
    """``pipeline`` and every trace pipeline feeding it through a connector."""
    pipelines = _trace_pipelines(config)
    seen, todo = set(), [pipeline]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for receiver in pipelines[current].get("receivers", []):
            todo += [p for p, spec in pipelines.items() if receiver in spec.get("exporters", [])]
    return seen


def _processors(config: dict[str, Any], pipelines: set[str]) -> set[str]:
    trace = _trace_pipelines(config)
    return {_type(p) for name in pipelines for p in trace[name].get("processors", [])}


@pytest.mark.parametrize("name", PROFILES)
def test_span_metrics_see_every_span_before_sampling(name: str) -> None:
    config = load_profile(name)
    pipelines = _trace_pipelines(config)
    feeds = [p for p, spec in pipelines.items() if "span_metrics" in spec.get("exporters", [])]
    if name == "gateway":  # gets the agents' span metrics: computing them again would count twice
        assert feeds == []
        return
    assert feeds, f"{name}: no trace pipeline feeds span_metrics"
    for feed in feeds:
        before = _processors(config, _upstream(config, feed))
        assert not before & DROPPING, f"{name}: {feed} runs {before & DROPPING} before span metrics"
    # Every span received over OTLP reaches span metrics...
    ingest = [p for p, spec in pipelines.items() if "otlp" in spec.get("receivers", [])]
    assert ingest
    assert set(ingest) <= set(feeds), f"{name}: {set(ingest) - set(feeds)} bypass span metrics"
    # ...and where this profile samples, it does so downstream of a span-metrics feed.
    sampling = [p for p in pipelines if "tail_sampling" in _processors(config, {p})]
    for pipeline in sampling:
        assert _upstream(config, pipeline) & set(feeds), f"{name}: {pipeline} not after a feed"
    assert bool(sampling) == (name == "single-node")


def test_span_metrics_check_catches_sampling_first() -> None:
    config = load_profile("single-node")
    ingest = config["service"]["pipelines"]["traces/ingest"]
    ingest["processors"] = [*ingest["processors"], "tail_sampling"]
    feed = _upstream(config, "traces/ingest")
    assert "tail_sampling" in _processors(config, feed)


@pytest.mark.parametrize("name", SAMPLING_PROFILES)
def test_backend_sampled_langfuse_not(name: str) -> None:
    """Traces to the tracing backend are tail-sampled; Langfuse gets every GenAI span (cost
    accounting must not be sampled)."""
    config = load_profile(name)
    pipelines = _trace_pipelines(config)
    to_backend = [p for p, s in pipelines.items() if "otlp_http/backend" in s["exporters"]]
    to_langfuse = [p for p, s in pipelines.items() if "otlp_http/langfuse" in s["exporters"]]
    assert len(to_backend) == len(to_langfuse) == 1
    assert "tail_sampling" in _processors(config, _upstream(config, to_backend[0]))
    assert not _processors(config, _upstream(config, to_langfuse[0])) & {
        "tail_sampling", "probabilistic_sampler"
    }  # fmt: skip


def _policies(name: str) -> dict[str, dict[str, Any]]:
    policies = load_profile(name)["processors"]["tail_sampling"]["policies"]
    return {p["name"]: p for p in policies}


def _default(value: Any) -> str:
    """The value the collector sees when the ``${env:...}`` in ``value`` is unset."""
    return ENV.sub(lambda m: m.group(2) or "", str(value))


def _cost_keeps(conditions: list[str], attributes: dict[str, float]) -> bool:
    """OR of the span conditions, as tail_sampling's ottl_condition evaluates them."""
    kept = False
    for condition in conditions:
        match = COST_CONDITION.fullmatch(condition.strip())
        assert match, f"unknown OTTL shape, teach this test: {condition}"
        value = attributes.get(match.group(1))
        kept |= value is not None and value >= float(match.group(2))
    return kept


@pytest.mark.parametrize("name", SAMPLING_PROFILES)
def test_tail_sampling_semantics(name: str) -> None:
    policies = _policies(name)
    assert set(policies) == {"errors", "slow", "expensive-llm-cost", "expensive-llm-tokens",
                             "baseline"}  # fmt: skip
    assert policies["errors"]["status_code"] == {"status_codes": ["ERROR"]}
    slow = policies["slow"]["latency"]
    assert int(_default(slow["threshold_ms"])) == 2000
    assert "upper_threshold_ms" not in slow  # slower still is kept, whatever the duration
    tokens = policies["expensive-llm-tokens"]["numeric_attribute"]
    assert tokens["key"] == genai.USAGE_INPUT_TOKENS
    assert tokens["min_value"] > 0
    assert "max_value" not in tokens
    assert 0 < float(_default(policies["baseline"]["probabilistic"]["sampling_percentage"])) < 100


@pytest.mark.parametrize("name", SAMPLING_PROFILES)
def test_expensive_llm_cost_policy(name: str) -> None:
    """Keeps a trace with one call, or one request / task (the rollup), of 0.05 USD or more."""
    cost = _policies(name)["expensive-llm-cost"]["ottl_condition"]
    assert cost["error_mode"] == "ignore"
    conditions = cost["span"]
    named = {m.group(1) for c in conditions if (m := COST_CONDITION.fullmatch(c.strip()))}
    assert named == {genai.USAGE_COST, genai.ROLLUP_COST}, "cost attributes difytrace emits"
    for attribute in named:
        assert _cost_keeps(conditions, {attribute: 0.05})
        assert _cost_keeps(conditions, {attribute: 1.5})
        assert not _cost_keeps(conditions, {attribute: 0.049})
    assert not _cost_keeps(conditions, {})
    assert not _cost_keeps(conditions, {genai.USAGE_INPUT_TOKENS: 10_000_000})


@pytest.mark.parametrize("name", SAMPLING_PROFILES)
def test_tail_sampling_holds_enough_traces(name: str) -> None:
    """Traces held while deciding: fewer than arrive in one decision wait would be decided early
    (on partial traces)."""
    sampler = load_profile(name)["processors"]["tail_sampling"]
    wait_s = float(sampler["decision_wait"].removesuffix("s"))
    assert sampler["num_traces"] >= sampler["expected_new_traces_per_sec"] * wait_s * 2


def _deleted_by_scrub(profile: dict[str, Any], key: str) -> bool:
    statements = [
        s for group in profile["processors"]["transform/genai_content"]["trace_statements"]
        for s in group["statements"]
    ]  # fmt: skip
    patterns = [re.search(r'delete_matching_keys\(attributes, "(.*)"\)', s) for s in statements]
    return any(re.search(p.group(1), key) for p in patterns if p)


@pytest.mark.parametrize("name", SAMPLING_PROFILES)
def test_sampling_and_routing_attributes_survive_scrubbing(name: str) -> None:
    """What tail sampling and the Langfuse filter decide on is not deleted by the scrub rules
    the spans went through (the agent's, or the single node's own)."""
    scrubbing = load_profile("agent" if name == "gateway" else name)
    config = load_profile(name)
    used = {genai.USAGE_INPUT_TOKENS, genai.USAGE_COST, genai.ROLLUP_COST, genai.OPERATION_NAME}
    text = str(config["processors"]["tail_sampling"]) + str(
        config["processors"]["filter/genai_only"]
    )
    assert all(f'"{key}"' in text or f"'{key}'" in text for key in used), text
    assert [key for key in used if _deleted_by_scrub(scrubbing, key)] == []


def test_span_metrics_dimensions_are_emitted_attributes() -> None:
    for name in ("agent", "single-node"):
        dimensions = {
            d["name"] for d in load_profile(name)["connectors"]["span_metrics"]["dimensions"]
        }
        assert dimensions == {semconv.HTTP_ROUTE, semconv.CELERY_TASK_NAME, genai.REQUEST_MODEL}


def _documented_env() -> dict[str, str | None]:
    """``collector/README.md``'s environment table: variable (or ``*`` pattern) → default."""
    section = (COLLECTOR / "README.md").read_text().split("## Environment", 1)[1]
    documented: dict[str, str | None] = {}
    for line in section.split("\n## ", 1)[0].splitlines():
        cells = line.strip().strip("|").split("|")
        if len(cells) < 3 or "`" not in cells[0]:
            continue
        default = re.search(r"\(default `?([^`:)]+)`?", cells[2])
        for var in re.findall(r"`([A-Z0-9_*]+)`", cells[0]):
            documented[var] = default.group(1) if default else None
    return documented


def test_every_env_variable_is_documented_with_its_default() -> None:
    documented = _documented_env()
    for name in PROFILES:
        text = (COLLECTOR / f"{name}.yaml").read_text()
        for var, default in ENV.findall(text):
            matches = [d for d in documented if fnmatch.fnmatchcase(var, d)]
            assert matches, f"{name}: ${{env:{var}}} is not in collector/README.md"
            stated = documented[matches[0]]
            if stated is not None:
                assert default == stated, (
                    f"{name}: {var} defaults to {default!r}, README {stated!r}"
                )
