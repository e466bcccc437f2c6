"""Size budget: shrink an oversized record field by field, keeping it valid JSON.

Only payload fields are cut (inputs, outputs, metadata, error, document contents; on the
record and on each node), largest first, each replaced by a marker object that keeps a preview
and the original size. The paths cut are listed in ``metadata["difytrace.truncated"]``. A
record that is still over budget once every field is cut (thousands of nodes) is refused with
:class:`~difytrace.exceptions.RecordError`: it is dead-lettered and counted, never dropped
silently.
"""

from __future__ import annotations

import json
from typing import Any

from difytrace.exceptions import RecordError

MARKER_KEY = "_difytrace_truncated"
_FIELDS = ("inputs", "outputs", "metadata", "error", "content")
_PREVIEW_MIN = 64


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _size(value: Any) -> int:
    return len(_dumps(value).encode("utf-8", "replace"))


def marker(value: Any, keep_bytes: int) -> dict[str, Any] | str:
    """The replacement of a cut value: a preview of its JSON text and its original size.

    The preview is at most ``keep_bytes`` (or a small minimum) *as written out*: escapes
    (control characters become six bytes, quotes two) count, so planned savings hold.
    """
    text = value if isinstance(value, str) else _dumps(value)
    raw = text.encode("utf-8", "replace")
    limit = max(keep_bytes, _PREVIEW_MIN)
    preview = raw[:limit].decode("utf-8", "ignore")
    while preview and _size(preview) - 2 > limit:  # 2: the quotes around it
        preview = preview[: len(preview) // 2]
    return {MARKER_KEY: True, "original_bytes": len(raw), "preview": preview}


def _candidates(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any], str]]:
    """(path, container, key) of every cuttable field."""
    found = [(name, doc, name) for name in _FIELDS if doc.get(name) not in (None, {}, "")]
    for group in ("nodes", "documents"):
        for i, item in enumerate(doc.get(group) or ()):
            found.extend(
                (f"{group}[{i}].{name}", item, name)
                for name in _FIELDS
                if item.get(name) not in (None, {}, "")
            )
    return found


def fit(doc: dict[str, Any], budget: int) -> bytes:
    """Serialise ``doc`` (a record as JSON data) within ``budget`` bytes, cutting fields."""
    payload = _dumps(doc).encode("utf-8", "replace")
    if len(payload) <= budget:
        return payload
    sized = sorted(
        ((_size(c[k]), path, c, k) for path, c, k in _candidates(doc)),
        key=lambda item: item[0],
        reverse=True,
    )
    cut: list[str] = []
    # Room for the metadata key that lists the cut paths; each path listed adds its own size.
    excess = len(payload) - budget + _size({"difytrace.truncated": []}) + 1
    for size, path, container, key in sized:
        if excess <= 0:
            break
        excess += _size(path) + 1
        keep = max(size - excess, 0) // 2
        replacement = marker(container[key], keep)
        if key == "metadata":
            replacement = {"difytrace.truncated_metadata": replacement}
        elif key in ("error", "content"):
            replacement = _dumps(replacement)
        container[key] = replacement
        excess -= size - _size(replacement)
        cut.append(path)
    doc["metadata"] = {**(doc.get("metadata") or {}), "difytrace.truncated": cut}
    payload = _dumps(doc).encode("utf-8", "replace")
    if len(payload) > budget:
        raise RecordError(
            f"ops_trace record {doc.get('record_id')!r} is {len(payload)} bytes after cutting "
            f"{len(cut)} fields; the budget is {budget} bytes"
        )
    return payload
