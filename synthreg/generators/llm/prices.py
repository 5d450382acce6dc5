"""The pinned price table (``prices.json``): USD per 1M input/output tokens.

litellm's own cost lookup raises on unknown or custom models and changes with its
releases; ours is pinned in the repo so a recorded cost means the same thing later.
A model that is not in the table costs 0 and is reported ``priced=False`` (never an error).
Dated snapshots (``openai/gpt-4o-mini-2024-07-18``) are priced as their base model, and a
bare name (``gpt-4o``) as the OpenAI model of that name.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

__all__ = ["Cost", "estimate", "price_table", "price_table_version"]

_DATE_SUFFIX = re.compile(r"-\d{4}-?\d{2}-?\d{2}$")
_PER = 1_000_000


@dataclass(frozen=True)
class Cost:
    """A cost in USD, and whether the model was in the price table."""

    usd: float
    priced: bool


@lru_cache(maxsize=1)
def price_table() -> dict[str, Any]:
    """The parsed ``prices.json`` shipped with the package."""
    text = resources.files(__package__).joinpath("prices.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def price_table_version() -> str:
    """The ``version`` string of the pinned table."""
    return str(price_table()["version"])


def _lookup(model: str) -> dict[str, float] | None:
    models: dict[str, dict[str, float]] = price_table()["models"]
    candidates = [model, _DATE_SUFFIX.sub("", model)]
    if "/" not in model:
        candidates += [f"openai/{c}" for c in candidates]
    for candidate in candidates:
        if candidate in models:
            return models[candidate]
    return None


def estimate(model: str, prompt_tokens: int, completion_tokens: int) -> Cost:
    """The cost of a call to ``model`` (provider-qualified) with these token counts."""
    price = _lookup(model)
    if price is None:
        return Cost(0.0, False)
    usd = (prompt_tokens * price["input"] + completion_tokens * price["output"]) / _PER
    return Cost(round(usd, 10), True)
