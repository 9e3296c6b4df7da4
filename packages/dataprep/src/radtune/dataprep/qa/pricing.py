"""Token prices and the cost report of a generation run.

Prices are US dollars per million tokens (input, output) at the standard tier, as published by OpenAI when
this table was written; they change, so pass `--price-input/--price-output` or `--price-table FILE` (JSON or
YAML `{model: {input: ..., output: ...}}`) for current ones or for other providers. The Batch API costs half.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

BATCH_DISCOUNT = 0.5

DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
}


def load_price_table(path: str | Path | None = None) -> dict[str, tuple[float, float]]:
    """The default table updated with the entries of `path`.

    Raises:
        `ValueError`: an entry lacks `input` or `output`.
    """
    table = dict(DEFAULT_PRICES)
    if path is None:
        return table
    text = Path(path).read_text(encoding="utf-8")
    if str(path).endswith((".yaml", ".yml")):
        import yaml

        entries = yaml.safe_load(text) or {}
    else:
        entries = json.loads(text)
    for model, price in entries.items():
        if not isinstance(price, dict) or "input" not in price or "output" not in price:
            raise ValueError(f"{path}: the price of {model!r} needs `input` and `output` (dollars per 1M tokens)")
        table[model] = (float(price["input"]), float(price["output"]))
    return table


def price_for(model: str, table: dict[str, tuple[float, float]]) -> tuple[float, float] | None:
    """The (input, output) price of `model`; a dated snapshot (`gpt-4o-mini-2024-07-18`) falls back to its base."""
    if model in table:
        return table[model]
    candidates = [name for name in table if model.startswith(name + "-")]
    return table[max(candidates, key=len)] if candidates else None


@dataclass
class Usage:
    """Tokens spent by the requests of this run (cached results cost nothing and are counted apart)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    batch_prompt_tokens: int = 0
    batch_completion_tokens: int = 0
    requests: int = 0
    cached: int = 0

    def add(self, prompt_tokens: int, completion_tokens: int, batch: bool = False) -> None:
        if batch:
            self.batch_prompt_tokens += prompt_tokens
            self.batch_completion_tokens += completion_tokens
        else:
            self.prompt_tokens += prompt_tokens
            self.completion_tokens += completion_tokens

    def cost(self, price: tuple[float, float] | None) -> float | None:
        """Dollars spent, the Batch API's tokens at half price; `None` without a price."""
        if price is None:
            return None
        per_input, per_output = price[0] / 1e6, price[1] / 1e6
        online = self.prompt_tokens * per_input + self.completion_tokens * per_output
        batch = self.batch_prompt_tokens * per_input + self.batch_completion_tokens * per_output
        return online + BATCH_DISCOUNT * batch

    def report(self, model: str, price: tuple[float, float] | None) -> dict:
        cost = self.cost(price)
        return {
            "model": model,
            "requests": self.requests,
            "cached_reports": self.cached,
            "prompt_tokens": self.prompt_tokens + self.batch_prompt_tokens,
            "completion_tokens": self.completion_tokens + self.batch_completion_tokens,
            "batch_prompt_tokens": self.batch_prompt_tokens,
            "batch_completion_tokens": self.batch_completion_tokens,
            "price_per_million": None if price is None else {"input": price[0], "output": price[1]},
            "cost_usd": None if cost is None else round(cost, 6),
        }
