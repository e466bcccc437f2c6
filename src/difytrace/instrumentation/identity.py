"""Who a request is for: the user, tenant and app ids of a Flask request.

The ids go on the request's server span (``user.id``, ``tenant.id``, ``app.id``) and, for the
keys in the ``DIFYTRACE_BAGGAGE_KEYS`` allow-list, into W3C baggage, so that Celery tasks and
LLM calls made while handling the request carry them too.

Where ids come from, in order:

1. an extractor, ``(flask.Request) -> Mapping[str, str]``, run once per request after routing
   and before ``before_request`` handlers and the view: the one given to
   :func:`set_identity_extractor`, else ``DIFYTRACE_IDENTITY_EXTRACTOR`` (``module:callable``),
   else :func:`default_extractor`;
2. :func:`set_identity`, called by the app once it knows the ids (after authentication).

Ids are telemetry labels, never used for access decisions. Values longer than
:data:`MAX_ID_LENGTH` characters, empty values and non-string keys are dropped.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from opentelemetry import baggage, context, trace
from opentelemetry.context import Context

from difytrace import bootstrap
from difytrace._guard import report_internal_error
from difytrace.semconv import APP_ID, TENANT_ID, USER_ID

if TYPE_CHECKING:
    from flask import Request

IdentityExtractor = Callable[["Request"], Mapping[str, str]]

#: Longest id kept; longer values are dropped rather than cut (a cut id is a wrong id).
MAX_ID_LENGTH = 128

#: Context key under which the Flask instrumentation keeps the current request's state.
REQUEST_KEY = context.create_key("difytrace.flask.request")

# Headers an API gateway or an auth proxy in front of the app commonly sets after auth.
_HEADERS = (
    ("HTTP_X_USER_ID", USER_ID),
    ("HTTP_X_TENANT_ID", TENANT_ID),
    ("HTTP_X_APP_ID", APP_ID),
)
# Dify's routes name the app and the workspace in the path (/apps/<uuid:app_id>/...).
_VIEW_ARGS = (("tenant_id", TENANT_ID), ("app_id", APP_ID))


class IdentityTarget(Protocol):
    """What :func:`set_identity` updates: the state of the request being handled."""

    def add_identity(self, ids: Mapping[str, str]) -> None:
        """Put ``ids`` on the server span and into the request's baggage."""


def default_extractor(request: Request) -> Mapping[str, str]:
    """Ids from the ``X-User-Id``, ``X-Tenant-Id`` and ``X-App-Id`` headers and from the
    route's ``tenant_id`` / ``app_id`` arguments (the route wins over a header)."""
    ids: dict[str, str] | None = None
    environ = request.environ
    for var, key in _HEADERS:
        value = environ.get(var)
        if value:
            if ids is None:
                ids = {}
            ids[key] = value
    view_args = request.view_args
    if view_args:
        for arg, key in _VIEW_ARGS:
            found = view_args.get(arg)
            if found is not None:
                if ids is None:
                    ids = {}
                ids[key] = str(found)
    return ids or _NONE


_NONE: Mapping[str, str] = {}


class _Extractors:
    override: IdentityExtractor | None = None
    configured: IdentityExtractor | None = None


_extractors = _Extractors()


def set_identity_extractor(extractor: IdentityExtractor | None) -> None:
    """Use ``extractor`` for every request from now on; ``None`` restores the configured one
    (``DIFYTRACE_IDENTITY_EXTRACTOR``, read again)."""
    _extractors.override = extractor
    _extractors.configured = None


def current_extractor() -> IdentityExtractor:
    """The extractor in force (programmatic, else the setting, else the default)."""
    found = _extractors.override or _extractors.configured
    if found is None:
        found = _extractors.configured = _load(bootstrap.current_settings().identity_extractor)
    return found


def _load(path: str) -> IdentityExtractor:
    if not path:
        return default_extractor
    module_name, _, attribute = path.partition(":")
    try:
        found: object = importlib.import_module(module_name)
        for part in attribute.split("."):
            found = getattr(found, part)
        if not callable(found):
            raise TypeError(f"DIFYTRACE_IDENTITY_EXTRACTOR={path} is not callable")
    except Exception as exc:
        report_internal_error("identity extractor import", exc)
        return default_extractor
    extractor: IdentityExtractor = found  # type: ignore[assignment]
    return extractor


def clean(ids: Mapping[Any, Any]) -> dict[str, str]:
    """Keep string keys with non-empty values of at most :data:`MAX_ID_LENGTH` characters."""
    kept: dict[str, str] = {}
    for key, value in ids.items():
        if not isinstance(key, str) or not key or value is None:
            continue
        text = value if isinstance(value, str) else str(value)
        if text and len(text) <= MAX_ID_LENGTH:
            kept[key] = text
    return kept


def extract(request: Request) -> dict[str, str]:
    """Run the extractor in force on ``request``; its errors are logged, never raised."""
    try:
        found = current_extractor()(request)
    except Exception as exc:
        report_internal_error("identity extractor", exc)
        return {}
    return clean(found) if found else {}


def with_baggage(ctx: Context, ids: Mapping[str, str], allowed: Collection[str]) -> Context:
    """``ctx`` with the allow-listed ``ids`` added to its baggage."""
    for key, value in ids.items():
        if key in allowed:
            ctx = baggage.set_baggage(key, value, ctx)
    return ctx


def set_identity(
    *, user_id: str | None = None, tenant_id: str | None = None, app_id: str | None = None
) -> None:
    """Record who the current request is for, once the app knows (e.g. after auth).

    Inside a request handled by the Flask instrumentation: sets the ids on the server span and
    adds the allow-listed ones to the baggage for the rest of the request (the rest of the
    view, and the body of a streamed response). Elsewhere: sets them on the current span only.
    """
    ids = clean({USER_ID: user_id, TENANT_ID: tenant_id, APP_ID: app_id})
    if not ids:
        return
    try:
        target = context.get_value(REQUEST_KEY)
        if target is not None:
            target.add_identity(ids)  # type: ignore[attr-defined]
            return
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attributes(ids)
    except Exception as exc:
        report_internal_error("set_identity", exc)
