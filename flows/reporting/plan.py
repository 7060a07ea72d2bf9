"""``rlhf plan``: what a run will call, how many tokens it may use, what it may cost, how long it may take.

Input tokens are estimated as characters / 4 (system prompts included), the estimate the providers'
limiters use (``providers.base.tokens_for_chars``). Output tokens are given as a range: the low end
assumes answers stop at a quarter of the output limit, the high end that every answer hits it. Calls
already answered in the response store are not counted (stored errors are: a rerun with
``--retry-failed`` makes them). Time is the lower bound
the configured requests/tokens-per-minute limits impose (latency and concurrency can make it longer).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flows.generation.prepare import prepare_run
from flows.reporting.status import run_status
from prompts.reader import iter_prompts
from providers.base import CHARS_PER_TOKEN, prompt_chars, system_text, tokens_for_chars
from providers.images import image_tokens

LOW_OUTPUT_SHARE = 0.25


def plan_run(config_path: str | Path) -> dict[str, Any]:
    """The plan of a run config, per provider and in total (nothing is called)."""
    prepared = prepare_run(config_path, require_keys=False)
    config = prepared.config
    status = run_status(config_path)
    chars = dict.fromkeys((p.source_id for p in config.providers), 0)
    for record in iter_prompts(config.prompts):
        for provider in config.providers:
            chars[provider.source_id] += (
                prompt_chars(record.messages, system_text(record.system, provider.system_prompt))
                + image_tokens(record.messages) * CHARS_PER_TOKEN
            )  # images: the vendors' formulas, as characters
    providers: dict[str, Any] = {}
    totals = {"calls": 0, "cost_low": 0.0, "cost_high": 0.0, "priced": False, "saving_low": 0.0, "saving_high": 0.0}
    for provider in config.providers:
        counts = status["providers"][provider.source_id]
        to_call = counts["missing"] + counts["failed"]
        share = to_call / max(1, counts["planned"])
        input_tokens = int(tokens_for_chars(chars[provider.source_id]) * config.samples_per_provider * share)
        max_out = provider.estimated_output_tokens()
        output = (int(to_call * max_out * LOW_OUTPUT_SHARE), to_call * max_out)
        entry: dict[str, Any] = {
            "model": provider.model,
            "calls": to_call,
            "already_answered": counts["answered"],
            "input_tokens": input_tokens,
            "output_tokens_range": list(output),
            "cost_usd_range": None,
            "min_minutes_at_rate_limits": _minutes(
                provider.requests_per_minute, provider.tokens_per_minute, to_call, input_tokens + output[1]
            ),
        }
        price = provider.effective_price  # batch mode: less the batch discount
        entry["mode"] = provider.mode
        if price is not None and provider.price is not None:
            low, high = price.cost(input_tokens, output[0]), price.cost(input_tokens, output[1])
            entry["cost_usd_range"] = [round(low, 4), round(high, 4)]
            if provider.is_batch:
                online = provider.price.cost(input_tokens, output[0]), provider.price.cost(input_tokens, output[1])
                entry["batch_saving_usd_range"] = [round(online[0] - low, 4), round(online[1] - high, 4)]
                totals["saving_low"] += online[0] - low
                totals["saving_high"] += online[1] - high
            totals["cost_low"] += low
            totals["cost_high"] += high
            totals["priced"] = True
        totals["calls"] += to_call
        providers[provider.source_id] = entry
    no_price = [p.source_id for p in config.providers if p.price is None]
    return {
        "config": str(config_path),
        "prompts": prepared.prompt_count,
        "calls": totals["calls"],
        "cost_usd_range": [round(totals["cost_low"], 4), round(totals["cost_high"], 4)] if totals["priced"] else None,
        # Providers without a price are not in cost_usd_range, which is then only a lower bound.
        "cost_no_price": no_price,
        "cost_is_lower_bound": bool(no_price) and totals["priced"],
        # What batch-mode providers save against their online price (None when none is priced).
        "batch_saving_usd_range": [round(totals["saving_low"], 4), round(totals["saving_high"], 4)]
        if any("batch_saving_usd_range" in p for p in providers.values())
        else None,
        "providers": providers,
    }


def plan_cost_text(report: dict[str, Any]) -> str:
    """The estimated cost in words, never silently partial: the providers without a price are named."""
    cost_range, no_price = report["cost_usd_range"], report.get("cost_no_price") or []
    missing = f" (no price: {', '.join(no_price)}; give providers a price to count them)" if no_price else ""
    if cost_range is None:
        return f"estimated cost: unknown{missing}"
    amount = f"${cost_range[0]:.2f} – ${cost_range[1]:.2f}"
    saving = report.get("batch_saving_usd_range")
    if saving:
        amount += f" (batch mode saves ${saving[0]:.2f} – ${saving[1]:.2f})"
    return f"estimated cost: at least {amount}{missing}" if no_price else f"estimated cost: {amount}"


def plan_table(report: dict[str, Any], title: str) -> Any:
    """``rlhf plan``'s table: per provider calls, answered, tokens, the cost range (or "no price"), minutes.

    The total cost is not in it: ``rlhf plan`` prints :func:`plan_cost_text` once, under the table, on a
    line of its own (a caption would wrap to the table's width, and say it a second time)."""
    from rich.table import Table

    table = Table(title=title)
    for column in (
        "provider",
        "model",
        "calls",
        "answered",
        "input tokens",
        "output tokens",
        "cost USD",
        "min. minutes",
    ):
        table.add_column(column, justify="left" if column in ("provider", "model") else "right")
    for sid, p in report["providers"].items():
        low, high = p["output_tokens_range"]
        cost = (
            "no price" if p["cost_usd_range"] is None else f"{p['cost_usd_range'][0]:.2f}–{p['cost_usd_range'][1]:.2f}"
        )
        minutes = "-" if p["min_minutes_at_rate_limits"] is None else str(p["min_minutes_at_rate_limits"])
        table.add_row(
            sid + (" (batch)" if p.get("mode") == "batch" else ""),
            p["model"],
            str(p["calls"]),
            str(p["already_answered"]),
            str(p["input_tokens"]),
            f"{low}–{high}",
            cost,
            minutes,
        )
    return table


def _minutes(rpm: float | None, tpm: float | None, calls: int, tokens: int) -> float | None:
    bounds = [calls / rpm if rpm else 0.0, tokens / tpm if tpm else 0.0]
    return round(max(bounds), 2) if (rpm or tpm) else None
