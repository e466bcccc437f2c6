"""The five difytrace dashboards: ops_trace, Celery, API, LLM usage, exporter health."""

from __future__ import annotations

from .board_app import api, celery_tasks
from .board_llm import exporter_health, llm_usage
from .board_ops import ops_trace

ALL = (ops_trace, celery_tasks, api, llm_usage, exporter_health)
