"""What a call cost: its usage at the price its provider is paid at, recorded on the result (and so in the store).

A result records ``cost_usd`` and ``price``, the price used (USD per million tokens after any batch discount,
and where it came from: ``config`` or ``table <date>``, ``providers.prices``). Reports, ``rlhf status`` and
exports add up the recorded costs; a result stored before costs were recorded is priced from its tokens at
the provider's current price (:func:`cost_of`).
"""

from __future__ import annotations

import json

from providers.config import Price, ProviderConfig
from providers.result import CallResult


def price_text(config: ProviderConfig) -> str | None:
    """The price a provider's results record (JSON), None when no price is known for it."""
    price = config.effective_price
    if price is None:
        return None
    data: dict[str, object] = {"source": config.price_source, **price.model_dump()}
    if config.is_batch:
        data["batch_discount"] = config.batch_discount
    return json.dumps(data, separators=(",", ":"))


def usage_cost(price: Price, result: CallResult) -> float:
    """USD for a result's usage at ``price`` (nothing for a result without one)."""
    return price.cost(
        result.input_tokens or 0,
        result.output_tokens or 0,
        result.cached_input_tokens or 0,
        result.cache_write_tokens or 0,
    )


def charge(result: CallResult, price: Price | None, text: str | None) -> CallResult:
    """Record on ``result`` what it cost at ``price`` and the price used (``text``); returns ``result``.

    An error is charged nothing (providers bill answers, not failed requests). Without a price nothing is set.
    """
    if price is None:
        return result
    result.cost_usd = usage_cost(price, result) if result.ok else 0.0
    result.price = text
    return result


def cost_of(result: CallResult, price: Price | None) -> float | None:
    """What a stored result cost: its recorded cost, else its usage at ``price`` (None if neither is known)."""
    if result.cost_usd is not None:
        return result.cost_usd
    if not result.ok:
        return 0.0
    return None if price is None else usage_cost(price, result)
