"""``normalize_trace(spans)``: a stable, JSON-ready view of spans for snapshot tests, and
``assert_snapshot(data, path)``: a JSON file snapshot of it (the ``trace_snapshot`` fixture).

syrupy (``JSONSnapshotExtension``) and inline-snapshot would do the file part as well; this
small helper exists so that a file snapshot needs no dependency beyond difytrace and pytest.
``normalize_trace`` output works with either of them unchanged.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Collection
from pathlib import Path
from typing import Any

from difytrace.testing._model import CapturedSpan, SpanSource, as_spans

IGNORED = "<ignored>"


def _order(spans: list[CapturedSpan]) -> list[CapturedSpan]:
    return sorted(spans, key=lambda s: (s.start_time_ns, -s.end_time_ns, s.name))


def _replace_ids(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str):
        return ids.get(value, value)
    if isinstance(value, tuple | list):
        return [_replace_ids(v, ids) for v in value]
    if isinstance(value, dict):
        return {k: _replace_ids(v, ids) for k, v in sorted(value.items())}
    return value


def _attributes(
    values: dict[str, Any], ids: dict[str, str], ignore: Collection[str]
) -> dict[str, Any]:
    return {
        k: IGNORED if k in ignore or k in ALWAYS_IGNORED else _replace_ids(v, ids)
        for k, v in sorted(values.items())
    }


#: Attributes no snapshot can keep: a stack trace holds absolute paths and library line numbers.
ALWAYS_IGNORED = frozenset({"exception.stacktrace"})


def normalize_trace(
    spans: SpanSource,
    *,
    ignore_attributes: Collection[str] = (),
    include_resource: bool = False,
) -> dict[str, Any]:
    """Spans as ``{"spans": [...]}`` with stable ids and clocks.

    Spans are sorted by start time; trace ids become ``t1``, ``t2`` … and span ids ``s1``,
    ``s2`` … in that order (also where an attribute value equals one of them). Times become
    ranks: every start and end time of a trace is replaced by its position among them, so
    the snapshot keeps the ordering (who started first, who ended last) but not the
    durations. Attributes named in ``ignore_attributes`` show as ``"<ignored>"``, and so does
    ``exception.stacktrace`` always (paths differ from machine to machine). The result
    is plain JSON (lists, dicts, strings, numbers; keys sorted). Example:

    >>> from opentelemetry import trace
    >>> from difytrace.testing import install_global_capture
    >>> capture = install_global_capture(); capture.clear()
    >>> tracer = trace.get_tracer("doc")
    >>> with tracer.start_as_current_span("POST /chat", attributes={"took": 0.2}):
    ...     with tracer.start_as_current_span("llm"):
    ...         pass
    >>> [(s["id"], s["name"], s["parent"], s["start"], s["end"], s["attributes"])
    ...  for s in normalize_trace(capture, ignore_attributes={"took"})["spans"]]
    [('s1', 'POST /chat', None, 0, 3, {'took': '<ignored>'}), ('s2', 'llm', 's1', 1, 2, {})]
    """
    ordered = _order(as_spans(spans))
    ids: dict[str, str] = {}
    for span in ordered:
        ids.setdefault(span.trace_id, f"t{sum(v.startswith('t') for v in ids.values()) + 1}")
    for n, span in enumerate(ordered, 1):
        ids.setdefault(span.span_id, f"s{n}")
    clocks: dict[str, dict[int, int]] = {}
    for span in ordered:
        clocks.setdefault(span.trace_id, {})
    for trace_id, clock in clocks.items():
        times = sorted(
            {t for s in ordered if s.trace_id == trace_id for t in (s.start_time_ns, s.end_time_ns)}
        )
        clock.update({t: i for i, t in enumerate(times)})
    out = []
    for span in ordered:
        clock = clocks[span.trace_id]
        entry: dict[str, Any] = {
            "name": span.name,
            "trace": ids[span.trace_id],
            "id": ids[span.span_id],
            "parent": ids.get(span.parent_span_id or "", span.parent_span_id and "<remote>"),
            "kind": span.kind,
            "status": span.status_code,
            "start": clock[span.start_time_ns],
            "end": clock[span.end_time_ns],
            "scope": span.scope_name,
            "attributes": _attributes(span.attributes, ids, ignore_attributes),
        }
        if span.status_description:
            entry["status_description"] = span.status_description
        if span.events:
            entry["events"] = [
                {"name": name, "attributes": _attributes(a, ids, ignore_attributes)}
                for name, a in span.events
            ]
        if span.links:
            entry["links"] = [
                {
                    "trace": ids.get(t, t),
                    "span": ids.get(s, s),
                    "attributes": _attributes(a, ids, ignore_attributes),
                }
                for t, s, a in span.links
            ]
        if include_resource:
            entry["resource"] = _attributes(span.resource, ids, ignore_attributes)
        out.append(entry)
    return {"spans": out}


def snapshot_text(data: Any) -> str:
    """``data`` as the JSON text a snapshot file holds: sorted keys, 2-space indent.

    >>> print(snapshot_text({"b": [1, 2], "a": "é"}))
    {
      "a": "é",
      "b": [
        1,
        2
      ]
    }
    <BLANKLINE>
    """
    try:
        return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    except (TypeError, ValueError) as exc:
        raise TypeError(f"snapshot data is not JSON-serialisable: {exc}") from None


def assert_snapshot(
    data: Any, path: str | Path, *, update: bool = False, create: bool = True
) -> bool:
    """Compare ``data`` with the JSON file at ``path``; write the file if missing or ``update``.

    With ``create=False`` (the plugin's choice when the ``CI`` variable is set) a missing file
    fails instead: a snapshot never committed would otherwise pass on every CI run, proving
    nothing. Returns True when the file was written. On a difference the AssertionError shows a
    unified diff (``-`` the file, ``+`` this run). The file may be edited by hand: it is
    compared by content, not by formatting. Example:

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "chat.json"
    >>> assert_snapshot({"spans": [{"name": "POST /chat"}]}, path)
    True
    >>> assert_snapshot({"spans": [{"name": "POST /chat"}]}, path)
    False
    >>> assert_snapshot({"spans": [{"name": "GET /chat"}]}, path)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    AssertionError: snapshot ... differs ...
    """
    __tracebackhide__ = True
    path = Path(path)
    actual = snapshot_text(data)
    if not update and not create and not path.exists():
        raise AssertionError(
            f"snapshot {path} is missing and CI is set: run the test locally (it writes the "
            "file) and commit it"
        )
    if update or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8")
        return True
    stored_raw = path.read_text(encoding="utf-8")
    try:
        stored = snapshot_text(json.loads(stored_raw))
    except ValueError as exc:
        raise AssertionError(f"snapshot {path} is not JSON ({exc}): fix or delete it") from None
    if stored == actual:
        return False
    diff = difflib.unified_diff(
        stored.splitlines(), actual.splitlines(), "snapshot", "this run", lineterm="", n=2
    )
    raise AssertionError(
        f"snapshot {path} differs (- snapshot, + this run); "
        "accept with pytest --difytrace-update-snapshots:\n" + "\n".join(diff)
    )


class TraceSnapshot:
    """The ``trace_snapshot`` fixture: ``trace_snapshot(span_capture)`` normalises the trace
    and compares it with ``snapshots/<test module>/<test name>.json`` beside the test file.

    The file is written on the first run (not when the ``CI`` variable is set: there a missing
    file fails) and with ``pytest --difytrace-update-snapshots``; a second call in the same test
    uses ``<test name>.2.json`` (or pass ``name=``). Keyword arguments go to
    :func:`normalize_trace`. Example::

        def test_chat_trace(client, span_capture, trace_snapshot, deterministic_ids):
            client.post("/chat", json={"query": "hi"})
            trace_snapshot(span_capture, ignore_attributes={"user_agent.original"})
    """

    def __init__(
        self, directory: Path, test_name: str, *, update: bool = False, create: bool = True
    ) -> None:
        self.directory = directory
        self.test_name = re.sub(r"[^\w.-]+", "_", test_name).strip("_")
        self.update = update
        self.create = create
        #: Files written during this test (reported at the end of the session).
        self.written: list[Path] = []
        self._calls = 0

    def path(self, name: str | None = None) -> Path:
        """The file of the next call: ``<test name>.json``, then ``<test name>.2.json`` …

        >>> str(TraceSnapshot(Path("snapshots/test_app"), "test_chat[gpt-4o]").path())
        'snapshots/test_app/test_chat_gpt-4o.json'
        """
        if name is None:
            n = self._calls + 1
            name = self.test_name if n == 1 else f"{self.test_name}.{n}"
        return self.directory / f"{name}.json"

    def __call__(
        self, source: SpanSource, *, name: str | None = None, **normalize: Any
    ) -> dict[str, Any]:
        """Assert the snapshot of ``normalize_trace(source, **normalize)``; returns it."""
        __tracebackhide__ = True
        path = self.path(name)
        self._calls += 1
        data = normalize_trace(source, **normalize)
        if assert_snapshot(data, path, update=self.update, create=self.create):
            self.written.append(path)
        return data
