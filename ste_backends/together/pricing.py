"""Per-token prices for cost accounting of chat completions.

Prices come from the `prices` option (USD per million input / output tokens, per model) or, when
`price_lookup` is on, from Together's supported-models catalog (`GET /v2/supported-models`), looked
up once per model and cached. A model without a known price gets `cost_usd = None` (unknown), never
a made-up zero.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from ste_core.records import Usage

Price = tuple[float, float]  # USD per 1M (input, output) tokens


def cost_of(usage: Usage, price: Price | None, factor: float = 1.0) -> float | None:
    """USD for `usage` at `price` (None when the price is unknown)."""
    if price is None:
        return None
    return factor * (usage.prompt_tokens * price[0] + usage.completion_tokens * price[1]) / 1e6


class PriceBook:
    """Known prices plus a lazy, cached catalog lookup (one request per model, ever)."""

    def __init__(self, prices: Mapping[str, Price], lookup: bool) -> None:
        self._prices: dict[str, Price | None] = dict(prices)
        self._lookup = lookup
        self._lock = asyncio.Lock()

    async def price(self, client: Any, model: str) -> Price | None:
        if model in self._prices or not self._lookup:
            return self._prices.get(model)
        async with self._lock:
            if model not in self._prices:
                self._prices[model] = await _catalog_price(client, model)
        return self._prices[model]


async def _catalog_price(client: Any, model: str) -> Price | None:
    """The serverless price of `model` from the catalog; None when absent or on any error.

    A failed price lookup must never fail the completion it is attached to.
    """
    try:
        page = await client.models.list_supported(search=model, limit=20)
        for entry in getattr(page, "data", None) or []:
            pricing = getattr(entry, "pricing", None)
            if (
                getattr(entry, "name", None) == model
                and pricing is not None
                and pricing.input is not None
                and pricing.output is not None
            ):
                return float(pricing.input), float(pricing.output)
    except Exception:
        return None
    return None
