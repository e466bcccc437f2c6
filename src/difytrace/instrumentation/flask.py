"""Flask server spans: one SERVER span per request, routes, ids, and streamed responses.

difytrace's own instrumentor rather than ``opentelemetry-instrumentation-flask``: the contrib
one costs about four times the overhead (WSGI middleware + ``before_request`` hooks +
LocalProxy lookups on every request) and ends the span of a server-sent-events response when
the view returns, not when the stream ends.

Two class-level patches, so apps created before or after :meth:`FlaskInstrumentor.instrument`
are covered, and so are subclasses (Dify's ``DifyApp``):

``Flask.__call__``
    starts the span (W3C context extracted from the headers) and makes it current while
    ``wsgi_app`` runs, which keeps it outside any ``app.wsgi_app = Middleware(app.wsgi_app)``
    such as ``ProxyFix`` (the attributes ProxyFix rewrites are read again at the end).
    A buffered response ends the span when ``wsgi_app`` returns; a streamed one (generator,
    ``stream_with_context``) ends it when the server has exhausted or closed the body, and
    the span's context is current while each chunk is produced, and only then.
``Flask.full_dispatch_request``
    runs with the request context pushed: the route template, the identity ids
    (:mod:`difytrace.instrumentation.identity`), the exception that escaped the view, and
    whether the response is streamed.

``url.query`` is not recorded: Dify's query strings can carry tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from time import time_ns
from typing import TYPE_CHECKING, Any

from opentelemetry import context, metrics, trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.trace import SpanKind, Status, StatusCode

from difytrace import bootstrap, semconv
from difytrace._guard import report_internal_error
from difytrace.instrumentation import identity, wsgi_environ, wsgi_stream
from difytrace.lean_histogram import histogram
from difytrace.lean_span import LeanTracer

try:
    from flask.globals import _cv_request
except ImportError:  # pragma: no cover - a future Flask without a separate request context
    _cv_request = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment
    from flask import Flask, Request

_ENV_KEY = "difytrace.request"
_DONE = context.Context()
_STREAM_METRIC_KEYS = semconv.HTTP_STREAM_DURATION.attributes
_set_span = trace.set_span_in_context
_attach = context.attach
_detach = context.detach


class _Telemetry:
    """What :meth:`FlaskInstrumentor.instrument` built, shared by every request."""

    __slots__ = ("baggage_keys", "duration", "stream_duration", "tracer")

    def __init__(
        self,
        tracer: LeanTracer,
        duration: metrics.Histogram | None,
        stream_duration: metrics.Histogram | None,
        baggage_keys: Collection[str],
    ) -> None:
        self.tracer = tracer
        self.duration = duration
        self.stream_duration = stream_duration
        self.baggage_keys = baggage_keys


_TELEMETRY: _Telemetry | None = None


class _Request:
    """One request's span and what is learnt about it along the way."""

    __slots__ = (
        "chunks",
        "ctx",
        "ended",
        "environ",
        "error",
        "first_ns",
        "method",
        "name",
        "route",
        "scheme",
        "span",
        "start_ns",
        "start_response_",
        "status",
        "streamed",
        "tel",
    )

    def __init__(
        self, tel: _Telemetry, environ: WSGIEnvironment, start_response: StartResponse
    ) -> None:
        self.start_ns = time_ns()
        self.tel = tel
        self.environ = environ
        self.start_response_ = start_response
        self.status: str | None = None
        self.route: str | None = None
        self.error: BaseException | None = None
        self.streamed = False
        self.ended = False
        self.chunks = 0
        self.first_ns = 0
        method: str = environ.get("REQUEST_METHOD", "GET")
        known = method in wsgi_environ.KNOWN_METHODS
        attrs = wsgi_environ.request_attributes(environ, method if known else "_OTHER")
        if known:
            self.name = method
        else:
            attrs[semconv.HTTP_REQUEST_METHOD_ORIGINAL] = method
            method, self.name = "_OTHER", "HTTP"
        self.method = method
        self.scheme: str = attrs[semconv.URL_SCHEME]
        parent = wsgi_environ.parent_context(environ)
        self.span = span = tel.tracer.start_span(
            self.name, parent, SpanKind.SERVER, attrs, start_time=self.start_ns, owned=True
        )
        self.ctx = context.set_value(identity.REQUEST_KEY, self, _set_span(span, parent))
        environ[_ENV_KEY] = self

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], object]:
        self.status = status
        return self.start_response_(status, headers, exc_info)

    def dispatching(self, request: Request) -> None:
        """Called with the request context pushed, before ``before_request`` and the view."""
        rule = request.url_rule
        if rule is not None:
            self.route = rule.rule
        ids = identity.extract(request)
        if ids:
            self.add_identity(ids)

    def add_identity(self, ids: Mapping[str, str]) -> None:
        """Ids on the span; allow-listed ones into baggage for the rest of the request."""
        if self.span.is_recording():
            self.span.set_attributes(ids)
        keys = self.tel.baggage_keys
        if any(key in keys for key in ids):
            previous, self.ctx = self.ctx, identity.with_baggage(self.ctx, ids, keys)
            current = context.get_current()
            # The token is dropped on purpose: the request's own detach in Flask.__call__
            # (or after each stream chunk) restores the context from before the request.
            _attach(self.ctx if current is previous else identity.with_baggage(current, ids, keys))

    def view_failed(self, exc: BaseException) -> None:
        self.error = exc
        if self.span.is_recording():
            self.span.record_exception(exc)

    def finish(self, exc: BaseException | None = None, disconnected: bool = False) -> None:
        """End the span and record the metrics, once."""
        if self.ended:
            return
        self.ended = True
        end_ns = time_ns()
        status = self.status
        code = int(status[:3]) if status and status[:3].isdigit() else 0
        failed = exc if exc is not None else (self.error if code >= 500 or not code else None)
        if failed is not None:
            error_type: str | None = wsgi_environ.error_name(failed)
        else:
            error_type = str(code) if code >= 400 else None
        span = self.span
        if span.is_recording():
            self._annotate(span, code, error_type, disconnected)
            if exc is not None and exc is not self.error:
                span.record_exception(exc)
            if failed is not None:
                span.set_status(Status(StatusCode.ERROR, f"{type(failed).__name__}: {failed}"))
            elif code >= 500:
                span.set_status(Status(StatusCode.ERROR))
        span.end(end_ns)
        if self.tel.duration is not None:
            self._record(end_ns, code, error_type)
        # Break the request ↔ environ and request ↔ context cycles: freed without the GC.
        self.environ.pop(_ENV_KEY, None)
        self.ctx = _DONE

    def _annotate(
        self, span: trace.Span, code: int, error_type: str | None, disconnected: bool
    ) -> None:
        attrs: dict[str, Any] = {}
        if wsgi_environ.PROXY_FIX_KEY in self.environ:
            self.scheme = wsgi_environ.peer_attributes(self.environ, attrs)
        if self.route is not None:
            attrs[semconv.HTTP_ROUTE] = self.route
            span.update_name(f"{self.name} {self.route}")
        if code:
            attrs[semconv.HTTP_RESPONSE_STATUS_CODE] = code
        if error_type is not None:
            attrs[semconv.ERROR_TYPE] = error_type
        if self.streamed:
            attrs[semconv.HTTP_STREAM] = True
            attrs[semconv.HTTP_STREAM_CHUNKS] = self.chunks
            attrs[semconv.HTTP_STREAM_DISCONNECTED] = disconnected
            if self.first_ns:
                attrs[semconv.HTTP_TIME_TO_FIRST_BYTE] = (self.first_ns - self.start_ns) / 1e9
        span.set_attributes(attrs)

    def _record(self, end_ns: int, code: int, error_type: str | None) -> None:
        attrs: dict[str, Any] = {
            semconv.HTTP_REQUEST_METHOD: self.method,
            semconv.URL_SCHEME: self.scheme,
        }
        if self.route is not None:
            attrs[semconv.HTTP_ROUTE] = self.route
        if code:
            attrs[semconv.HTTP_RESPONSE_STATUS_CODE] = code
        if error_type is not None:
            attrs[semconv.ERROR_TYPE] = error_type
        self.tel.duration.record((end_ns - self.start_ns) / 1e9, attrs)  # type: ignore[union-attr]
        if self.first_ns and self.tel.stream_duration is not None:
            # A new dict: the SDK may keep the one it was given.
            stream = {k: attrs[k] for k in _STREAM_METRIC_KEYS if k in attrs}
            self.tel.stream_duration.record((end_ns - self.first_ns) / 1e9, stream)

    def safe_finish(self, exc: BaseException | None = None, disconnected: bool = False) -> None:
        try:
            self.finish(exc, disconnected)
        except Exception as error:
            report_internal_error("flask request end", error)


def _respond(req: _Request, body: Iterable[bytes]) -> Iterable[bytes]:
    wrapper = req.environ.get("wsgi.file_wrapper")
    # A server's file wrapper is left alone so that it can still use sendfile().
    if req.streamed and not (isinstance(wrapper, type) and isinstance(body, wrapper)):
        return wsgi_stream.ObservedBody(body, req)
    req.safe_finish()
    return body


def _wrap_call(original: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    def __call__(
        app: Flask, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        tel = _TELEMETRY
        if tel is None or _ENV_KEY in environ or _CONTRIB_FLAG in app.__dict__:
            return original(app, environ, start_response)
        try:
            req = _Request(tel, environ, start_response)
        except Exception as exc:
            report_internal_error("flask request start", exc)
            return original(app, environ, start_response)
        token = _attach(req.ctx)
        try:
            body = original(app, environ, req.start_response)
        except BaseException as exc:
            req.safe_finish(exc)
            raise
        else:
            return _respond(req, body)
        finally:
            _detach(token)

    __call__.__wrapped__ = original  # type: ignore[attr-defined]
    return __call__


# Set on an app by opentelemetry-instrumentation-flask's instrument_app() (Dify's ext_otel
# calls it): that app already gets a server span, and a second one would double every trace.
_CONTRIB_FLAG = "_is_instrumented_by_opentelemetry"


def _current_request() -> Request | None:
    if _cv_request is None:  # pragma: no cover
        import flask

        return flask.request._get_current_object() if flask.has_request_context() else None
    ctx = _cv_request.get(None)
    return None if ctx is None else ctx.request


def _wrap_dispatch(original: Callable[[Flask], Any]) -> Callable[[Flask], Any]:
    def full_dispatch_request(app: Flask) -> Any:
        request = _current_request()
        req = None if request is None else request.environ.get(_ENV_KEY)
        if req is None or req.ended:
            return original(app)
        try:
            req.dispatching(request)
        except Exception as exc:
            report_internal_error("flask dispatch", exc)
        try:
            response = original(app)
        except Exception as exc:
            req.view_failed(exc)
            raise
        try:
            # Error pages from HTTPExceptions look streamed (Flask runs them as WSGI apps),
            # but their body is in memory: only a success's lazy body is treated as a stream.
            req.streamed = response.status_code < 400 and response.is_streamed
        except Exception as exc:
            report_internal_error("flask response", exc)
        return response

    full_dispatch_request.__wrapped__ = original  # type: ignore[attr-defined]
    return full_dispatch_request


class FlaskInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Instruments every Flask app of the process (patches the ``Flask`` class).

    ``instrument(tracer_provider=..., meter_provider=...)`` takes optional providers (the
    global ones by default); calling it twice, or ``uninstrument()`` twice, is harmless.
    """

    _originals: dict[str, Any] = {}

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("flask >= 3.0",)

    def _instrument(self, **kwargs: Any) -> None:
        global _TELEMETRY  # noqa: PLW0603 - read on every request: a module global is fastest
        from flask import Flask

        if _TELEMETRY is not None:
            return
        settings = bootstrap.current_settings()
        version = bootstrap.__version__
        tracer = trace.get_tracer("difytrace.flask", version, kwargs.get("tracer_provider"))
        duration = stream_duration = None
        if settings.metrics_enabled:
            meter = metrics.get_meter("difytrace.flask", version, kwargs.get("meter_provider"))
            duration = histogram(
                meter, semconv.HTTP_SERVER_DURATION, semconv.HTTP_DURATION_BUCKETS_S
            )
            stream_duration = histogram(
                meter, semconv.HTTP_STREAM_DURATION, semconv.DURATION_BUCKETS_S
            )
        for name, wrap in (("__call__", _wrap_call), ("full_dispatch_request", _wrap_dispatch)):
            original = Flask.__dict__[name]
            self._originals[name] = original
            setattr(Flask, name, wrap(original))
        _TELEMETRY = _Telemetry(
            LeanTracer(tracer), duration, stream_duration, frozenset(settings.baggage_keys)
        )

    def _uninstrument(self, **kwargs: Any) -> None:
        global _TELEMETRY  # noqa: PLW0603 - see _instrument
        from flask import Flask

        _TELEMETRY = None  # a wrapper someone else wrapped again stays, as a pass-through
        for name, original in list(self._originals.items()):
            current = Flask.__dict__.get(name)
            if getattr(current, "__wrapped__", None) is original:
                setattr(Flask, name, original)
            del self._originals[name]
