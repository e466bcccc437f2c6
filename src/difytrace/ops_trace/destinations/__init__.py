"""ops_trace destinations: Langfuse, LangSmith and generic OTLP, behind one interface."""

from __future__ import annotations

from difytrace.ops_trace.destinations.base import Destination, Outcome

__all__ = ["Destination", "Outcome"]
