"""What tokens cost, from the model catalogue's prices per 1K tokens.

Costs are integers in nano-USD (1e-9 USD) so sums over millions of requests
stay exact; a request is priced once, when it is metered, so a later change
of the catalogue does not rewrite history (as a bill does not).

The catalogue holds an input and an output price per 1K tokens. The rest are
Lapis's choices, after Azure's price list:

    cached input   half the input price (Azure's discount for the gpt-4o and
                   gpt-4o-mini families; newer families discount more, and the
                   catalogue has no field for it yet)
    Batch SKUs     half price (Global Batch and Data Zone Batch are 50% off)
    Provisioned    no per-token charge: provisioned deployments are billed per
                   PTU-hour, which Lapis does not meter; their tokens are still
                   counted
"""

from __future__ import annotations

from dataclasses import dataclass

from lapis.catalog import PROVISIONED_SKUS, Catalogue, ModelSpec

NANO_PER_USD = 1_000_000_000
CACHED_INPUT_FACTOR = 0.5
BATCH_FACTOR = 0.5
BATCH_SKUS = frozenset({"GlobalBatch", "DataZoneBatch"})
CURRENCY = "USD"


@dataclass(frozen=True, slots=True)
class Prices:
    """Nano-USD per token (floats: a price per token is rarely a whole nano-dollar)."""

    input: float
    cached_input: float
    output: float

    def cost(self, prompt: int, cached: int, completion: int) -> tuple[int, int, int]:
        """(input, cached input, output) cost in nano-USD; `prompt` includes the
        cached tokens, as OpenAI's usage counts them."""
        uncached = max(prompt - cached, 0)
        return round(uncached * self.input), round(cached * self.cached_input), round(completion * self.output)


FREE = Prices(0.0, 0.0, 0.0)


def prices_for(model: ModelSpec | None, sku: str) -> Prices:
    if model is None or sku in PROVISIONED_SKUS:
        return FREE
    factor = BATCH_FACTOR if sku in BATCH_SKUS else 1.0
    per_token_in = model.price_in_per_1k * NANO_PER_USD / 1000 * factor
    per_token_out = model.price_out_per_1k * NANO_PER_USD / 1000 * factor
    return Prices(per_token_in, per_token_in * CACHED_INPUT_FACTOR, per_token_out)


class PriceBook:
    """Prices by (model, sku), worked out once each (the meter asks per request)."""

    def __init__(self, catalogue: Catalogue):
        self.catalogue = catalogue
        self._cache: dict[tuple[str, str], Prices] = {}

    def get(self, model: str, sku: str) -> Prices:
        key = (model, sku)
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = prices_for(self.catalogue.model(model) if model else None, sku)
        return found


def usd(nano: int) -> float:
    return nano / NANO_PER_USD
