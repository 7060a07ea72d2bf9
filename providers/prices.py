"""The price table shipped with the package (``providers/prices.json``): prices for common OpenAI and Anthropic
models, used when a provider's config gives no ``price`` (the config always wins).

The file records the date its prices were read (``as_of``) and the pages they were read from (``sources``);
``rlhf plan`` and the run report say when a price came from the table and warn once the table is older than
:data:`STALE_AFTER_DAYS`. A model is found by its exact name, or with a dated snapshot suffix removed
(``gpt-4o-2024-08-06`` and ``claude-sonnet-4-5-20250929`` are priced as ``gpt-4o`` and ``claude-sonnet-4-5``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date
from functools import cache
from importlib.resources import files
from typing import Any

STALE_AFTER_DAYS = 90
"""A table older than this many days is reported as possibly out of date."""

CONFIG = "config"
"""The price source of a price given in the provider's config."""

_SNAPSHOT = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8}|latest)$")


@dataclass(frozen=True, slots=True)
class TablePrice:
    """One model's row of the table: USD per million tokens, and the batch discount (a fraction)."""

    input_per_million: float
    output_per_million: float
    cached_input_per_million: float | None
    cache_write_per_million: float | None
    batch_discount: float


@dataclass(frozen=True, slots=True)
class PriceTable:
    """The table: its date, its sources and its rows by (kind, model)."""

    as_of: date
    sources: dict[str, str]
    rows: dict[tuple[str, str], TablePrice]

    def lookup(self, kind: str, model: str) -> TablePrice | None:
        """The row for ``model`` of ``kind`` (its dated snapshots included), None if the table lacks it."""
        row = self.rows.get((kind, model))
        if row is None:
            row = self.rows.get((kind, _SNAPSHOT.sub("", model)))
        return row

    @property
    def source(self) -> str:
        """How a price from the table is named: ``table 2026-12-08``."""
        return f"table {self.as_of.isoformat()}"

    def age_days(self, today: date | None = None) -> int:
        """Days since the table's prices were read."""
        return ((today or date.today()) - self.as_of).days

    def stale_warning(self, today: date | None = None) -> str | None:
        """A warning when the table is older than :data:`STALE_AFTER_DAYS`, else None."""
        age = self.age_days(today)
        if age <= STALE_AFTER_DAYS:
            return None
        return (
            f"the price table is {age} days old (prices of {self.as_of.isoformat()}): check "
            f"{', '.join(self.sources.values())} and give a price in the config where it changed"
        )


def _row(data: dict[str, Any]) -> TablePrice:
    return TablePrice(
        input_per_million=float(data["input"]),
        output_per_million=float(data["output"]),
        cached_input_per_million=None if data.get("cached_input") is None else float(data["cached_input"]),
        cache_write_per_million=None if data.get("cache_write") is None else float(data["cache_write"]),
        batch_discount=float(data.get("batch_discount", 0.5)),
    )


@cache
def price_table() -> PriceTable:
    """The shipped table (read once)."""
    raw = json.loads(files("providers").joinpath("prices.json").read_text(encoding="utf-8"))
    rows = {(kind, model): _row(entry) for kind, models in raw["models"].items() for model, entry in models.items()}
    return PriceTable(date.fromisoformat(raw["as_of"]), dict(raw["sources"]), rows)
