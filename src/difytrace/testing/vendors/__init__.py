"""Loopback fakes of Langfuse and LangSmith, with auth, schema checks and fault injection.

* :class:`FakeLangfuse` — ``POST /api/public/otel/v1/traces`` (OTLP protobuf or JSON, Basic
  auth) and the legacy ``POST /api/public/ingestion`` (answered 207 with per-event results).
  Like the real server, the OTLP endpoint answers 200 *before* validating: spans that break
  Langfuse's rules land in :attr:`FakeVendor.rejected`, not in the status code.
* :class:`FakeLangSmith` — ``POST /runs/batch`` and ``/runs/multipart`` (``x-api-key``),
  checking ids, ``trace_id``, ``dotted_order`` and ``parent_run_id``; 422 for a bad run.

Both upsert entities by id (as the vendors do) and count every write, so a test can tell a
re-send (:attr:`FakeVendor.rewrites`) from a duplicate entity (there are none by construction:
what a test checks is that no record ever shows up under a second id). Faults: :meth:`fail`
(next N requests: status, Retry-After, latency), :meth:`chaos` (a seeded random share of
requests). Plain classes, usable without pytest; the fixtures below wrap them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from difytrace.testing.vendors.base import FakeVendor, Fault, Write, new_key
from difytrace.testing.vendors.langfuse import FakeLangfuse, basic_auth
from difytrace.testing.vendors.langsmith import FakeLangSmith

__all__ = [
    "FakeLangSmith",
    "FakeLangfuse",
    "FakeVendor",
    "Fault",
    "Write",
    "basic_auth",
    "fake_langfuse",
    "fake_langsmith",
    "new_key",
]


@pytest.fixture
def fake_langfuse() -> Iterator[Any]:
    """A started :class:`FakeLangfuse`; add credentials with ``.credentials[...] = label``.

    Example::

        def test_delivery(fake_langfuse):
            fake_langfuse.add_project("pk-lf-1", "sk-lf-1", "tenant-a")
            ...  # route tenant-a to {"kind": "langfuse", "host": fake_langfuse.endpoint, ...}
            fake_langfuse.wait_for_count(1, timeout=30)
            assert fake_langfuse.rejected == []
    """
    with FakeLangfuse() as server:
        yield server


@pytest.fixture
def fake_langsmith() -> Iterator[Any]:
    """A started :class:`FakeLangSmith`; add API keys with ``.credentials[key] = label``.

    Example::

        def test_delivery(fake_langsmith):
            fake_langsmith.credentials["ls-key"] = "tenant-a"
            ...  # route tenant-a to {"kind": "langsmith", "endpoint": fake_langsmith.endpoint, ...}
            fake_langsmith.wait_for_count(1, timeout=30)
    """
    with FakeLangSmith() as server:
        yield server
