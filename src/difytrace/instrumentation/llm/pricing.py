"""Cost of a call in USD, offline: user overrides first, then the genai-prices snapshot.

``genai_prices.calc_price`` costs ~0.1 ms per call, more than the whole span; so the rates of
each (provider, model) are looked up once and the arithmetic is done here. Models with
token-tiered prices fall back to ``calc_price`` (exact, slower). Nothing is fetched from the
network: only the snapshot bundled with the package is read, on a background thread at
instrument time (:func:`warm`) so the first call does not pay the ~0.3 s load.

No double counting: input tokens include cached ones (the conventions' meaning), so uncached
input = input - cache read - cache write, each priced at its own rate; reasoning tokens are
part of output tokens and priced once, at the output rate.

Override file (``DIFYTRACE_LLM_PRICES_FILE``), prices in USD per million tokens::

    {"gpt-4o-mini": {"input_mtok": 0.15, "output_mtok": 0.6, "cache_read_mtok": 0.075},
     "openai/my-finetune": {"input_mtok": 0.3, "output_mtok": 1.2}}
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from difytrace.instrumentation.llm.usage import Usage

logger = logging.getLogger("difytrace")

#: semconv gen_ai.provider.name → genai-prices provider id
_PROVIDER_IDS = {
    "openai": "openai",
    "anthropic": "anthropic",
    "azure.ai.openai": "azure",
    "gcp.vertex_ai": "google",
    "gcp.gemini": "google",
    "gcp.gen_ai": "google",
    "aws.bedrock": "aws",
    "mistral_ai": "mistral",
    "x_ai": "x-ai",
    "deepseek": "deepseek",
    "groq": "groq",
    "cohere": "cohere",
    "perplexity": "perplexity",
}
_MTOK = 1_000_000


@dataclass(frozen=True, slots=True)
class Rates:
    """USD per token; None where the model has no separate rate."""

    input: float
    output: float
    cache_read: float | None = None
    cache_write: float | None = None
    tiered: Any = None  # the genai-prices model, when the exact slow path is needed


@dataclass(frozen=True, slots=True)
class Cost:
    """USD cost of one call."""

    input: float
    output: float

    @property
    def total(self) -> float:
        """Input plus output cost."""
        return self.input + self.output


def _rates_from_mtok(prices: dict[str, Any]) -> Rates:
    def rate(key: str) -> float | None:
        value = prices.get(key)
        return None if value is None else float(value) / _MTOK

    return Rates(
        input=rate("input_mtok") or 0.0,
        output=rate("output_mtok") or 0.0,
        cache_read=rate("cache_read_mtok"),
        cache_write=rate("cache_write_mtok"),
    )


class PriceBook:
    """Rates per (provider, model), from overrides then genai-prices; cached, thread-safe."""

    def __init__(self, overrides: dict[str, dict[str, Any]] | None = None) -> None:
        self._overrides = {k.lower(): _rates_from_mtok(v) for k, v in (overrides or {}).items()}
        self._cache: dict[tuple[str, str], Rates | None] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_file(cls, path: str) -> PriceBook:
        """A price book with the overrides of the JSON file at ``path`` (empty path: none)."""
        if not path:
            return cls()
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object of model → prices")
        return cls(data)

    def rates(self, provider: str, model: str) -> Rates | None:
        """The rates of ``model`` at ``provider``; None when unknown."""
        key = (provider, model)
        try:
            return self._cache[key]
        except KeyError:
            pass
        found = self._overrides.get(f"{provider}/{model}".lower()) or self._overrides.get(
            model.lower()
        )
        if found is None:
            found = _snapshot_rates(provider, model)
        with self._lock:
            self._cache[key] = found
        return found

    def cost(self, provider: str, model: str, usage: Usage) -> Cost | None:
        """USD cost of ``usage``; None when the model has no known price."""
        parts = self.cost_parts(
            provider,
            model,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            cache_creation_tokens=usage.cache_creation_tokens,
        )
        return None if parts is None else Cost(input=parts[0], output=parts[1])

    def cost_parts(
        self,
        provider: str,
        model: str,
        *,
        input_tokens: int | None,
        output_tokens: int | None,
        cache_read_tokens: int | None = None,
        cache_creation_tokens: int | None = None,
    ) -> tuple[float, float] | None:
        """(input, output) USD cost of these token counts; None when the model has no known
        price. The per-call path: no :class:`Usage` or :class:`Cost` to build."""
        rates = self._cache.get((provider, model)) or self.rates(provider, model)
        if rates is None:
            return None
        inp = input_tokens or 0
        cache_read = cache_read_tokens or 0
        cache_write = cache_creation_tokens or 0
        if rates.tiered is not None:
            exact = _exact_cost(
                rates.tiered, Usage(inp, output_tokens or 0, cache_read, cache_write)
            )
            return None if exact is None else (exact.input, exact.output)
        input_cost = max(inp - cache_read - cache_write, 0) * rates.input
        if cache_read:
            input_cost += cache_read * (
                rates.input if rates.cache_read is None else rates.cache_read
            )
        if cache_write:
            input_cost += cache_write * (
                rates.input if rates.cache_write is None else rates.cache_write
            )
        return input_cost, (output_tokens or 0) * rates.output


def _snapshot_rates(provider: str, model: str) -> Rates | None:
    try:
        from datetime import UTC, datetime

        from genai_prices import data_snapshot
    except ImportError:
        return None
    snapshot = data_snapshot.get_snapshot()
    provider_id = _PROVIDER_IDS.get(provider)
    try:
        _, info = snapshot.find_provider_model(model, None, provider_id, None)
    except LookupError:
        try:
            _, info = snapshot.find_provider_model(model, None, None, None)
        except LookupError:
            return None
    prices = info.get_prices(datetime.now(tz=UTC))
    fields = {
        k: getattr(prices, k, None)
        for k in ("input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok")
    }
    if any(v is not None and not _is_number(v) for v in fields.values()):
        return Rates(input=0.0, output=0.0, tiered=(provider_id, model))
    return _rates_from_mtok(fields)


def _is_number(value: Any) -> bool:
    from decimal import Decimal

    return isinstance(value, Decimal | int | float)


def _exact_cost(ref: tuple[str | None, str], usage: Usage) -> Cost | None:
    import genai_prices

    provider_id, model = ref
    try:
        calc = genai_prices.calc_price(
            genai_prices.Usage(
                input_tokens=usage.input_tokens or 0,
                output_tokens=usage.output_tokens or 0,
                cache_read_tokens=usage.cache_read_tokens or 0,
                cache_write_tokens=usage.cache_creation_tokens or 0,
            ),
            model,
            provider_id=provider_id,
        )
    except LookupError:
        return None
    return Cost(input=float(calc.input_price), output=float(calc.output_price))


def warm() -> None:
    """Load the bundled price snapshot on a daemon thread (local files only)."""

    def load() -> None:
        try:
            from genai_prices import data_snapshot

            data_snapshot.get_snapshot()
        except Exception:  # pricing is optional; a broken snapshot only disables it
            logger.debug("difytrace: genai-prices snapshot not loaded", exc_info=True)

    threading.Thread(target=load, name="difytrace-prices", daemon=True).start()
