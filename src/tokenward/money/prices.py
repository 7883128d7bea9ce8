"""What a call costs: a price table per model, in US dollars per million tokens.

The policy's ``prices:`` section is a :class:`PriceTable`::

    prices:
      gpt-4o:  {input: 2.5, output: 10}     # USD per 1M input / output tokens
      demo-1:  {input: 5, output: 20}
      default: {input: 15, output: 75}      # any model not listed above

A model name matches its exact entry, else the longest entry it extends with ``-``
(``gpt-4o-2024-08-06`` is priced as ``gpt-4o``), else — for provider-prefixed names
such as ``openai/gpt-4o`` — the part after the last ``/``. Anything else is priced at
``default``; when no ``default`` is configured it is the most expensive input price and
the most expensive output price in the table, so an unknown model never costs 0.

:data:`EXAMPLE_PRICES` (used when a policy has no ``prices:`` section) are **examples**:
list prices of a few well-known models at one point in time, plus made-up prices for the
demo upstream's models. Put your provider's current prices in your policy.
"""

from __future__ import annotations

import math
from functools import cached_property
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, RootModel, field_validator

__all__ = ["DEFAULT_KEY", "EXAMPLE_PRICES", "ModelPrice", "PriceTable"]

DEFAULT_KEY = "default"
_PER_TOKEN = 1e-6  # prices are per million tokens
_LOOKUP_CACHE_MAX = 4096  # model names come from clients: keep the memo bounded

# EXAMPLES ONLY — check your provider's price list and set `prices:` in your policy.
EXAMPLE_PRICES: dict[str, dict[str, float]] = {
    "gpt-4o": {"input": 2.50, "output": 10.00},
    "gpt-4o-mini": {"input": 0.15, "output": 0.60},
    "gpt-4.1": {"input": 2.00, "output": 8.00},
    "gpt-4.1-mini": {"input": 0.40, "output": 1.60},
    "o3": {"input": 2.00, "output": 8.00},
    "text-embedding-3-small": {"input": 0.02, "output": 0.0},
    "text-embedding-3-large": {"input": 0.13, "output": 0.0},
    "claude-opus-4": {"input": 15.00, "output": 75.00},
    "claude-sonnet-4": {"input": 3.00, "output": 15.00},
    "claude-3-5-haiku": {"input": 0.80, "output": 4.00},
    # The demo upstream's models (tokenward.demo.upstream): made-up prices.
    "demo-1": {"input": 5.00, "output": 20.00},
    "demo-mini": {"input": 0.50, "output": 2.00},
}


class ModelPrice(BaseModel):
    """Price of one model: US dollars per million input and output tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: float = Field(ge=0, description="USD per 1M input (prompt) tokens")
    output: float = Field(ge=0, description="USD per 1M output (completion) tokens")

    @field_validator("input", "output")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("must be a finite number of dollars")
        return v

    def cost(self, input_tokens: int | float, output_tokens: int | float) -> float:
        """USD for this many tokens (negative counts are treated as 0)."""
        return (max(input_tokens, 0) * self.input + max(output_tokens, 0) * self.output) * _PER_TOKEN


class _Index:
    """Plain lookup structures (pydantic private attributes are slow on the hot path)."""

    __slots__ = ("default", "exact", "memo", "prefixes")

    def __init__(self, table: dict[str, ModelPrice]) -> None:
        named = {k.strip().lower(): p for k, p in table.items()}
        configured = named.pop(DEFAULT_KEY, None)
        self.exact = named
        self.prefixes = sorted(named.items(), key=lambda kv: -len(kv[0]))
        self.memo: dict[str, ModelPrice] = {}
        if configured is not None:
            self.default = configured
        else:  # never 0 for an unknown model: the dearest known input and output
            self.default = ModelPrice(
                input=max(p.input for p in named.values()),
                output=max(p.output for p in named.values()),
            )

    def match(self, name: str) -> ModelPrice | None:
        exact = self.exact.get(name)
        if exact is not None:
            return exact
        for key, price in self.prefixes:  # longest first
            if name.startswith(key) and name[len(key)] in "-@:":
                return price
        return None

    def lookup(self, model: str) -> ModelPrice:
        found = self.memo.get(model)
        if found is None:
            name = model.strip().lower()
            found = self.match(name)
            if found is None and "/" in name:  # provider/model
                found = self.match(name.rsplit("/", 1)[1])
            if found is None:
                found = self.default
            if len(self.memo) >= _LOOKUP_CACHE_MAX:
                self.memo.clear()
            self.memo[model] = found
        return found


class PriceTable(RootModel[dict[str, ModelPrice]]):
    """Model name -> :class:`ModelPrice`, with a ``default`` for unknown models."""

    model_config = ConfigDict(frozen=True)

    @field_validator("root")
    @classmethod
    def _valid_names(cls, v: dict[str, ModelPrice]) -> dict[str, ModelPrice]:
        if not v:
            raise ValueError("list at least one model, or a 'default' price")
        seen: dict[str, str] = {}
        for name in v:
            key = name.strip().lower()
            if not key:
                raise ValueError("a model name is empty")
            if key in seen:
                raise ValueError(f"{name!r} and {seen[key]!r} name the same model")
            seen[key] = name
        return v

    def model_post_init(self, context: Any, /) -> None:
        _ = self._index  # build it now, not on the first request

    @cached_property
    def _index(self) -> _Index:
        return _Index(self.root)

    @classmethod
    def examples(cls) -> PriceTable:
        """The shipped :data:`EXAMPLE_PRICES` (examples only: set your own in the policy)."""
        return cls.model_validate(EXAMPLE_PRICES)

    @property
    def default(self) -> ModelPrice:
        """The price used for models the table does not name."""
        return self._index.default

    def price(self, model: str | None) -> ModelPrice:
        """The price that applies to ``model`` (``None`` or unknown -> :attr:`default`)."""
        index = self._index
        return index.lookup(model) if model else index.default

    def is_known(self, model: str | None) -> bool:
        """True when ``model`` matches an entry rather than falling to the default."""
        return bool(model) and self._index.match(str(model).strip().lower()) is not None

    def cost(self, model: str | None, input_tokens: int | float, output_tokens: int | float) -> float:
        """USD charged for a call to ``model`` that used these tokens."""
        return self.price(model).cost(input_tokens, output_tokens)

    def worst_case(self, model: str | None, input_tokens: int | float, max_output_tokens: int | float) -> float:
        """USD to reserve before a call: its estimated input and its full output allowance."""
        return self.price(model).cost(input_tokens, max_output_tokens)
