"""Secret/PII redaction and JSON-preserving truncation, applied to every span at export.

:class:`Scrubber` rewrites one attribute value at a time: secrets (API keys, bearer and basic
credentials, passwords in URLs, JWTs, values of secret-named keys) always, PII patterns when
configured, then truncation to a byte budget per attribute and per span. A JSON value stays
valid JSON after truncation (long strings are shortened, long lists cut, with markers). Span
and event names, link attributes and status descriptions are redacted too; lone surrogates,
which no exporter can encode, are replaced. Failing safe: an error while scrubbing one value
drops that value (a name becomes ``[REDACTED]``), never the rest of the span or the batch.

:class:`ScrubbingSpanExporter` wraps the real exporter, so the host's threads never pay for it
and every span of every instrumentation goes through it.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import Link, Status

from difytrace import semconv
from difytrace import semconv_genai as genai

logger = logging.getLogger("difytrace")

REDACTED = "[REDACTED]"
TRUNCATED = "…[truncated]"

# Start of a token: not after a letter or digit, or right after a JSON escape (\n, \t, ...)
# so that secrets inside JSON-encoded content are found too.
_B = r"(?:(?<![A-Za-z0-9_])|(?<=\\[nrtbf]))"
_B_ = r"(?:(?<![A-Za-z0-9])|(?<=\\[nrtbf]))"  # "_" allowed before (my_sk-...)

_KEYS = (
    r"(?i:api[_-]?key|apikey|secret|password|passwd|pwd|access[_-]?token|auth[_-]?token|"
    r"client[_-]?secret|authorization|x-api-key|token)"
)
_ASSIGN = r"(?:\\?[\"'])?\s*[:=]\s*(?:\\?[\"'])?"  # =, :, "key": "v", JSON-escaped quotes

# Each pattern: (regex, replacement). Group-preserving replacements keep the key visible.
_SECRET_PATTERNS: tuple[tuple[str, str], ...] = (
    # scheme://user:password@host → keep the user, drop the password
    (r"(?P<k>[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@\"'\\]*:)[^\s@/\"'\\]+(?=@)", r"\g<k>" + REDACTED),
    (r"(?P<k>" + _B + r"(?i:bearer|basic|token)\s+)[A-Za-z0-9._~+/\-]{8,}=*", r"\g<k>" + REDACTED),
    (
        _B_ + r"(?:sk|pk|rk)-[A-Za-z0-9_\-]{16,}",
        REDACTED,
    ),  # OpenAI, Anthropic, Langfuse, ...
    (_B + r"eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}", REDACTED),  # JWT
    (_B + r"(?:AKIA|ASIA)[0-9A-Z]{16}\b", REDACTED),  # AWS access key id
    (_B + r"gh[pousr]_[A-Za-z0-9]{30,}\b", REDACTED),  # GitHub
    (_B + r"xox[abprs]-[A-Za-z0-9\-]{10,}", REDACTED),  # Slack
    (_B + r"AIza[0-9A-Za-z_\-]{35}\b", REDACTED),  # Google API key
    (_B + r"lsv2_[a-z]{2}_[A-Za-z0-9_]{20,}", REDACTED),  # LangSmith
    # OpenAI's 401 echoes the key it refused ("Incorrect API key provided: sk-..."), whatever
    # its shape or length
    (
        r"(?P<k>(?i:api key provided):\s*)(?!\[REDACTED\])[^\s\"'&,;}{\\()<>\[\]|]+",
        r"\g<k>" + REDACTED,
    ),
    # key=value / "key": "value" for secret-looking keys; the value stops before another key
    (
        r"(?P<k>" + _B + _KEYS + _ASSIGN + r")(?!\[REDACTED\])(?:(?!" + _KEYS + _ASSIGN + r")"
        r"[^\s\"'&,;}{\\()<>\[\]|])+",
        r"\g<k>" + REDACTED,
    ),
)

#: A lone surrogate cannot be encoded as UTF-8: one would fail the export of the whole batch.
_UNENCODABLE = (r"[\ud800-\udfff]", "\ufffd")

#: Built-in PII patterns, enabled by name (``DIFYTRACE_PII_PATTERNS``).
PII_PATTERNS: dict[str, tuple[str, str]] = {
    "email": (r"\b[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}\b", "[EMAIL]"),
    "credit_card": (r"\b(?:\d[ \-]?){12,18}\d\b", "[CARD]"),
    "phone": (
        r"(?<![\w.])\+?\d{1,3}[ .\-]?\(?\d{2,4}\)?[ .\-]?\d{3,4}[ .\-]?\d{3,4}(?![\w.])",
        "[PHONE]",
    ),
    "ipv4": (r"\b(?:\d{1,3}\.){3}\d{1,3}\b", "[IP]"),
}

#: Lower-case text every secret rule needs somewhere in a match (each rule above holds one of
#: these literally, case aside): a value without any of them cannot match, and the full rules,
#: whose lookbehinds defeat the regex engine's literal scan, are skipped. One alternation of
#: plain literals over the lower-cased text keeps that scan (tests/llm/test_scrub.py checks
#: every rule's matches contain an anchor).
_SECRET_ANCHORS = (
    "://",  # user:password@ in URLs
    "bearer",
    "basic",
    "token",  # token credentials, access_token=, auth_token=
    "sk-",
    "pk-",
    "rk-",
    "eyj",  # JWT
    "akia",
    "asia",
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "xox",
    "aiza",
    "lsv2_",
    "api key provided",
    "key",  # api_key, apikey, x-api-key
    "secret",  # secret, client_secret
    "pass",  # password, passwd
    "pwd",
    "auth",  # authorization
)
_ANCHOR = re.compile("|".join(re.escape(anchor) for anchor in _SECRET_ANCHORS))
_SURROGATE = re.compile(_UNENCODABLE[0])

_SECRET_KEY = re.compile(
    r"(?i)(?:^|[._\-])(?:authorization|api[_-]?key|password|passwd|secret|cookie|set-cookie|"
    r"x-api-key|access[_-]?token|client[_-]?secret)$"
)
#: Keys whose values are enumerations or ids written by difytrace itself: never rewritten.
_SAFE_KEYS = frozenset(
    {
        genai.OPERATION_NAME,
        genai.PROVIDER_NAME,
        genai.LANGFUSE_OBSERVATION_TYPE,
        genai.LANGSMITH_SPAN_KIND,
        semconv.ERROR_TYPE,
        semconv.SERVER_ADDRESS,
    }
)
_MEMO_MAX = 4096
_MEMO_LEN = 256  # user agents, routes, model names: values repeated span after span
_DROPPED = object()  # an attribute the scrubber failed on: left out of the copy


class Scrubber:
    """Rewrites attribute values: secrets, PII, byte budgets. Thread-safe (no shared writes
    except a bounded memo of short values)."""

    def __init__(
        self,
        *,
        pii: Iterable[str] = (),
        extra_pattern: str = "",
        max_attribute_bytes: int = 16_384,
        max_span_bytes: int = 131_072,
    ) -> None:
        rules = [*_SECRET_PATTERNS, _UNENCODABLE]
        rules += [PII_PATTERNS[name] for name in pii if name in PII_PATTERNS]
        if extra_pattern:
            rules.append((extra_pattern, REDACTED))
        self._rules = [(re.compile(p), r) for p, r in rules]
        card = PII_PATTERNS["credit_card"][0]
        self._luhn_rules = {i for i, (p, _) in enumerate(rules) if p == card}
        # One pre-filter for all rules (named groups renamed away: they repeat across rules).
        self._any = re.compile("|".join(f"(?:{p.replace('(?P<k>', '(?:')})" for p, _ in rules))
        # Only the built-in secret rules have known anchors; PII or a user pattern may match
        # anything, so then every value goes through the combined pre-filter.
        self._anchored = len(rules) == len(_SECRET_PATTERNS) + 1
        self.max_attribute_bytes = max_attribute_bytes
        self.max_span_bytes = max_span_bytes
        self._memo: dict[str, str] = {}
        self._pairs: dict[tuple[str, Any], Any] = {}
        self._secret_keys: dict[str, bool] = {}

    def redact(self, text: str) -> str:
        """``text`` with every secret and configured PII pattern replaced."""
        if len(text) <= _MEMO_LEN:
            hit = self._memo.get(text)
            if hit is not None:
                return hit
        result = self._redact(text) if self._may_match(text) else text
        if len(text) <= _MEMO_LEN:
            if len(self._memo) >= _MEMO_MAX:
                self._memo.clear()
            self._memo[text] = result
        return result

    def _may_match(self, text: str) -> bool:
        if not self._anchored:
            return self._any.search(text) is not None
        if _ANCHOR.search(text.lower()) is not None:
            return self._any.search(text) is not None
        return not text.isascii() and _SURROGATE.search(text) is not None

    def _secret_key(self, key: str) -> bool:
        known = self._secret_keys.get(key)
        if known is None:
            known = _SECRET_KEY.search(key) is not None
            if len(self._secret_keys) < _MEMO_MAX:  # keys are few; a flood is not cached
                self._secret_keys[key] = known
        return known

    def _redact(self, text: str) -> str:
        for i, (rx, repl) in enumerate(self._rules):
            if i in self._luhn_rules:
                text = rx.sub(_luhn_replacer(repl), text)
            else:
                text = rx.sub(repl, text)
        return text

    def value(self, key: str, value: Any, budget: int | None = None) -> Any:
        """One attribute value scrubbed and truncated (strings, and strings inside lists)."""
        if key in _SAFE_KEYS:
            return value
        limit = self.max_attribute_bytes if budget is None else budget
        if isinstance(value, str):
            if self._secret_key(key):
                return REDACTED
            return truncate(self.redact(value), limit)
        if isinstance(value, tuple | list) and value and isinstance(value[0], str):
            if self._secret_key(key):
                return tuple(REDACTED for _ in value)
            share = max(limit // len(value), 64)
            return tuple(truncate(self.redact(v), share) for v in value)
        return value

    def attributes(self, attrs: Mapping[str, Any]) -> dict[str, Any] | None:
        """Scrubbed copy of ``attrs``, or None when nothing changed. Per attribute: an error
        drops that attribute only."""
        changes, text = self._changes(attrs, None)
        if text * 4 > self.max_span_bytes:  # may not fit the span budget: share it out
            budgets = self._budgets(attrs)
            if budgets:
                changes, _ = self._changes(attrs, budgets)
        if changes is None:
            return None
        return {
            key: changes.get(key, value)
            for key, value in attrs.items()
            if changes.get(key) is not _DROPPED
        }

    def _changes(
        self, attrs: Mapping[str, Any], budgets: Mapping[str, int] | None
    ) -> tuple[dict[str, Any] | None, int]:
        """(the new value of every attribute that changes, or ``_DROPPED``; None when none
        does, characters of text seen). Most spans change nothing: no copy is made for them."""
        changes: dict[str, Any] | None = None
        text = 0
        # Without span budgets a short value's result depends on its key and value alone.
        # Spans repeat the same pairs (models, routes, finish reasons), so one lookup stands
        # for the key check, the redaction and the truncation.
        pairs = self._pairs if budgets is None else None
        for key, value in attrs.items():
            kind = type(value)
            if kind is str:
                text += len(value)
            elif kind is int or kind is float or kind is bool:
                continue  # numbers and flags hold no text
            if key in _SAFE_KEYS:
                continue
            try:
                if pairs is not None and (
                    (kind is str and len(value) <= _MEMO_LEN) or _short_texts(value)
                ):
                    new = pairs.get((key, value))
                    if new is None:
                        new = self.value(key, value)
                        if len(pairs) >= _MEMO_MAX:
                            pairs.clear()
                        pairs[key, value] = new
                else:
                    new = self.value(key, value, None if budgets is None else budgets.get(key))
            except Exception:  # fail safe: drop the value, keep the rest of the span
                logger.debug("difytrace scrubber dropped attribute %s", key, exc_info=True)
                new = _DROPPED
            if new is not value and new != value:
                if changes is None:
                    changes = {}
                changes[key] = new
        return changes, text

    def _budgets(self, attrs: Mapping[str, Any]) -> dict[str, int]:
        try:
            return _span_budgets(attrs, self.max_attribute_bytes, self.max_span_bytes)
        except Exception:  # fail safe: equal shares need no sizing and still fit the span
            logger.debug("difytrace scrubber: span budgets failed", exc_info=True)
            return _equal_shares(attrs, self.max_attribute_bytes, self.max_span_bytes)

    def text(self, text: str) -> str | None:
        """``text`` (a span or event name, a status description) redacted, or None when
        redaction failed: the caller drops the text rather than export it unscrubbed."""
        try:
            return self.redact(text)
        except Exception:
            logger.debug("difytrace scrubber dropped a name or description", exc_info=True)
            return None


def _short_texts(value: Any) -> bool:
    """A few strings in a tuple (finish reasons): the SDK keeps a sequence of one type."""
    return type(value) is tuple and 0 < len(value) <= 4 and type(value[0]) is str


def _luhn_replacer(repl: str) -> Callable[[re.Match[str]], str]:
    def replace(match: re.Match[str]) -> str:
        digits = [int(c) for c in match.group(0) if c.isdigit()]
        total = 0
        for i, d in enumerate(reversed(digits)):
            total += d if i % 2 == 0 else (d * 2 - 9 if d > 4 else d * 2)
        return repl if total % 10 == 0 else match.group(0)

    return replace


def _span_budgets(attrs: Mapping[str, Any], per_attr: int, per_span: int) -> dict[str, int]:
    """Water-filling: when string attributes together exceed ``per_span`` bytes, the largest
    share the remainder equally."""
    if sum(len(v) for v in attrs.values() if isinstance(v, str)) * 4 <= per_span:
        return {}  # even at 4 bytes a character the strings fit: the common case
    sizes = {  # surrogatepass: a lone surrogate must not fail the sizing of the whole span
        k: len(v) * 4 if len(v) * 4 <= per_attr else len(v.encode("utf-8", "surrogatepass"))
        for k, v in attrs.items()
        if isinstance(v, str)
    }
    if sum(min(s, per_attr) for s in sizes.values()) <= per_span:
        return {}
    budgets: dict[str, int] = {}
    remaining, left = per_span, len(sizes)
    for key, size in sorted(sizes.items(), key=lambda kv: kv[1]):
        share = max(remaining // left, 64)
        budgets[key] = min(size, per_attr, share)
        remaining -= budgets[key]
        left -= 1
    return budgets


def _equal_shares(attrs: Mapping[str, Any], per_attr: int, per_span: int) -> dict[str, int]:
    """Every string attribute gets the same budget: the fallback when sizing failed."""
    keys = [k for k, v in attrs.items() if isinstance(v, str)]
    share = min(per_attr, max(per_span // max(len(keys), 1), 64))
    return dict.fromkeys(keys, share)


def truncate(text: str, budget: int) -> str:
    """``text`` cut to at most ``budget`` UTF-8 bytes; JSON documents stay valid JSON."""
    if len(text) * 4 <= budget:  # fast path: cannot be over budget
        return text
    size = len(text.encode())
    if size <= budget:
        return text
    if text[:1] in "[{":
        try:
            doc = json.loads(text)
        except ValueError:
            pass
        else:
            return _truncate_json(doc, budget)
    return _cut(text, budget)


def _cut(text: str, budget: int) -> str:
    room = max(budget - len(TRUNCATED.encode()), 0)
    return text.encode()[:room].decode("utf-8", "ignore") + TRUNCATED


def _dumps(doc: Any) -> str:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


def _cap_strings(doc: Any, cap: int) -> Any:
    if isinstance(doc, str):
        return doc if len(doc) <= cap else doc[:cap] + TRUNCATED
    if isinstance(doc, list):
        return [_cap_strings(v, cap) for v in doc]
    if isinstance(doc, dict):
        return {k: _cap_strings(v, cap) for k, v in doc.items()}
    return doc


def _truncate_json(doc: Any, budget: int) -> str:
    lo, hi, best = 0, _longest_string(doc), None
    while lo <= hi:  # the largest per-string cap that fits
        mid = (lo + hi) // 2
        text = _dumps(_cap_strings(doc, mid))
        if len(text.encode()) <= budget:
            best, lo = text, mid + 1
        else:
            hi = mid - 1
    if best is not None:
        return best
    capped = _cap_strings(doc, 16)
    if isinstance(capped, list):
        while capped:
            capped = capped[: len(capped) // 2]
            text = _dumps([*capped, TRUNCATED])
            if len(text.encode()) <= budget:
                return text
    if isinstance(capped, dict):
        items = list(capped.items())
        while items:
            items = items[: len(items) // 2]
            text = _dumps({**dict(items), "_truncated": True})
            if len(text.encode()) <= budget:
                return text
    return "[]" if isinstance(doc, list) else "{}" if budget >= 2 else ""


def _longest_string(doc: Any) -> int:
    if isinstance(doc, str):
        return len(doc)
    if isinstance(doc, list):
        return max((_longest_string(v) for v in doc), default=0)
    if isinstance(doc, dict):
        return max((_longest_string(v) for v in doc.values()), default=0)
    return 0


def scrub_span(span: ReadableSpan, scrubber: Scrubber) -> ReadableSpan:
    """``span`` itself when clean, else a copy with scrubbed name, attributes, events, link
    attributes and status. What fails to scrub is dropped alone: an attribute value, an
    event's or a link's value, the status description; a span name that fails becomes
    ``[REDACTED]``."""
    attrs = scrubber.attributes(span.attributes or {})
    events = _scrub_events(span.events, scrubber)
    links = _scrub_links(span.links, scrubber)
    status = _scrub_status(span.status, scrubber)
    name = scrubber.text(span.name)
    if name is None:
        name = REDACTED
    unchanged = attrs is None and events is None and links is None
    if unchanged and status is span.status and name == span.name:
        return span
    return ReadableSpan(
        name=name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=attrs if attrs is not None else span.attributes,
        events=events if events is not None else span.events,
        links=links if links is not None else span.links,
        kind=span.kind,
        status=status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def _scrub_status(status: Status, scrubber: Scrubber) -> Status:
    description = status.description
    if not description:
        return status
    clean = scrubber.text(description)
    if clean == description:
        return status
    return Status(status.status_code, clean)


def _scrub_events(events: Sequence[Event], scrubber: Scrubber) -> list[Event] | None:
    out: list[Event] = []
    changed = False
    for event in events:
        attrs = scrubber.attributes(event.attributes or {})
        name = scrubber.text(event.name)
        if attrs is None and name == event.name:
            out.append(event)
        else:
            changed = True
            kept = attrs if attrs is not None else event.attributes
            out.append(Event(name if name is not None else REDACTED, kept, event.timestamp))
    return out if changed else None


def _scrub_links(links: Sequence[Link], scrubber: Scrubber) -> list[Link] | None:
    if not links:  # the common case: no link, nothing to pay
        return None
    out: list[Link] = []
    changed = False
    for link in links:
        attrs = scrubber.attributes(link.attributes or {})
        if attrs is None:
            out.append(link)
        else:
            changed = True
            out.append(Link(link.context, attrs))
    return out if changed else None


class ScrubbingSpanExporter(SpanExporter):
    """Scrubs every span, then hands the batch to ``delegate``. A failure on one span drops
    that span's unsafe copy only: the span is exported with its attributes removed."""

    def __init__(self, delegate: SpanExporter, scrubber: Scrubber) -> None:
        self._delegate = delegate
        self._scrubber = scrubber

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        clean: list[ReadableSpan] = []
        for span in spans:
            try:
                clean.append(scrub_span(span, self._scrubber))
            except Exception:  # fail safe: never export an unscrubbed span
                logger.debug("difytrace scrubber failed on span %s", span.name, exc_info=True)
                clean.append(_bare(span))
        return self._delegate.export(clean)

    def shutdown(self) -> None:
        self._delegate.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._delegate.force_flush(timeout_millis)


def _bare(span: ReadableSpan) -> ReadableSpan:
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes={},
        events=(),
        links=[Link(link.context) for link in span.links],
        kind=span.kind,
        status=Status(span.status.status_code),
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def scrubber_from_settings(settings: Any) -> Scrubber:
    """The scrubber the settings describe (PII names, extra regex, byte budgets)."""
    return Scrubber(
        pii=getattr(settings, "pii_patterns", ()),
        extra_pattern=getattr(settings, "pii_regex", ""),
        max_attribute_bytes=getattr(settings, "max_attribute_bytes", 16_384),
        max_span_bytes=getattr(settings, "max_span_bytes", 131_072),
    )
