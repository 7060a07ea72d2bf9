"""The run's :class:`~providers.budget.Budget`, built from ``budget:`` (``flows.budget_config``) and the store.

``budget: {usd: 25.0}`` limits what the batch spends, answers and judges together, over all its runs (what
earlier runs spent is read from the response store). ``providers`` limits single providers or judges (by
``source_id``, USD), ``judges_usd`` all judges together, ``tokens`` the input and output tokens of the whole
batch (a limit for providers without a price). README "Budgets".
"""

from __future__ import annotations

from typing import Any

from flows.budget_config import entries
from flows.config import RunConfig
from providers.budget import Budget, Limit
from providers.config import ProviderConfig
from providers.store_factory import StoreLike

_SPEND_QUERY = (
    "SELECT source_id, SUM(COALESCE(cost_usd, 0)), "
    "SUM(CASE WHEN cost_usd IS NULL AND ok = 1 THEN COALESCE(input_tokens, 0) ELSE 0 END), "
    "SUM(CASE WHEN cost_usd IS NULL AND ok = 1 THEN COALESCE(output_tokens, 0) ELSE 0 END), "
    "SUM(CASE WHEN cost_usd IS NULL AND ok = 1 THEN COALESCE(cached_input_tokens, 0) ELSE 0 END), "
    "SUM(CASE WHEN cost_usd IS NULL AND ok = 1 THEN COALESCE(cache_write_tokens, 0) ELSE 0 END), "
    "SUM(CASE WHEN ok = 1 THEN COALESCE(input_tokens, 0) + COALESCE(output_tokens, 0) ELSE 0 END) "
    "FROM responses GROUP BY source_id"
)


def spent_in_store(config: RunConfig, store: StoreLike) -> dict[str, tuple[float, int]]:
    """USD and tokens the stored results cost, by provider or judge ``source_id`` (``""`` for results of
    providers no longer in the config: they count against the batch's limits only).

    The recorded costs, plus (for answers stored before costs were recorded) their tokens at the provider's
    current price. One aggregate query: the store holds one batch.
    """
    owners: dict[str, ProviderConfig] = {p.source_id: p for _, _, p in entries(config.providers, config.judges)}
    spent: dict[str, tuple[float, int]] = {}
    for stored_id, recorded, inp, outp, cached, write, tokens in store.execute(_SPEND_QUERY):
        answer_of = str(stored_id).split("#", 1)[0]  # "<provider>#<k>": one of a provider's samples
        owner = owners.get(answer_of) or owners.get(str(stored_id).rsplit(":", 1)[0])  # "<judge>:<purpose>"
        usd = float(recorded or 0)  # type: ignore[arg-type]
        price = owner.effective_price if owner is not None else None
        if price is not None:
            usd += price.cost(int(inp or 0), int(outp or 0), int(cached or 0), int(write or 0))  # type: ignore[call-overload]
        key = owner.source_id if owner is not None else ""
        before_usd, before_tokens = spent.get(key, (0.0, 0))
        spent[key] = (before_usd + usd, before_tokens + int(tokens or 0))  # type: ignore[call-overload]
    return spent


def run_budget(config: RunConfig, store: StoreLike) -> Budget | None:
    """The run's budget (None without ``budget:``): its limits, each with what earlier runs spent (from the
    store), and an account per provider and judge naming the limits its requests count against.

    One shard of a sharded run (``flows/sharding``) gets its share of every limit (1 / shard count): shards
    run side by side, each with its own ledger, so their spend together stays within the batch's limits.
    """
    settings = config.budget
    if settings is None or not settings.has_limits:
        return None
    share = 1.0 / config.shard[1] if config.shard is not None else 1.0
    if share != 1.0:
        settings = settings.model_copy(
            update={
                "usd": None if settings.usd is None else settings.usd * share,
                "judges_usd": None if settings.judges_usd is None else settings.judges_usd * share,
                "tokens": None if settings.tokens is None else int(settings.tokens * share),
                "providers": {sid: usd * share for sid, usd in settings.providers.items()},
            }
        )
    spent = spent_in_store(config, store)
    all_usd = sum(usd for usd, _ in spent.values())
    all_tokens = sum(tokens for _, tokens in spent.values())
    budget = Budget()
    total = Limit("budget.usd", settings.usd, "usd", all_usd) if settings.usd is not None else None
    tokens = Limit("budget.tokens", settings.tokens, "tokens", all_tokens) if settings.tokens is not None else None
    judges = None
    if settings.judges_usd is not None:
        judges_spent = sum(spent.get(j.source_id, (0.0, 0))[0] for j in config.judges)
        judges = Limit("budget.judges_usd", settings.judges_usd, "usd", judges_spent)
    budget.limits += [lim for lim in (total, judges, tokens) if lim is not None]
    for field, _, provider in entries(config.providers, config.judges):
        usd_limits = [total] if total is not None else []
        if field == "judges" and judges is not None:
            usd_limits.append(judges)
        own = settings.providers.get(provider.source_id)
        if own is not None:
            mine = Limit(
                f"budget.providers.{provider.source_id}", own, "usd", spent.get(provider.source_id, (0.0, 0))[0]
            )
            budget.limits.append(mine)
            usd_limits.append(mine)
        budget.add_account(provider.source_id, usd_limits, [tokens] if tokens is not None else [], provider.worst_price)
    return budget


def budget_summary(budget: Budget | None) -> dict[str, Any] | None:
    """``summary.json``'s ``budget``: each limit with what was spent of it, whether one was reached and why."""
    return None if budget is None else budget.to_dict()
