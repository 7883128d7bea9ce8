"""The price table: matching model names, the default for unknown models, costs."""

from __future__ import annotations

import math

import pytest
from pydantic import BaseModel, Field, ValidationError

from tokenward.money import EXAMPLE_PRICES, ModelPrice, PriceTable


def test_examples_cover_the_demo_models_and_are_priced() -> None:
    table = PriceTable.examples()
    for model in ("demo-1", "demo-mini", "gpt-4o", "claude-sonnet-4"):
        assert table.is_known(model)
        assert table.price(model).input > 0
    assert set(EXAMPLE_PRICES) <= set(table.root)


def test_cost_is_dollars_per_million_tokens() -> None:
    table = PriceTable.model_validate({"m": {"input": 2.5, "output": 10}})
    assert table.cost("m", 1_000_000, 0) == pytest.approx(2.5)
    assert table.cost("m", 1000, 500) == pytest.approx(0.0025 + 0.005)
    assert table.worst_case("m", 1000, 4096) == pytest.approx((1000 * 2.5 + 4096 * 10) / 1e6)
    assert table.cost("m", -5, -5) == 0.0


def test_dated_and_prefixed_names_match_their_family_longest_first() -> None:
    table = PriceTable.examples()
    assert table.price("gpt-4o-2024-08-06") == table.price("gpt-4o")
    assert table.price("gpt-4o-mini-2024-07-18") == table.price("gpt-4o-mini")
    assert table.price("GPT-4o-Mini") == table.price("gpt-4o-mini")
    assert table.price("openai/gpt-4o-mini") == table.price("gpt-4o-mini")
    assert table.price("claude-sonnet-4-20250514") == table.price("claude-sonnet-4")
    # A longer name that only shares letters is not the same model.
    assert not table.is_known("gpt-4oops")
    assert not table.is_known("o3x")


def test_unknown_models_cost_the_dearest_known_price_unless_a_default_is_set() -> None:
    table = PriceTable.model_validate({"cheap": {"input": 0.1, "output": 5}, "dear": {"input": 3, "output": 1}})
    assert table.default == ModelPrice(input=3, output=5)  # the dearest of each, never 0
    assert table.price("something-else") == table.default
    assert table.price(None) == table.default
    assert table.cost("something-else", 1_000_000, 1_000_000) == pytest.approx(8.0)

    configured = PriceTable.model_validate(
        {"cheap": {"input": 0.1, "output": 0.2}, "default": {"input": 50, "output": 50}}
    )
    assert configured.price("who-knows") == ModelPrice(input=50, output=50)
    assert not configured.is_known("default")

    examples = PriceTable.examples()
    dearest_in = max(p["input"] for p in EXAMPLE_PRICES.values())
    dearest_out = max(p["output"] for p in EXAMPLE_PRICES.values())
    assert examples.price("unknown-model") == ModelPrice(input=dearest_in, output=dearest_out)


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"m": {"input": -1, "output": 1}},
        {"m": {"input": math.inf, "output": 1}},
        {"m": {"input": 1}},
        {"m": {"input": 1, "output": 1, "extra": 2}},
        {"M": {"input": 1, "output": 1}, "m": {"input": 2, "output": 2}},
        {" ": {"input": 1, "output": 1}},
    ],
)
def test_bad_tables_are_refused(data: dict) -> None:
    with pytest.raises(ValidationError):
        PriceTable.model_validate(data)


def test_table_as_a_policy_section() -> None:
    class Section(BaseModel):
        prices: PriceTable = Field(default_factory=PriceTable.examples)

    assert Section().prices.is_known("demo-1")
    mine = Section.model_validate({"prices": {"my-model": {"input": 1, "output": 2}}}).prices
    assert mine.is_known("my-model") and not mine.is_known("demo-1")
    with pytest.raises(ValidationError) as err:
        Section.model_validate({"prices": {"my-model": {"input": "x", "output": 2}}})
    assert "my-model" in str(err.value)


def test_lookup_memo_is_bounded() -> None:
    table = PriceTable.examples()
    for i in range(10_000):
        table.price(f"random-{i}")
    assert len(table._index.memo) <= 4096
