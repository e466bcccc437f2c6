"""What a WSGI environ says about a request: HTTP semconv attributes and the trace context.

Read straight from the environ (no werkzeug ``Request`` objects, no LocalProxy lookups): this
runs on every request.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import propagate
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import Getter, TextMapPropagator
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from difytrace import semconv

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

#: Methods semconv knows; others are reported as "_OTHER".
KNOWN_METHODS = frozenset(
    ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "QUERY")
)
_PROTOCOLS = {"HTTP/1.1": "1.1", "HTTP/1.0": "1.0", "HTTP/2": "2", "HTTP/2.0": "2", "HTTP/3": "3"}
_DEFAULT_PORTS = {"http": 80, "https": 443}
_EMPTY = Context()
#: Set by werkzeug's ProxyFix when it has rewritten the environ.
PROXY_FIX_KEY = "werkzeug.proxy_fix.orig"


class _EnvironGetter(Getter[Mapping[str, Any]]):
    """Reads propagation headers from a WSGI environ (``traceparent`` → ``HTTP_TRACEPARENT``)."""

    def get(self, carrier: Mapping[str, Any], key: str) -> list[str] | None:
        value = carrier.get("HTTP_" + key.upper().replace("-", "_"))
        return None if value is None else [value]

    def keys(self, carrier: Mapping[str, Any]) -> list[str]:
        return [k[5:].lower().replace("_", "-") for k in carrier if k.startswith("HTTP_")]


_GETTER = _EnvironGetter()
_W3C = (TraceContextTextMapPropagator, W3CBaggagePropagator)
# (propagator, its environ keys): recomputed only when the global propagator changes.
_fields_cache: list[Any] = [None, None]


def _header_vars(propagator: TextMapPropagator) -> tuple[str, ...] | None:
    """The environ keys the W3C propagators read, or None when another propagator is set."""
    # The W3C propagators read exactly their ``fields``; when none of those headers came in,
    # extract() would return an empty context, so skipping it is the same result, cheaper.
    parts = (
        getattr(propagator, "_propagators", None)
        if isinstance(propagator, CompositePropagator)
        else [propagator]
    )
    if not parts or not all(isinstance(p, _W3C) for p in parts):
        return None
    return tuple("HTTP_" + f.upper().replace("-", "_") for f in propagator.fields)


def parent_context(environ: WSGIEnvironment) -> Context:
    """The context the request's headers carry (the global propagator's view of them)."""
    propagator = propagate.get_global_textmap()
    cached, names = _fields_cache
    if cached is not propagator:
        names = _header_vars(propagator)
        _fields_cache[:] = (propagator, names)
    if names is not None:
        for name in names:
            if name in environ:
                break
        else:
            return _EMPTY
    return propagator.extract(environ, _EMPTY, _GETTER)


def _parse_host(host: str, scheme: str) -> tuple[str, int | None]:
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit() and (not name.startswith("[") or name.endswith("]")):
        return name.strip("[]"), int(port)
    return host.strip("[]"), _DEFAULT_PORTS.get(scheme)


# (Host header, scheme) → (server.address, server.port): a server sees few distinct hosts.
_hosts: dict[tuple[str, str], tuple[str, int | None]] = {}
_MAX_HOSTS = 256


def _address(environ: WSGIEnvironment, scheme: str) -> tuple[str, int | None]:
    host = environ.get("HTTP_HOST")
    if not host:
        port = environ.get("SERVER_PORT")
        return environ.get("SERVER_NAME", ""), int(port) if port and port.isdigit() else None
    key = (host, scheme)
    found = _hosts.get(key)
    if found is None:
        found = _parse_host(host, scheme)
        if len(_hosts) < _MAX_HOSTS:  # the header is the client's: never grow without bound
            _hosts[key] = found
    return found


def peer_attributes(environ: WSGIEnvironment, attrs: dict[str, Any]) -> str:
    """Fill scheme, server and client attributes; return the scheme."""
    scheme: str = environ.get("wsgi.url_scheme", "http")
    attrs[semconv.URL_SCHEME] = scheme
    address, port = _address(environ, scheme)
    if address:
        attrs[semconv.SERVER_ADDRESS] = address
    if port is not None:
        attrs[semconv.SERVER_PORT] = port
    forwarded = environ.get("HTTP_X_FORWARDED_FOR")
    # Behind ProxyFix, REMOTE_ADDR already holds the client the app's config trusts.
    if forwarded and PROXY_FIX_KEY not in environ:
        attrs[semconv.CLIENT_ADDRESS] = forwarded.partition(",")[0].strip()
    else:
        client = environ.get("REMOTE_ADDR")
        if client:
            attrs[semconv.CLIENT_ADDRESS] = client
    return scheme


def request_attributes(environ: WSGIEnvironment, method: str) -> dict[str, Any]:
    """The span attributes known when the request comes in."""
    get = environ.get
    path: str = get("PATH_INFO", "")
    script = get("SCRIPT_NAME")
    if script:
        path = script + path
    if not path.isascii():  # PEP 3333 hands the bytes over as latin-1
        path = path.encode("latin-1").decode("utf-8", "replace")
    attrs: dict[str, Any] = {semconv.HTTP_REQUEST_METHOD: method, semconv.URL_PATH: path}
    peer_attributes(environ, attrs)
    agent = get("HTTP_USER_AGENT")
    if agent:
        attrs[semconv.USER_AGENT_ORIGINAL] = agent
    protocol = get("SERVER_PROTOCOL")
    if protocol:
        attrs[semconv.NETWORK_PROTOCOL_VERSION] = (
            _PROTOCOLS.get(protocol) or protocol.partition("/")[2]
        )
    return attrs


def error_name(exc: BaseException) -> str:
    """``error.type`` for an exception: its fully qualified class name."""
    cls = type(exc)
    name = cls.__qualname__
    return name if cls.__module__ == "builtins" else f"{cls.__module__}.{name}"
