"""``budget:`` in the run config and its checks at validate (README "Budgets"); the run's ledger is built
from it by ``flows.budget``.

``budget: {usd: 25.0}`` limits what the batch spends, answers and judges together, over all its runs (what
earlier runs spent is read from the response store). ``providers`` limits single providers or judges (by
``source_id``, USD), ``judges_usd`` all judges together, ``tokens`` the input and output tokens of the whole
batch (a limit for providers without a price).
"""

from __future__ import annotations

from collections.abc import Sequence

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from common.config_types import ConfigFloat, ConfigInt
from common.errors import InputProblem
from common.yaml_locations import problem_at
from providers.config import ProviderConfig
from providers.prices import price_table


class BudgetConfig(BaseModel):
    """``budget:``: spend limits checked before every request (README "Budgets")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    usd: ConfigFloat | None = Field(default=None, gt=0)
    providers: dict[str, ConfigFloat] = Field(default_factory=dict)
    judges_usd: ConfigFloat | None = Field(default=None, gt=0)
    tokens: ConfigInt | None = Field(default=None, gt=0)
    # For ``rlhf plan``'s expected cost: the mean answer length (tokens) expected of a provider or judge, by
    # source_id, where the store has none of its answers yet to measure it from.
    expected_output_tokens: dict[str, ConfigInt] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _something(self) -> BudgetConfig:
        if not self.has_limits and not self.expected_output_tokens:
            raise ValueError("give at least one limit: usd, providers, judges_usd or tokens")
        for source_id, usd in self.providers.items():
            if usd <= 0:
                raise ValueError(f"providers.{source_id}: must be greater than 0")
        return self

    @property
    def has_limits(self) -> bool:
        """Whether any limit is set (``expected_output_tokens`` alone only informs ``rlhf plan``)."""
        return self.usd is not None or bool(self.providers) or self.judges_usd is not None or self.tokens is not None


def entries(
    providers: Sequence[ProviderConfig], judges: Sequence[ProviderConfig]
) -> list[tuple[str, int, ProviderConfig]]:
    """``(field, index, config)`` of every provider and judge."""
    return [("providers", i, p) for i, p in enumerate(providers)] + [("judges", i, j) for i, j in enumerate(judges)]


def _priced_by_usd(budget: BudgetConfig, field: str, provider: ProviderConfig) -> bool:
    """Whether a USD limit counts this provider's (or judge's) requests."""
    return (
        budget.usd is not None
        or provider.source_id in budget.providers
        or (field == "judges" and budget.judges_usd is not None)
    )


def budget_problems(
    budget: BudgetConfig | None,
    providers: Sequence[ProviderConfig],
    judges: Sequence[ProviderConfig],
    name: str,
    root: yaml.Node | None,
) -> list[InputProblem]:
    """A budget that cannot be checked is no budget: a provider counted under a USD limit needs a known price
    (in its config, or the price table's), and ``budget.providers`` names providers or judges of the run."""
    if budget is None:
        return []
    problems = []
    everyone = entries(providers, judges)
    known = {p.source_id for _, _, p in everyone}
    for key, named in (("providers", budget.providers), ("expected_output_tokens", budget.expected_output_tokens)):
        for source_id in named:
            if source_id not in known:
                problems.append(
                    problem_at(
                        name,
                        root,
                        ("budget", key, source_id),
                        f"'{source_id}' is no provider or judge of this run (known: {', '.join(sorted(known))})",
                    )
                )
    table = price_table()
    for field, index, provider in everyone:
        if budget.has_limits and not _output_limit(provider):
            problems.append(
                problem_at(
                    name,
                    root,
                    (field, index, "params"),
                    "no output limit, so a budget cannot bound what a request may cost: set params.max_tokens "
                    "(or max_completion_tokens)",
                )
            )
        if _priced_by_usd(budget, field, provider) and provider.known_price is None:
            problems.append(
                problem_at(
                    name,
                    root,
                    (field, index, "price"),
                    f"no price known for {provider.kind} model '{provider.model}' (not in the price table of "
                    f"{table.as_of.isoformat()}), and a USD budget cannot be checked without one: give "
                    "price: {input_per_million: …, output_per_million: …}",
                )
            )
    return problems


def _output_limit(provider: ProviderConfig) -> bool:
    """Whether the provider's requests carry an output limit (an Anthropic request always does)."""
    params = provider.wire_params()
    return bool(params.get("max_completion_tokens") or params.get("max_tokens"))
