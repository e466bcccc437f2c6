"""Per-process pieces: each forked process reports metrics under its own instance id."""

from __future__ import annotations

import ast
import os
import warnings
from collections.abc import Callable, Sequence

from opentelemetry.sdk.metrics.export import MetricsData, ResourceMetrics
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from difytrace.forksafe import (
    SERVICE_INSTANCE_ID,
    DeferredSpanProcessor,
    LazySpanExporter,
    ProcessIdentity,
)


def _data(resource: Resource) -> MetricsData:
    return MetricsData(
        resource_metrics=[ResourceMetrics(resource=resource, scope_metrics=[], schema_url="")]
    )


def _instance_id(identity: ProcessIdentity, resource: Resource) -> str:
    [stamped] = identity.stamp(_data(resource)).resource_metrics
    return str(stamped.resource.attributes[SERVICE_INSTANCE_ID])


def test_stamp_keeps_the_resource_and_adds_a_stable_instance_id() -> None:
    identity = ProcessIdentity()
    resource = Resource({"service.name": "api", SERVICE_INSTANCE_ID: "made-in-the-parent"})
    first = _instance_id(identity, resource)
    assert first == identity.instance_id != "made-in-the-parent"
    assert _instance_id(identity, resource) == first
    [stamped] = identity.stamp(_data(resource)).resource_metrics
    assert stamped.resource.attributes["service.name"] == "api"


def test_a_forked_child_gets_its_own_instance_id() -> None:
    identity = ProcessIdentity()
    resource = Resource({"service.name": "api"})
    parent = _instance_id(identity, resource)
    read, write = os.pipe()
    with warnings.catch_warnings():  # 3.12 warns about fork() beside the plugin's threads
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # child: report its id and leave at once
        os.write(write, _instance_id(identity, resource).encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 100).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert child
    assert child != parent
    assert _instance_id(identity, resource) == parent


def _in_child(work: Callable[[], str]) -> str:
    """Run ``work`` in a forked child and return what it printed (the child exits at once)."""
    read, write = os.pipe()
    with warnings.catch_warnings():  # 3.12 warns about fork() beside the plugin's threads
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        try:
            os.write(write, work().encode())
        finally:
            os._exit(0)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 4096):
        chunks.append(chunk)
    os.close(read)
    os.waitpid(pid, 0)
    return b"".join(chunks).decode()


class _Recording(SpanExporter):
    """A stand-in exporter that remembers the process that built it."""

    def __init__(self) -> None:
        self.built_in = os.getpid()
        self.exported: list[str] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.exported += [span.name for span in spans]
        return SpanExportResult.SUCCESS


def test_the_exporter_is_built_anew_in_a_forked_child() -> None:
    built: list[_Recording] = []

    def factory() -> _Recording:
        built.append(_Recording())
        return built[-1]

    lazy = LazySpanExporter(factory)
    assert built == []  # nothing is built before the first export
    lazy.export([])
    assert [e.built_in for e in built] == [os.getpid()]

    def child() -> str:
        lazy.export([])
        return " ".join(str(e.built_in) for e in built)

    parent_pid, child_pid = _in_child(child).split()
    assert parent_pid == str(os.getpid())
    assert child_pid != parent_pid  # the child's exporter is its own, not the parent's copy


def test_a_forked_child_forgets_the_parents_queue_and_starts_its_own() -> None:
    """Spans the parent queued are the parent's to export; the child builds its own batch
    processor (and starts the rest of its telemetry) at its first span."""
    exported: list[str] = []
    first_spans: list[int] = []

    class Collect(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            exported.extend(f"{os.getpid()}:{span.name}" for span in spans)
            return SpanExportResult.SUCCESS

    processor = DeferredSpanProcessor(
        lambda: BatchSpanProcessor(Collect(), schedule_delay_millis=60_000),
        on_first_span=lambda: first_spans.append(os.getpid()),
    )
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("test")
    tracer.start_span("queued in the parent").end()  # waits in the parent's batch queue

    def child() -> str:
        tracer.start_span("made in the child").end()
        provider.force_flush()
        return repr((exported, first_spans))

    child_exported, child_first = ast.literal_eval(_in_child(child))
    assert child_exported == [f"{child_exported[0].split(':')[0]}:made in the child"]
    assert child_exported[0].split(":")[0] != str(os.getpid())
    assert len(child_first) == 2  # the parent's first span, then the child's own
    provider.force_flush()
    assert exported == [f"{os.getpid()}:queued in the parent"]
    provider.shutdown()
