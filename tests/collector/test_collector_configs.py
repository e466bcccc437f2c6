"""The collector profiles, checked structurally against the pinned otelcol-contrib version."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from collector_support import COLLECTOR, PROFILES, load_profile

KINDS = {"receivers": "receiver", "processors": "processor", "exporters": "exporter",
         "connectors": "connector", "extensions": "extension"}  # fmt: skip
#: Exporters that never send over the network: debug/file/nop write locally, prometheus is
#: scraped. Every other exporter type is a network exporter and needs a sending queue and
#: retries, so a new one (kafka, zipkin, ...) cannot slip through unchecked.
LOCAL_EXPORTERS = frozenset({"debug", "file", "nop", "prometheus"})
ENV = re.compile(r"\$\{env:[A-Z0-9_]+(:-[^}]*)?\}")


def _type(component_id: str) -> str:
    return component_id.split("/", 1)[0]


def _pipelines(config: dict[str, Any]) -> dict[str, dict[str, list[str]]]:
    return dict(config["service"]["pipelines"])


def test_every_referenced_component_is_defined(profile: tuple[str, dict[str, Any]]) -> None:
    name, config = profile
    connectors = set(config.get("connectors") or {})
    for pipeline, spec in _pipelines(config).items():
        for role in ("receivers", "processors", "exporters"):
            defined = set(config.get(role) or {})
            if role != "processors":
                defined |= connectors
            missing = set(spec.get(role, [])) - defined
            assert not missing, f"{name}:{pipeline} uses undefined {role} {missing}"
    assert set(config["service"].get("extensions", [])) <= set(config.get("extensions") or {})


def test_every_defined_component_is_used(profile: tuple[str, dict[str, Any]]) -> None:
    name, config = profile
    used = {c for spec in _pipelines(config).values() for ids in spec.values() for c in ids}
    used |= set(config["service"].get("extensions", []))
    for section in KINDS:
        unused = set(config.get(section) or {}) - used
        assert not unused, f"{name}: {section} defined but unused: {unused}"


def test_components_exist_in_pinned_version(
    profile: tuple[str, dict[str, Any]], components: dict[str, Any]
) -> None:
    name, config = profile
    modules = set(components["modules"])
    for section, kind in KINDS.items():
        for component_id in config.get(section) or {}:
            known = components["types"][kind]
            version = components["version"]
            assert _type(component_id) in known, f"{name}: {component_id} not in v{version}"
            assert known[_type(component_id)]["module"] in modules


def test_no_deprecated_component_names(
    profile: tuple[str, dict[str, Any]], components: dict[str, Any]
) -> None:
    name, config = profile
    for section, kind in KINDS.items():
        deprecated = {
            info["deprecated_type"]
            for info in components["types"][kind].values()
            if "deprecated_type" in info
        }
        used = {_type(c) for c in config.get(section) or {}}
        assert not used & deprecated, f"{name}: deprecated {kind} names {used & deprecated}"


def test_memory_limiter_first_in_every_pipeline(profile: tuple[str, dict[str, Any]]) -> None:
    name, config = profile
    for pipeline, spec in _pipelines(config).items():
        processors = spec.get("processors", [])
        assert processors, f"{name}:{pipeline} has no processors"
        assert _type(processors[0]) == "memory_limiter", f"{name}:{pipeline}: {processors}"


def network_exporter_problems(name: str, config: dict[str, Any]) -> Iterator[str]:
    """What is wrong with the queues and retries of ``config``'s network exporters."""
    extensions = config["service"].get("extensions", [])
    for exporter_id, raw in (config.get("exporters") or {}).items():
        if _type(exporter_id) in LOCAL_EXPORTERS:
            continue
        settings = raw or {}
        for block in ("sending_queue", "retry_on_failure"):
            if (settings.get(block) or {}).get("enabled") is not True:
                yield f"{name}: network exporter {exporter_id} has no {block} enabled"
        storage = (settings.get("sending_queue") or {}).get("storage")
        if name != "agent" and storage is None:  # gateway and single node survive restarts
            yield f"{name}: {exporter_id} queue is not persistent"
        if storage is not None and (_type(storage) != "file_storage" or storage not in extensions):
            yield f"{name}: {exporter_id} queue storage {storage} is not an enabled file_storage"


def test_network_exporters_queue_and_retry(profile: tuple[str, dict[str, Any]]) -> None:
    name, config = profile
    network = [e for e in config.get("exporters") or {} if _type(e) not in LOCAL_EXPORTERS]
    assert network, f"{name}: no network exporter found: the check below would prove nothing"
    assert list(network_exporter_problems(name, config)) == []


def test_local_exporter_list_names_real_components(components: dict[str, Any]) -> None:
    assert set(LOCAL_EXPORTERS) <= set(components["types"]["exporter"])


def test_an_unknown_network_exporter_without_queue_is_caught() -> None:
    """The check needs no list of network exporter types: any type not local is one."""
    config = load_profile("gateway")
    config["exporters"]["zipkin/new"] = {"endpoint": "http://zipkin:9411/api/v2/spans"}
    problems = list(network_exporter_problems("gateway", config))
    assert "gateway: network exporter zipkin/new has no sending_queue enabled" in problems
    assert "gateway: network exporter zipkin/new has no retry_on_failure enabled" in problems
    assert not [p for p in problems if "zipkin/new" not in p]
    config["exporters"]["otlp_http/backend"]["retry_on_failure"]["enabled"] = False
    assert "gateway: network exporter otlp_http/backend has no retry_on_failure enabled" in list(
        network_exporter_problems("gateway", config)
    )


def _strings(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _strings(value, f"{path}[{i}]")
    elif isinstance(node, str):
        yield path, node


SENSITIVE_KEY = re.compile(r"(?i)(authorization|api[-_]?key|token|password|secret|auth)$")
SECRET_LOOKING = re.compile(
    r"(?i)(sk-[a-z0-9]{8,}|(pk|sk)-lf-|lsv2_|bearer\s+[a-z0-9]|basic\s+[a-z0-9+/]{8,}|"
    r"akia[0-9a-z]{16}|://[^/\s:@]+:[^/\s@]+@)"
)


def test_secrets_only_from_env(profile: tuple[str, dict[str, Any]]) -> None:
    name, config = profile
    for path, value in _strings(config):
        if SENSITIVE_KEY.search(path.rsplit(".", 1)[-1]):
            literal = ENV.sub("", value).strip()
            assert literal in {"", "Basic", "Bearer"}, f"{name}{path}: literal secret part"
            assert ENV.search(value), f"{name}{path} must come from ${{env:...}}"
        if "blocked_values" not in path:  # the redaction patterns describe secrets
            assert not SECRET_LOOKING.search(ENV.sub("", value)), f"{name}{path}: {value!r}"


def test_raw_files_have_no_literal_secrets() -> None:
    for name in PROFILES:
        text = (COLLECTOR / f"{name}.yaml").read_text()
        for line in text.splitlines():
            if re.search(r"(?i)(authorization|api[-_]?key|password|secret_key)\s*:", line):
                assert "${env:" in line, f"{name}: {line.strip()}"


def test_agent_span_metrics_before_sampling_and_trace_id_balancing() -> None:
    agent = load_profile("agent")
    traces = _pipelines(agent)["traces"]
    assert "span_metrics" in traces["exporters"]
    assert not any("sampl" in p for p in traces["processors"])
    assert "span_metrics" in _pipelines(agent)["metrics"]["receivers"]
    assert agent["exporters"]["load_balancing"]["routing_key"] == "traceID"


def test_span_metrics_names_match_semconv() -> None:
    from difytrace import semconv

    for name in ("agent", "single-node"):
        connector = load_profile(name)["connectors"]["span_metrics"]
        namespace = connector["namespace"]
        assert semconv.SPAN_METRICS_CALLS.name == f"{namespace}.calls"
        assert semconv.SPAN_METRICS_DURATION.name == f"{namespace}.duration"
        assert connector["histogram"]["unit"] == semconv.SPAN_METRICS_DURATION.unit


def test_langfuse_gets_genai_spans_only_with_env_auth() -> None:
    for name in ("gateway", "single-node"):
        config = load_profile(name)
        langfuse = config["exporters"]["otlp_http/langfuse"]
        assert langfuse["traces_endpoint"] == "${env:LANGFUSE_HOST}/api/public/otel/v1/traces"
        assert langfuse["headers"]["authorization"] == "Basic ${env:LANGFUSE_BASIC_AUTH}"
        pipeline = _pipelines(config)["traces/langfuse"]
        assert "filter/genai_only" in pipeline["processors"]
        assert pipeline["exporters"] == ["otlp_http/langfuse"]
        drop = config["processors"]["filter/genai_only"]["traces"]["span"]
        assert drop == ['attributes["gen_ai.operation.name"] == nil']


def test_gateway_exports_metrics_to_prometheus_with_suffixes() -> None:
    for name in ("gateway", "single-node"):
        prometheus = load_profile(name)["exporters"]["prometheus"]
        assert prometheus["add_metric_suffixes"] is True  # MetricSpec.prometheus_name relies on it
        assert prometheus["resource_to_telemetry_conversion"]["enabled"] is False


def test_scrub_rules_identical_in_agent_and_single_node() -> None:
    agent, single = load_profile("agent"), load_profile("single-node")
    for processor in ("transform/genai_content", "redaction/secrets"):
        assert agent["processors"][processor] == single["processors"][processor]


def _unknown_keys(config: Any, allowed: Any, path: str) -> Iterator[str]:
    if allowed is None or not isinstance(config, dict):
        return
    for key, value in config.items():
        if key not in allowed:
            yield f"{path}.{key}"
        else:
            yield from _unknown_keys(value, allowed[key], f"{path}.{key}")


def test_core_component_keys_exist_in_pinned_version(profile: tuple[str, dict[str, Any]]) -> None:
    import yaml

    name, config = profile
    keys_file = COLLECTOR.parent / "tests" / "collector" / "otelcol-core-v0.159.0-keys.yaml"
    schema = yaml.safe_load(keys_file.read_text())
    for section, kind in KINDS.items():
        for component_id, settings in (config.get(section) or {}).items():
            allowed = schema.get(kind, {}).get(_type(component_id))
            if allowed is None or settings is None:
                continue
            unknown = list(_unknown_keys(settings, allowed, f"{name}:{component_id}"))
            assert unknown == [], unknown
