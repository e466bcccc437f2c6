"""Scrubbing and truncation: secrets never reach an exported span; JSON stays valid JSON."""

from __future__ import annotations

import json
import re
import string
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode, Tracer

from difytrace import scrub
from difytrace.scrub import REDACTED, Scrubber, ScrubbingSpanExporter, truncate

ALNUM = string.ascii_letters + string.digits
SEPARATORS = st.sampled_from([" ", "\n", "\t", '"', "'", ",", ";", "(", ")", "<", ">", "|"])
filler = st.text(min_size=0, max_size=40)
token = st.text(alphabet=ALNUM, min_size=16, max_size=48)
password_chars = ALNUM + "!$%*+-_~.,;=&()"


@st.composite
def secret(draw: st.DrawFn) -> tuple[str, str]:  # noqa: PLR0911 - one return per kind
    """(text as it appears, the part that must not survive)."""
    kind = draw(st.sampled_from(["openai", "bearer", "url", "kv", "jwt", "aws", "langfuse"]))
    value = draw(token)
    if kind == "openai":
        value = "sk-" + draw(st.sampled_from(["", "proj-", "ant-api03-"])) + value
        return value, value
    if kind == "langfuse":
        value = draw(st.sampled_from(["sk-lf-", "pk-lf-"])) + value
        return value, value
    if kind == "bearer":
        return draw(st.sampled_from(["Bearer ", "bearer ", "Basic "])) + value, value
    if kind == "url":
        pw = draw(st.text(alphabet=password_chars, min_size=12, max_size=30))
        host = draw(st.sampled_from(["db.internal:5432", "redis", "10.0.0.3"]))
        return f"{draw(st.sampled_from(['postgres', 'redis', 'https']))}://app:{pw}@{host}/0", pw
    if kind == "kv":
        key = draw(st.sampled_from(["api_key", "API-KEY", "password", "client_secret", "token"]))
        sep = draw(st.sampled_from(["=", ": ", '": "', "="]))
        return f"{key}{sep}{value}", value
    if kind == "jwt":
        jwt = f"eyJ{value[:10]}.eyJ{value[10:]}.{value[::-1]}"
        return jwt, jwt
    aws = "AKIA" + draw(
        st.text(alphabet=string.ascii_uppercase + string.digits, min_size=16, max_size=16)
    )
    return aws, aws


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    parts=st.lists(st.tuples(filler, SEPARATORS, secret(), SEPARATORS), min_size=1, max_size=4),
    tail=filler,
)
def test_secrets_never_survive_redaction(
    parts: list[tuple[str, str, tuple[str, str], str]], tail: str
) -> None:
    text = "".join(f"{f}{a}{shown}{b}" for f, a, (shown, _), b in parts) + tail
    fillers = "".join(f for f, _, _, _ in parts) + tail
    for _, _, (_, hidden), _ in parts:
        assume(hidden not in fillers)
    out = Scrubber().redact(text)
    for _, _, (_, hidden), _ in parts:
        assert hidden not in out
    assert REDACTED in out


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=200),
    lambda children: (
        st.lists(children, max_size=8) | st.dictionaries(st.text(max_size=10), children, max_size=8)
    ),
    max_leaves=40,
)


@settings(max_examples=80, deadline=None)
@given(
    doc=st.one_of(
        st.lists(json_values, max_size=10),
        st.dictionaries(st.text(max_size=10), json_values, max_size=10),
    ),
    budget=st.integers(min_value=64, max_value=2048),
)
def test_truncation_keeps_valid_json_within_budget(doc: object, budget: int) -> None:
    text = json.dumps(doc, ensure_ascii=False)
    out = truncate(text, budget)
    assert len(out.encode()) <= max(budget, len(text.encode()) if out == text else budget)
    assert len(out.encode()) <= budget or out == text
    json.loads(out)  # still valid JSON
    if len(text.encode()) <= budget:
        assert out == text


@settings(max_examples=100, deadline=None)
@given(text=st.text(min_size=0, max_size=3000), budget=st.integers(min_value=16, max_value=1000))
def test_plain_text_truncation_respects_the_byte_budget(text: str, budget: int) -> None:
    out = truncate(text, budget)
    assert len(out.encode()) <= budget or out == text


@settings(max_examples=60, deadline=None)
@given(parts=st.lists(st.tuples(filler, SEPARATORS, secret(), SEPARATORS), min_size=1, max_size=3))
def test_exported_spans_carry_no_secret(parts: list[tuple[str, str, tuple[str, str], str]]) -> None:
    text = "".join(f"{f}{a}{shown}{b}" for f, a, (shown, _), b in parts)
    hidden = [h for _, _, (_, h), _ in parts]
    for h in hidden:
        assume(h not in "".join(f for f, _, _, _ in parts))
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(ScrubbingSpanExporter(memory, Scrubber())))
    span = provider.get_tracer("t").start_span(
        "chat",
        attributes={
            "gen_ai.input.messages": json.dumps(
                [{"role": "user", "parts": [{"type": "text", "content": text}]}]
            ),
            "url.full": text,
            "list": (text, "ok"),
            "http.request.header.authorization": "x",
        },
    )
    span.add_event("exception", {"exception.message": text})
    span.set_status(Status(StatusCode.ERROR, text))
    span.end()
    (exported,) = memory.get_finished_spans()
    dumped = exported.to_json()
    for h in hidden:
        assert h not in dumped
        assert json.dumps(h)[1:-1] not in dumped
    assert exported.attributes["http.request.header.authorization"] == REDACTED
    json.loads(exported.attributes["gen_ai.input.messages"])
    provider.shutdown()


class _Exploding(Scrubber):
    def redact(self, text: str) -> str:
        if "BOOM" in text:
            raise RuntimeError("scrubber bug")
        return super().redact(text)


def test_a_failing_value_is_dropped_not_the_span() -> None:
    scrubbed = _Exploding().attributes({"a": "fine", "b": "BOOM", "c": 3})
    assert scrubbed == {"a": "fine", "c": 3}


def test_span_budget_is_shared_by_the_largest_attributes() -> None:
    scrubber = Scrubber(max_attribute_bytes=10_000, max_span_bytes=12_000)
    attrs = {f"k{i}": "x" * 9000 for i in range(4)} | {"small": "keep me"}
    out = scrubber.attributes(attrs)
    assert out is not None
    assert out["small"] == "keep me"
    assert sum(len(v.encode()) for v in out.values()) <= 12_000 + 64


def test_pii_patterns_are_opt_in() -> None:
    text = "mail jane.doe@example.com card 4111 1111 1111 1111 order 1234567890123"
    assert Scrubber().redact(text) == text
    out = Scrubber(pii=("email", "credit_card")).redact(text)
    assert "jane.doe@example.com" not in out
    assert "4111 1111 1111 1111" not in out
    assert "1234567890123" in out  # fails the Luhn check: not a card number
    assert Scrubber(extra_pattern=r"order \d+").redact(text).endswith(REDACTED)


def test_clean_spans_are_passed_through_unchanged() -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(ScrubbingSpanExporter(memory, Scrubber())))
    with provider.get_tracer("t").start_as_current_span("chat", attributes={"a": "b", "n": 1}):
        pass
    (span,) = memory.get_finished_spans()
    assert dict(span.attributes or {}) == {"a": "b", "n": 1}
    provider.shutdown()


def _export(scrubber: Scrubber, build: Callable[[Tracer], None]) -> ReadableSpan:
    """One span built by ``build``, as the scrubbing exporter hands it on."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(ScrubbingSpanExporter(memory, scrubber)))
    build(provider.get_tracer("t"))
    provider.shutdown()
    (span,) = memory.get_finished_spans()
    return span


def test_a_lone_surrogate_neither_strips_the_span_nor_breaks_the_batch() -> None:
    """A long value holding a lone surrogate (JSON "\\ud800" decoded) made the span budgets
    raise: every attribute of the span was dropped. Now it is repaired like a secret, and the
    span still encodes to OTLP (a surrogate there fails the whole batch's export)."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    broken = json.loads('"' + "x" * 5000 + '\\ud800"')

    def build(tracer: Tracer) -> None:
        tracer.start_span("chat", attributes={"content": broken, "keep": "me", "n": 1}).end()

    span = _export(Scrubber(max_attribute_bytes=4096), build)
    attrs = dict(span.attributes or {})
    assert attrs["keep"] == "me"
    assert attrs["n"] == 1
    assert attrs["content"].startswith("xxx")
    assert len(attrs["content"].encode()) <= 4096
    assert encode_spans([span]).SerializeToString()


def test_span_budget_failure_falls_back_to_equal_shares(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object) -> dict[str, int]:
        raise RuntimeError("budget bug")

    monkeypatch.setattr("difytrace.scrub._span_budgets", broken)
    scrubber = Scrubber(max_attribute_bytes=10_000, max_span_bytes=12_000)
    attrs = {f"k{i}": "x" * 9000 for i in range(4)} | {"small": "keep me", "n": 7}
    out = scrubber.attributes(attrs)
    assert out is not None
    assert set(out) == set(attrs)  # nothing dropped
    assert out["small"] == "keep me"
    assert out["n"] == 7
    assert sum(len(v.encode()) for v in out.values() if isinstance(v, str)) <= 12_000


def test_a_failing_status_or_event_value_drops_only_that() -> None:
    def build(tracer: Tracer) -> None:
        span = tracer.start_span("chat", attributes={"a": "fine", "b": "BOOM"})
        span.add_event("exception", {"exception.message": "BOOM", "exception.type": "X"})
        span.add_event("BOOM event")
        span.set_status(Status(StatusCode.ERROR, "BOOM happened"))
        span.end()

    span = _export(_Exploding(), build)
    assert dict(span.attributes or {}) == {"a": "fine"}
    assert span.status.status_code == StatusCode.ERROR
    assert span.status.description is None
    assert [(e.name, dict(e.attributes or {})) for e in span.events] == [
        ("exception", {"exception.type": "X"}),
        (REDACTED, {}),
    ]


def test_span_names_are_scrubbed() -> None:
    secret = "sk-proj-" + "A1b2" * 8

    def build(tracer: Tracer) -> None:
        tracer.start_span(f"GET /callback?api_key={secret}").end()
        tracer.start_span("BOOM").end()

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(ScrubbingSpanExporter(memory, _Exploding())))
    build(provider.get_tracer("t"))
    provider.shutdown()
    names = [s.name for s in memory.get_finished_spans()]
    assert names == [f"GET /callback?api_key={REDACTED}", REDACTED]


def test_link_attributes_are_scrubbed_and_fail_safe() -> None:
    secret = "sk-proj-" + "Z9y8" * 8
    linked = trace.SpanContext(0x1, 0x2, is_remote=True)

    def build(tracer: Tracer) -> None:
        links = [
            trace.Link(linked, {"messaging.header": f"Bearer {secret}", "n": 1}),
            trace.Link(linked, {"note": "BOOM", "keep": "me"}),
            trace.Link(linked, {"clean": "yes"}),
        ]
        tracer.start_span("process task", links=links).end()

    span = _export(_Exploding(), build)
    assert [dict(link.attributes or {}) for link in span.links] == [
        {"messaging.header": f"Bearer {REDACTED}", "n": 1},
        {"keep": "me"},  # the value that failed to scrub is dropped alone
        {"clean": "yes"},
    ]
    assert all(link.context == linked for link in span.links)


def test_a_span_that_fails_to_scrub_is_exported_without_link_attributes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*_: object) -> ReadableSpan:
        raise RuntimeError("scrub bug")

    monkeypatch.setattr("difytrace.scrub.scrub_span", broken)
    linked = trace.SpanContext(0x1, 0x2, is_remote=True)

    def build(tracer: Tracer) -> None:
        tracer.start_span("job", links=[trace.Link(linked, {"token": "sk-abc"})]).end()

    span = _export(Scrubber(), build)
    assert [(link.context, dict(link.attributes or {})) for link in span.links] == [(linked, {})]


_RULE_MATCHES = st.one_of(
    *(st.from_regex(re.compile(pattern), fullmatch=False) for pattern, _ in scrub._SECRET_PATTERNS)
)
_NOISE = st.text(alphabet=string.printable + "éü€\u2028", max_size=40)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(before=_NOISE, found=_RULE_MATCHES, after=_NOISE)
def test_the_anchor_prefilter_never_changes_what_is_redacted(
    before: str, found: str, after: str
) -> None:
    """The cheap literal pre-filter skips the secret rules for values without an anchor: for
    text around anything a rule can match, redaction must be what the rules alone give."""
    text = before + found + after
    scrubber = Scrubber()
    expected = scrubber._redact(text) if scrubber._any.search(text) else text
    assert scrubber.redact(text) == expected
    assert scrubber.redact(text) == expected  # memoised too


def test_values_without_an_anchor_skip_the_rules() -> None:
    scrubber = Scrubber()
    assert not scrubber._may_match("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36")
    assert scrubber._may_match("Authorization: Bearer abcdefgh12345678")
    assert scrubber._may_match("lone \udc80 surrogate")  # non-ASCII: the surrogate rule
    assert Scrubber(pii=["email"])._may_match("ada@example.com")  # PII: no anchors apply


@pytest.mark.parametrize(
    "word",
    [
        "api_key", "api-key", "apikey", "APIKEY", "secret", "password", "passwd", "PWD",
        "access_token", "auth-token", "client_secret", "Authorization", "x-api-key", "token",
    ],
)  # fmt: skip
def test_every_secret_key_word_is_redacted(word: str) -> None:
    """Each key word of the key=value rule, alone in a value, passes the anchor pre-filter."""
    assert Scrubber().redact(f"{word}=hunter2hunter2") == f"{word}={REDACTED}"


def test_a_remembered_value_keeps_the_verdict_of_its_own_key() -> None:
    scrubber = Scrubber()
    for _ in range(2):
        assert scrubber.attributes({"password": "hunter2"}) == {"password": REDACTED}
        assert scrubber.attributes({"note": "hunter2"}) is None
        assert scrubber.attributes({"note": "key=sk-" + "a" * 20}) == {"note": f"key={REDACTED}"}
        assert scrubber.attributes({"password": ("a", "b")}) == {"password": (REDACTED, REDACTED)}
        assert scrubber.attributes({"reasons": ("a", "b")}) is None


def test_equal_clean_strings_of_later_spans_leave_them_unchanged() -> None:
    scrubber = Scrubber()
    # Each span's values are new string objects equal to earlier ones: no copy is needed.
    for _ in range(3):
        assert scrubber.attributes({"route": "".join(["/chat", "-messages"]), "n": 3}) is None


def test_a_remembered_short_value_is_still_cut_to_a_span_budget() -> None:
    scrubber = Scrubber(max_attribute_bytes=1000, max_span_bytes=1024)
    short = "y" * 256
    assert scrubber.attributes({"short": short}) is None  # alone it fits: remembered as is
    crowded = {"short": short} | {f"big{i}": "x" * 900 for i in range(5)}
    out = scrubber.attributes(crowded)
    assert out is not None
    assert len(out["short"].encode()) <= 1024 // 6
    assert out["short"].endswith(scrub.TRUNCATED)
