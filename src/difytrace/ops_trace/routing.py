"""Which destinations a record goes to, per tenant and app; and tenant isolation.

A *resolver* maps ``(tenant_id, app_id)`` to destination configs: either the static YAML file
of ``DIFYTRACE_OPS_TRACE_DESTINATIONS`` or a host callable named by
``DIFYTRACE_OPS_TRACE_RESOLVER`` (Dify reads tracing configs from its database). The YAML::

    default: [ ... ]                 # records of tenants not listed (optional)
    tenants:
      <tenant id>:
        destinations: [ ... ]        # every app of the tenant ...
        apps:
          <app id>: [ ... ]          # ... unless the app has its own list
    # each destination: {kind: langfuse, host, public_key, secret_key, api: otlp|ingestion}
    #                   {kind: langsmith, api_key, endpoint, project, api: runs|otlp, web_url}
    #                   {kind: otlp, endpoint, headers: {...}}
    # "${VAR}" in a string is replaced by the environment variable VAR (keep keys out of files)

Isolation: every config has a key hashed from all its fields, credentials included; the worker
batches records per key and a destination object is built per key, so a request only ever
carries records whose own resolution named that exact destination.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from difytrace.exceptions import ConfigurationError
from difytrace.ops_trace.destinations.base import Destination
from difytrace.ops_trace.records import explain

_URL_FIELDS = ("host", "endpoint", "web_url")
_CREDENTIAL_FIELDS = ("public_key", "secret_key", "api_key", "headers")


class _Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    @model_validator(mode="after")
    def _check(self) -> _Config:
        """URLs must be http(s) with a host; credentials must be usable as header values.

        Caught here, a mistake is one clear configuration error (the records wait in the
        outbox until it is fixed) instead of a failure in the middle of a delivery.
        """
        for name in _URL_FIELDS:
            url = getattr(self, name, None)
            if url is not None and not _is_http_url(url):
                raise ValueError(f"{name} must be an http:// or https:// URL with a host")
        for name in _CREDENTIAL_FIELDS:
            value = getattr(self, name, None)
            labelled = (
                [(f"{name}.{k}", v) for k, v in value.items()]
                if isinstance(value, dict)
                else [(name, value)]
            )
            for label, item in labelled:
                text = item.get_secret_value() if isinstance(item, SecretStr) else item
                if isinstance(text, str) and (text != text.strip() or not text.isprintable()):
                    raise ValueError(
                        f"{label} has surrounding whitespace or a control character "
                        "(a newline from a file?)"
                    )
        return self

    @property
    def key(self) -> str:
        """``kind:<hash of every field, secrets included>`` (never shows a secret).

        ``web_url`` is left out: it only shapes trace links, not where records go.
        """
        fields = self.model_dump(mode="python", exclude={"web_url"})
        text = repr(
            sorted(
                (k, v.get_secret_value() if isinstance(v, SecretStr) else v)
                for k, v in _flatten(fields)
            )
        )
        return f"{self.kind}:{hashlib.blake2b(text.encode(), digest_size=10).hexdigest()}"  # type: ignore[attr-defined]


def _is_http_url(url: str) -> bool:
    try:
        parts = urllib.parse.urlsplit(url)
        return parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != -1
    except ValueError:  # e.g. an unclosed IPv6 bracket, a port that is not a number
        return False


def _flatten(fields: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in fields.items():
        if isinstance(v, dict):
            out.extend(_flatten(v, f"{prefix}{k}."))
        else:
            out.append((prefix + k, v))
    return out


class LangfuseConfig(_Config):
    """A Langfuse project."""

    kind: Literal["langfuse"] = "langfuse"
    host: str = "https://cloud.langfuse.com"
    public_key: str
    secret_key: SecretStr
    api: Literal["otlp", "ingestion"] = "otlp"
    environment: str | None = None


class LangSmithConfig(_Config):
    """A LangSmith project."""

    kind: Literal["langsmith"] = "langsmith"
    endpoint: str = "https://api.smith.langchain.com"
    api_key: SecretStr
    project: str = "default"
    api: Literal["runs", "otlp"] = "runs"
    #: LangSmith's UI for trace links; default: derived from ``endpoint`` as the SDK does.
    web_url: str | None = None


class OtlpConfig(_Config):
    """Any OTLP/HTTP traces endpoint (full URL, e.g. ``http://collector:4318/v1/traces``)."""

    kind: Literal["otlp"] = "otlp"
    endpoint: str
    headers: dict[str, SecretStr] = Field(default_factory=dict)


DestinationConfig = Annotated[
    LangfuseConfig | LangSmithConfig | OtlpConfig, Field(discriminator="kind")
]
_CONFIGS: TypeAdapter[list[DestinationConfig]] = TypeAdapter(list[DestinationConfig])
Resolver = Callable[[str, str | None], Sequence[Any]]
_Resolved = tuple[tuple[DestinationConfig, ...], Mapping[str, DestinationConfig]]


def parse_configs(items: Any, where: str) -> tuple[DestinationConfig, ...]:
    """Validate a list of destination configs; ConfigurationError names ``where``."""
    try:
        return tuple(_CONFIGS.validate_python(list(items or ())))
    except ValidationError as exc:  # explained without the input: it may hold a secret
        raise ConfigurationError(f"ops_trace destinations at {where}: {explain(exc)}") from None
    except TypeError:
        raise ConfigurationError(
            f"ops_trace destinations at {where}: expected a list of destination objects, "
            f"got {type(items).__name__}"
        ) from None


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand(value: Any, env: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return _VAR.sub(lambda m: env.get(m.group(1), ""), value)
    if isinstance(value, list):
        return [_expand(v, env) for v in value]
    if isinstance(value, dict):
        return {k: _expand(v, env) for k, v in value.items()}
    return value


class StaticResolver:
    """Destinations from a YAML document (see the module docstring)."""

    def __init__(self, document: Mapping[str, Any], env: Mapping[str, str] | None = None) -> None:
        doc = _expand(dict(document or {}), os.environ if env is None else env)
        self.default = parse_configs(doc.get("default"), "default")
        self.tenants: dict[
            str, tuple[tuple[DestinationConfig, ...], dict[str, tuple[DestinationConfig, ...]]]
        ] = {}
        for tenant, raw_spec in (doc.get("tenants") or {}).items():
            spec = raw_spec or {}
            apps = {
                str(app): parse_configs(items, f"tenants.{tenant}.apps.{app}")
                for app, items in (spec.get("apps") or {}).items()
            }
            self.tenants[str(tenant)] = (
                parse_configs(spec.get("destinations"), f"tenants.{tenant}.destinations"),
                apps,
            )

    @classmethod
    def from_file(cls, path: str) -> StaticResolver:
        """Load the YAML routing file."""
        import yaml

        try:
            with open(path, encoding="utf-8") as handle:
                return cls(yaml.safe_load(handle) or {})
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigurationError(f"DIFYTRACE_OPS_TRACE_DESTINATIONS={path!r}: {exc}") from None

    def __call__(self, tenant_id: str, app_id: str | None) -> tuple[DestinationConfig, ...]:
        """The destinations of one tenant's app."""
        if tenant_id not in self.tenants:
            return self.default
        tenant_wide, apps = self.tenants[tenant_id]
        return apps.get(app_id or "", tenant_wide)


#: Destination objects (each a keep-alive connection pool) a worker keeps at most.
MAX_DESTINATIONS = 512


class Router:
    """Resolves destinations (cached for ``ttl_s``) and builds one destination per config key."""

    def __init__(self, resolver: Resolver, *, timeout_s: float, ttl_s: float = 30.0) -> None:
        self.resolver = resolver
        self.timeout_s = timeout_s
        self.ttl_s = ttl_s
        self._cache: dict[tuple[str, str | None], tuple[float, _Resolved]] = {}
        self._built: dict[str, Destination] = {}
        self._lock = threading.Lock()

    def resolve(self, tenant_id: str, app_id: str | None) -> tuple[DestinationConfig, ...]:
        """The validated destination configs of a tenant's app."""
        return self._lookup(tenant_id, app_id)[0]

    def targets(self, tenant_id: str, app_id: str | None) -> Mapping[str, DestinationConfig]:
        """The same configs by key (read-only): a key hashes every field, computed once."""
        return self._lookup(tenant_id, app_id)[1]

    def _lookup(self, tenant_id: str, app_id: str | None) -> _Resolved:
        now = time.monotonic()
        hit = self._cache.get((tenant_id, app_id))
        if hit is not None and hit[0] > now:
            return hit[1]
        try:
            found = self.resolver(tenant_id, app_id)
        except Exception as exc:  # the host's resolver (a database...): the record waits
            raise ConfigurationError(f"{type(exc).__name__}: {exc}") from None
        configs = parse_configs(found, f"resolver({tenant_id!r})")
        resolved = (configs, MappingProxyType({c.key: c for c in configs}))
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[(tenant_id, app_id)] = (now + self.ttl_s, resolved)
        return resolved

    def destination(self, config: DestinationConfig) -> Destination:
        """The destination object of one config (built once per key, the least recently used
        dropped beyond :data:`MAX_DESTINATIONS`: rotated keys and departed tenants)."""
        key = config.key
        with self._lock:
            dest = self._built.pop(key, None)
            if dest is None:
                dest = build_destination(config, self.timeout_s)
                if len(self._built) >= MAX_DESTINATIONS:
                    # Not closed: another thread may be sending through it. Unreferenced, its
                    # pooled connections are closed when it is collected.
                    self._built.pop(next(iter(self._built)))
            self._built[key] = dest  # (re)inserted last: the dict is in order of use
            return dest

    def close(self) -> None:
        """Close every destination's connections."""
        with self._lock:
            for dest in self._built.values():
                dest.close()
            self._built.clear()


def build_destination(config: DestinationConfig, timeout_s: float) -> Destination:
    """A destination object for one config."""
    from difytrace.ops_trace.destinations.langfuse import LangfuseDestination
    from difytrace.ops_trace.destinations.langsmith import LangSmithDestination
    from difytrace.ops_trace.destinations.otlp import OtlpDestination

    if isinstance(config, LangfuseConfig):
        return LangfuseDestination(
            host=config.host,
            public_key=config.public_key,
            secret_key=config.secret_key.get_secret_value(),
            api=config.api,
            environment=config.environment,
            timeout_s=timeout_s,
        )
    if isinstance(config, LangSmithConfig):
        if config.api == "otlp":
            return OtlpDestination(
                endpoint=config.endpoint.rstrip("/") + "/otel/v1/traces",
                flavour="langsmith",
                headers={
                    "x-api-key": config.api_key.get_secret_value(),
                    "Langsmith-Project": config.project,
                },
                timeout_s=timeout_s,
            )
        return LangSmithDestination(
            api_key=config.api_key.get_secret_value(),
            endpoint=config.endpoint,
            project=config.project,
            web_url=config.web_url,
            timeout_s=timeout_s,
        )
    return OtlpDestination(
        endpoint=config.endpoint,
        headers={k: v.get_secret_value() for k, v in config.headers.items()},
        timeout_s=timeout_s,
    )


def load_resolver(destinations_path: str, resolver_path: str) -> Resolver:
    """The resolver the settings name: the host callable, else the YAML file, else none."""
    if resolver_path:
        module_name, _, attr = resolver_path.partition(":")
        try:
            target: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                target = getattr(target, part)
        except (ImportError, AttributeError) as exc:
            raise ConfigurationError(
                f"DIFYTRACE_OPS_TRACE_RESOLVER={resolver_path!r}: {exc}"
            ) from None
        return target  # type: ignore[no-any-return]
    if destinations_path:
        return StaticResolver.from_file(destinations_path)
    return StaticResolver({})
