"""What the demo prints at the end: where the same data goes in production, and how."""

from __future__ import annotations

from rich.console import Console
from rich.panel import Panel
from rich.text import Text

_GUIDE = """\
[bold]Live telemetry[/] (spans and metrics of every process) → OTLP/HTTP, to your collector:
  OTEL_EXPORTER_OTLP_ENDPOINT=http://otel-collector:4318   (Dify's OTLP_BASE_ENDPOINT works too)
  run under: opentelemetry-instrument gunicorn … / opentelemetry-instrument celery … worker
  or call difytrace.configure() with DIFYTRACE_ENABLED=true (Dify's ENABLE_OTEL=true)

[bold]ops_trace records[/] (workflow runs, messages, tools) → per tenant/app destinations:
  DIFYTRACE_OPS_TRACE_DESTINATIONS=/etc/difytrace/destinations.yaml
    default:
      - {kind: langfuse, host: https://cloud.langfuse.com, public_key: pk-lf-…,
         secret_key: "${LANGFUSE_SECRET_KEY}"}
      - {kind: langsmith, api_key: "${LANGSMITH_API_KEY}", project: dify}
      - {kind: otlp, endpoint: http://tempo:4318/v1/traces}   (a tracing backend)
  the app calls difytrace.ops_trace.submit(record); a worker delivers:
  celery -A difytrace.ops_trace.worker worker -Q ops_trace

[bold]Check it[/]: difytrace doctor   (each destination, the broker, the queue, with harmless
  requests)   ·   [bold]watch it locally[/]: difytrace receive, then point OTLP at it"""


def print_guide(console: Console) -> None:
    """Print the production pointers."""
    console.print(
        Panel(
            Text.from_markup(_GUIDE),
            title="where this data goes in production",
            title_align="left",
            expand=False,
        )
    )
