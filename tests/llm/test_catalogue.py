"""The LLM metrics are the catalogue's: what an instrumented call records is in
``semconv.METRICS`` (which the dashboards are generated from) with the same unit and kind."""

from __future__ import annotations

import openai

from difytrace import semconv
from difytrace.testing import SpanCapture
from difytrace.testing.openai_server import OpenAIServer, Reply

from .conftest import LLMSetup

_KINDS = {"histogram": {"histogram"}, "counter": {"sum"}}


def test_every_llm_metric_is_in_the_catalogue_with_its_unit(
    llm: LLMSetup, openai_server: OpenAIServer, span_capture: SpanCapture
) -> None:
    openai_server.script(Reply(include_usage=True))
    with openai.OpenAI(
        base_url=openai_server.base_url, api_key=openai_server.api_key, max_retries=0
    ) as client:
        list(
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
            )
        )
    catalogue = {spec.name: spec for spec in semconv.METRICS}
    recorded = span_capture.metrics()
    llm_names = {spec.name for spec in semconv.GENAI_METRICS}
    assert llm_names <= set(recorded)  # duration, tokens, time to first chunk, cost
    for name in llm_names:
        spec = catalogue[name]
        for point in recorded[name]:
            assert point.unit == spec.unit, name
            assert point.kind in _KINDS[spec.instrument], name
            assert set(point.attributes) <= set(spec.attributes), name
