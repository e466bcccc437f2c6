"""Per-process pieces: each forked process reports metrics under its own instance id."""

from __future__ import annotations

import os
import warnings

from opentelemetry.sdk.metrics.export import MetricsData, ResourceMetrics
from opentelemetry.sdk.resources import Resource

from difytrace.forksafe import SERVICE_INSTANCE_ID, ProcessIdentity


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
