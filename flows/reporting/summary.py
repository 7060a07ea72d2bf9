"""Per-provider and per-run counts, written as ``summary.json``."""

from __future__ import annotations

import statistics
from array import array
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from providers.config import Price
from providers.costs import cost_of
from providers.limits import ProviderLimiter
from providers.result import BUDGET, INTERRUPTED, SKIPPED, CallResult


def percentile(values: array, q: float) -> float | None:
    """The ``q``-th percentile of ``values`` (nearest rank), None when there are none."""
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 1)
    return round(statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1], 1)


@dataclass
class ProviderTally:
    """What one provider did for this run's prompts."""

    source_id: str
    model: str
    price: Price | None = None  # what this provider is paid at (batch mode: less the batch discount)
    mode: str = "online"
    online_price: Price | None = None  # the online price, for the batch saving
    price_source: str | None = None  # "config", "table <date>" (providers/prices.json), or None: no price
    requested: int = 0
    answered: int = 0
    failed: int = 0
    skipped: int = 0
    interrupted: int = 0
    over_budget: int = 0  # not sent: a budget limit would have been crossed
    pending_in_batches: int = 0  # requests waiting in a provider batch (a run that returned without waiting)
    called_this_run: int = 0
    reused_from_store: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    usage_unknown: int = 0  # answers whose token counts were missing or not believable: cost is a lower bound
    finish_reasons: Counter = field(default_factory=Counter)
    retries: int = 0
    failure_reasons: Counter = field(default_factory=Counter)
    latencies_ms: array = field(default_factory=lambda: array("d"))
    breaker: str | None = None
    limits: dict[str, Any] = field(default_factory=dict)
    costed: float = 0.0  # the recorded costs of the results counted (or their usage at ``price``)
    costed_results: int = 0  # results with a known cost

    def add(self, result: CallResult) -> None:
        """Count one stored result (the latest for its fingerprint), and what it cost as recorded."""
        self.requested += 1
        self.retries += max(0, result.attempts - 1)
        if result.made:
            cost = cost_of(result, self.price)
            if cost is not None:
                self.costed += cost
                self.costed_results += 1
        if result.ok:
            self.answered += 1
            self.input_tokens += result.input_tokens or 0
            self.output_tokens += result.output_tokens or 0
            self.reasoning_tokens += result.reasoning_tokens or 0
            self.cached_input_tokens += result.cached_input_tokens or 0
            self.cache_write_tokens += result.cache_write_tokens or 0
            if result.input_tokens is None or result.output_tokens is None:
                self.usage_unknown += 1
            self.finish_reasons[result.finish_reason or "unknown"] += 1
            self.latencies_ms.append(result.latency_ms)
        elif result.error_type == SKIPPED:
            self.skipped += 1
        elif result.error_type == INTERRUPTED:
            self.interrupted += 1
        elif result.error_type == BUDGET:
            self.over_budget += 1
        else:
            self.failed += 1
            self.failure_reasons[result.error_type or "unknown"] += 1

    def note_limits(self, limiter: ProviderLimiter, breaker: str | None) -> None:
        """Record how the provider's limits behaved and whether its breaker opened."""
        self.breaker = breaker
        governor = limiter.governor
        self.limits = {
            "peak_in_flight": limiter.peak_in_flight,
            "rate_limited_responses": governor.throttled,
            "rate_limit_wait_s": round(governor.wait_s, 2),
            "pauses": governor.pauses,
            "final_concurrency_limit": limiter.limit,
            "allowance_per_minute": governor.learned_per_minute(),
        }

    @property
    def batch_saving_usd(self) -> float | None:
        """What batch mode saved against the online price for the same tokens (None online or without a price)."""
        if self.mode != "batch" or self.price is None or self.online_price is None:
            return None
        tokens = (self.input_tokens, self.output_tokens, self.cached_input_tokens, self.cache_write_tokens)
        return round(self.online_price.cost(*tokens) - self.price.cost(*tokens), 6)

    @property
    def cost_usd(self) -> float | None:
        """What this provider's answers cost: the sum of the costs recorded with them (an answer stored before
        costs were recorded: its usage at the price, cached input priced as such); None without a price."""
        if self.price is None and not self.costed_results:
            return None
        return self.costed

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready counts, with latency p50/p95 over the answered calls."""
        return {
            "model": self.model,
            "requested": self.requested,
            "answered": self.answered,
            "failed": self.failed,
            "failure_reasons": dict(sorted(self.failure_reasons.items())),
            "skipped": self.skipped,
            "interrupted": self.interrupted,
            "over_budget": self.over_budget,
            "pending_in_batches": self.pending_in_batches,
            "breaker": self.breaker,
            "called_this_run": self.called_this_run,
            "reused_from_store": self.reused_from_store,
            "retries": self.retries,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "cached_input_tokens": self.cached_input_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "usage_unknown": self.usage_unknown,
            "finish_reasons": dict(sorted(self.finish_reasons.items())),
            "mode": self.mode,
            "price_source": self.price_source,
            "cost_usd": round(cost, 6) if (cost := self.cost_usd) is not None else None,
            "batch_saving_usd": self.batch_saving_usd,
            "latency_ms_p50": percentile(self.latencies_ms, 50),
            "latency_ms_p95": percentile(self.latencies_ms, 95),
            "limits": self.limits,
        }


@dataclass(slots=True)
class WriteCounts:
    """What the task writer made of the prompts (field order is the order in ``summary.json``)."""

    prompts: int = 0
    prompts_tasked: int = 0
    incomplete: int = 0
    prompts_filtered: int = 0
    tasks_written: int = 0
    tasks_filtered: int = 0


@dataclass
class RunSummary:
    """The whole run: prompts in, tasks and incomplete prompts out, and each provider's tally."""

    project: str
    batch: str
    run_id: str
    config_hash: str
    providers: dict[str, ProviderTally]
    written: WriteCounts = field(default_factory=WriteCounts)
    rejected: int = 0
    interrupted: bool = False
    recovered_from_rescue: int = 0
    # Rescue-file lines the store would not take, moved to quarantine files beside the rescue files.
    quarantined_rescue_lines: int = 0
    quarantine_files: list[str] = field(default_factory=list)
    started_at: str = ""
    finished_at: str = ""
    wall_s: float = 0.0
    files: dict[str, str] = field(default_factory=dict)
    layout: str = "n_way"
    positions: dict[str, Any] = field(default_factory=dict)
    batches_pending: list[dict[str, Any]] = field(default_factory=list)
    judges: dict[str, ProviderTally] = field(default_factory=dict)  # judge calls (README "AI feedback")
    budget: dict[str, Any] | None = None  # the budget's limits, spent and reached (README "Budgets")
    price_warning: str | None = None  # the shipped price table is out of date (providers.prices)

    @property
    def cost_usd(self) -> float | None:
        """Estimated cost of the answers, for the providers that have a price (None if none has).

        With :attr:`cost_no_price` not empty this is a lower bound: those providers' answers are not in it.
        """
        priced = [t for t in (*self.providers.values(), *self.judges.values()) if t.price is not None]
        if not priced:
            return None
        return round(sum(t.cost_usd or 0.0 for t in priced), 6)

    @property
    def batch_saving_usd(self) -> float | None:
        """What batch mode saved over the online prices (None when no batch provider has a price)."""
        savings = [t.batch_saving_usd for t in self.providers.values() if t.batch_saving_usd is not None]
        return round(sum(savings), 6) if savings else None

    @property
    def cost_no_price(self) -> list[str]:
        """The providers without a price in the config: their answers are not in :attr:`cost_usd`."""
        return [sid for sid, t in (*self.providers.items(), *self.judges.items()) if t.price is None]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary.

        ``prompts == prompts_tasked + incomplete + prompts_filtered``; rejected records are not prompts.
        With the default ``n_way`` layout and no filters, ``tasks_written == prompts_tasked``.
        """
        return {
            "project": self.project,
            "batch": self.batch,
            "run_id": self.run_id,
            "config_hash": self.config_hash,
            "layout": self.layout,
            **asdict(self.written),
            "rejected": self.rejected,
            "interrupted": self.interrupted,
            "recovered_from_rescue": self.recovered_from_rescue,
            "quarantined_rescue_lines": self.quarantined_rescue_lines,
            "quarantine_files": self.quarantine_files,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "wall_s": round(self.wall_s, 2),
            "cost_usd": self.cost_usd,
            # Providers without a price: cost_usd leaves them out, so it is then only a lower bound.
            "cost_no_price": self.cost_no_price,
            "cost_is_lower_bound": bool(self.cost_no_price) and self.cost_usd is not None,
            "batch_saving_usd": self.batch_saving_usd,
            # Provider batches not ended yet (``--no-wait``): no tasks were written; a later run collects them.
            "batches_pending": self.batches_pending,
            "budget": self.budget,
            "price_warning": self.price_warning,
            "providers": {sid: tally.to_dict() for sid, tally in self.providers.items()},
            "judges": {sid: tally.to_dict() for sid, tally in self.judges.items()},
            "positions": self.positions,
            "files": self.files,
        }


def cost_text(usd: float | None, no_price: list[str], *, short: bool = False) -> str:
    """A cost that is never silently partial: ``$1.2300``; ``≥ $1.2300 (no price: x, y)`` when some
    providers have no price; ``unknown (no price: x, y)`` when none has. ``short``: two decimals."""
    amount = None if usd is None else (f"${usd:.2f}" if short else f"${usd:.4f}")
    if not no_price:
        return amount or "-"
    missing = f"(no price: {', '.join(no_price)})"
    return f"unknown {missing}" if amount is None else f"≥ {amount} {missing}"


def summary_cost_text(summary: dict[str, Any]) -> str:
    """The run's cost as :func:`cost_text` words it, from a ``summary.json`` dictionary."""
    no_price = summary.get("cost_no_price")
    if no_price is None:  # a summary written before the field existed
        no_price = [sid for sid, p in summary["providers"].items() if p.get("cost_usd") is None]
    return cost_text(summary.get("cost_usd"), no_price)


def summary_table(summary: dict[str, Any], failures: bool = True) -> Any:
    """The table ``rlhf run`` prints at the end: per provider what was answered, failed and skipped
    (not made: the run was stopped or the provider cut off), calls, tokens, latency, cost and failures;
    the cost of the whole run is in the caption, as a lower bound when some provider has no price.
    ``failures=False`` leaves the free-text failures column out (the run's logs give them their own lines)."""
    from rich.table import Table

    caption = f"cost: {summary_cost_text(summary)}"
    if summary.get("batch_saving_usd"):
        caption += f" (batch mode saved ${summary['batch_saving_usd']:.4f})"
    table = Table(title=f"{summary['project']} / {summary['batch']}", caption=caption)
    columns = (
        "provider",
        "model",
        "answered",
        "failed",
        "skipped",
        "called",
        "reused",
        "tokens in/out",
        "cost USD",
        "p50 ms",
        "p95 ms",
        "failures",
    )[: None if failures else -1]
    for column in columns:
        table.add_column(column, justify="left" if column in ("provider", "model", "failures") else "right")
    judges = {f"{sid} (judge)": p for sid, p in (summary.get("judges") or {}).items()}
    for sid, p in {**summary["providers"], **judges}.items():
        reasons = ", ".join(f"{k}×{v}" for k, v in p["failure_reasons"].items())
        if p["breaker"]:
            reasons = f"{reasons}; {p['breaker']}" if reasons else p["breaker"]
        if p.get("pending_in_batches"):
            pending = f"{p['pending_in_batches']} in pending batches"
            reasons = f"{reasons}; {pending}" if reasons else pending
        table.add_row(
            sid + (" (batch)" if p.get("mode") == "batch" else ""),  # a judge's id says "(judge)"
            p["model"],
            f"{p['answered']}/{p['requested']}",
            str(p["failed"]),
            str(p["skipped"] + p["interrupted"]),
            str(p["called_this_run"]),
            str(p["reused_from_store"]),
            f"{p['input_tokens']}/{p['output_tokens']}",
            "no price" if p.get("cost_usd") is None else f"{p['cost_usd']:.4f}",
            str(p["latency_ms_p50"] if p["latency_ms_p50"] is not None else "-"),
            str(p["latency_ms_p95"] if p["latency_ms_p95"] is not None else "-"),
            *([reasons or "-"] if failures else []),
        )
    return table
