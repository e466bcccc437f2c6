"""GenAI semantic-convention checks against the registry YAML shipped with difytrace.

``semconv_registry/`` holds the OpenTelemetry registry YAML (Apache-2.0, see its SOURCE.txt):
``v1.41`` is semantic-conventions v1.41.0, what difytrace emits by default; ``latest`` is a
semantic-conventions-genai snapshot, what it emits with
``OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental``. Needs PyYAML (in difytrace's
``ops_trace`` and ``dev`` extras).
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any, Literal

from difytrace import semconv_genai
from difytrace.testing._model import SpanSource, as_spans
from difytrace.testing.genai_validation import Registry

logger = logging.getLogger("difytrace.testing")
Mode = Literal["v1.41", "latest"]
#: The directory of the vendored registries, one subdirectory per mode.
REGISTRY_DIR = Path(__file__).parent / "semconv_registry"
_DIRECTORIES: dict[str, tuple[str, str]] = {
    "v1.41": ("v1.41", "semantic-conventions v1.41.0"),
    "latest": ("genai", "semantic-conventions-genai @ fe5608e (2026-08-03)"),
}


def _mode(mode: str | None) -> str:
    if mode is None:
        return "latest" if semconv_genai.latest_experimental() else "v1.41"
    if mode not in _DIRECTORIES:
        raise ValueError(f"GenAI registry mode {mode!r} is unknown: expected 'v1.41' or 'latest'")
    return mode


def genai_registry(mode: Mode | None = None) -> Registry:
    """The GenAI registry of ``mode`` (parsed once); None: the mode the environment asks for.

    Example:

    >>> registry = genai_registry("v1.41")
    >>> registry.attributes["gen_ai.request.model"].type
    'string'
    >>> registry.check_attributes("span 'chat'", {"gen_ai.request.temprature": 0.2})
    ["span 'chat': gen_ai.request.temprature is not in the registry"]
    """
    return _load(_mode(mode))


@functools.cache
def _load(mode: str) -> Registry:
    return Registry.load(REGISTRY_DIR / _DIRECTORIES[mode][0])


def assert_genai_valid(
    source: SpanSource,
    *,
    mode: Mode | None = None,
    allow_empty: bool = False,
    requests: Any = None,
) -> int:
    """Assert that the GenAI spans (and ``gen_ai.*`` metrics) of ``source`` follow the registry.

    ``source`` is a list of spans or anything with ``.spans()`` (``span_capture``, an
    ``OTLPReceiver``); its ``.metrics()``, when it has one, are checked too. ``mode`` defaults
    to the one ``OTEL_SEMCONV_STABILITY_OPT_IN`` selects. With no span carrying
    ``gen_ai.operation.name`` it fails (nothing was checked) unless ``allow_empty``. Returns
    the number of GenAI spans checked. ``requests``: the request body of each GenAI span in
    the order they started (``openai_server.requests`` will do), to check the attributes the
    request makes conditionally required (seed, n, output format, service tier, stream).
    Undocumented enum values are open-enum *information*: logged as warnings on the
    ``difytrace.testing`` logger and listed under a failure, never a failure themselves.
    Example::

        def test_chat_follows_semconv(span_capture, openai_server):
            client = openai.OpenAI(base_url=openai_server.base_url,
                                   api_key=openai_server.api_key)
            client.chat.completions.create(model="gpt-4o-mini", messages=[...])
            assert_genai_valid(span_capture)
    """
    __tracebackhide__ = True
    chosen = _mode(mode)
    spans = as_spans(source)
    reader = getattr(source, "metrics", None)
    metrics: dict[str, Any] = reader() if callable(reader) else {}
    checked = sum("gen_ai.operation.name" in s.attributes for s in spans)
    if not checked and not allow_empty:
        raise AssertionError(
            f"no GenAI span (with gen_ai.operation.name) among {len(spans)} span(s): nothing "
            "to validate; was the LLM call instrumented? (allow_empty=True accepts this)"
        )
    registry = genai_registry(chosen)  # type: ignore[arg-type]
    found = registry.findings(spans, metrics, requests=requests)
    problems = [f.message for f in found if f.level == "violation"]
    notes = [f.message for f in found if f.level != "violation"]
    for note in notes:
        logger.warning("GenAI semconv information: %s", note)
    if problems:
        listed = "\n".join(f"  - {p}" for p in problems)
        noted = "".join(f"\n  (information) {n}" for n in notes)
        raise AssertionError(
            f"{len(problems)} GenAI semantic-convention violation(s), mode {chosen!r} "
            f"({_DIRECTORIES[chosen][1]}), in {checked} GenAI span(s) and "
            f"{sum(n.startswith('gen_ai.') for n in metrics)} gen_ai.* metric(s):\n{listed}"
            f"{noted}"
        )
    return checked
