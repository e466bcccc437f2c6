"""Offline pricing (overrides, cache- and reasoning-aware) and the offline token estimate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from difytrace.instrumentation.llm.pricing import PriceBook
from difytrace.instrumentation.llm.usage import (
    Usage,
    estimate_messages_tokens,
    estimate_text_tokens,
    read_usage,
)


def test_bundled_prices_with_cached_tokens_counted_once() -> None:
    cost = PriceBook().cost(
        "openai", "gpt-4o-mini", Usage(input_tokens=1000, output_tokens=100, cache_read_tokens=200)
    )
    assert cost is not None
    assert cost.input == pytest.approx((800 * 0.15 + 200 * 0.075) / 1e6)
    assert cost.output == pytest.approx(100 * 0.6 / 1e6)


def test_reasoning_tokens_are_part_of_output_not_added() -> None:
    book = PriceBook()
    plain = book.cost("openai", "gpt-4o-mini", Usage(input_tokens=10, output_tokens=100))
    reasoning = book.cost(
        "openai", "gpt-4o-mini", Usage(input_tokens=10, output_tokens=100, reasoning_tokens=80)
    )
    assert plain == reasoning


def test_overrides_win_and_unknown_models_have_no_price(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(
        json.dumps(
            {
                "gpt-4o-mini": {"input_mtok": 1, "output_mtok": 2},
                "dify/house-model": {"input_mtok": 10, "output_mtok": 20, "cache_write_mtok": 12.5},
            }
        )
    )
    book = PriceBook.from_file(str(path))
    cost = book.cost("openai", "gpt-4o-mini", Usage(input_tokens=1_000_000, output_tokens=0))
    assert cost is not None
    assert cost.total == pytest.approx(1.0)
    house = book.cost(
        "dify", "house-model", Usage(input_tokens=100, output_tokens=10, cache_creation_tokens=40)
    )
    assert house is not None
    assert house.input == pytest.approx((60 * 10 + 40 * 12.5) / 1e6)
    assert book.cost("nobody", "no-such-model-xyz", Usage(input_tokens=1)) is None


def test_read_usage_shapes() -> None:
    chat = read_usage(
        {
            "prompt_tokens": 10,
            "completion_tokens": 5,
            "prompt_tokens_details": {"cached_tokens": 4},
            "completion_tokens_details": {"reasoning_tokens": 2},
        }
    )
    assert chat == Usage(10, 5, 4, None, 2)
    responses = read_usage(
        {"input_tokens": 7, "output_tokens": 3, "input_tokens_details": {"cached_tokens": 0}}
    )
    assert responses == Usage(7, 3)
    anthropic = read_usage(
        {
            "prompt_tokens": 50,
            "completion_tokens": 1,
            "cache_read_input_tokens": 30,
            "cache_creation_input_tokens": 10,
        }
    )
    assert anthropic == Usage(50, 1, 30, 10)
    assert read_usage(None) is None
    assert read_usage({"total_tokens": 3}) is None


def test_offline_estimate_needs_no_tokenizer() -> None:
    assert estimate_text_tokens("") == 0
    assert estimate_text_tokens("abcd" * 10) == 10
    assert estimate_text_tokens("你好世界") == 4
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Hello there"}]},
    ]
    assert estimate_messages_tokens(messages) == 3 + (4 + 3) + (4 + 3)
