"""Expose this process's metrics on a Prometheus ``/metrics`` endpoint (optional extra
``difytrace[prometheus]``).

The default path is OTLP to a collector, whose ``prometheus`` exporter Prometheus scrapes.
This is for setups without a collector, and for the dashboard tests: series names are those of
:attr:`difytrace.semconv.MetricSpec.prometheus_name`, the same as the collector writes.
Call :func:`serve` before :func:`difytrace.configure`: the meter provider it installs is kept.
With several processes per host (gunicorn, Celery prefork) give each its own port.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource

__all__ = ["PrometheusEndpoint", "serve"]


@dataclass(frozen=True)
class PrometheusEndpoint:
    """A running ``/metrics`` endpoint: where it listens and the provider it feeds from."""

    host: str
    port: int
    meter_provider: MeterProvider
    _server: Any

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving (the meter provider stays installed)."""
        self._server.shutdown()
        self._server.server_close()


def serve(
    *, port: int = 9464, host: str = "127.0.0.1", resource: Resource | None = None
) -> PrometheusEndpoint:
    """Install a global meter provider read by Prometheus and serve it on ``host:port``.

    ``port=0`` picks a free port (see :attr:`PrometheusEndpoint.port`). Raises
    ``ModuleNotFoundError`` when the ``prometheus`` extra is not installed.
    """
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import REGISTRY
    from prometheus_client.exposition import ThreadingWSGIServer, make_wsgi_app

    class _QuietHandler(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # one line per scrape: no
            pass

    from difytrace.bootstrap import build_resource, current_settings

    reader = PrometheusMetricReader()
    provider = MeterProvider(
        resource=resource or build_resource(current_settings()), metric_readers=[reader]
    )
    metrics.set_meter_provider(provider)
    server = make_server(
        host, port, make_wsgi_app(REGISTRY), ThreadingWSGIServer, handler_class=_QuietHandler
    )
    thread = threading.Thread(target=server.serve_forever, name="difytrace-prometheus")
    thread.daemon = True
    thread.start()
    return PrometheusEndpoint(host, server.server_port, provider, server)
