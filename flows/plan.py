"""``rlhf plan``: what a run will call, how many tokens it may use, what it may cost, how long it may take.

Input tokens are estimated as characters / 4 (system prompts included). Output tokens are given as a
range: the low end assumes answers stop at a quarter of the output limit, the high end that every
answer hits it. Calls already answered in the response store are not counted (stored errors are: a rerun with
``--retry-failed`` makes them). Time is the lower bound
the configured requests/tokens-per-minute limits impose (latency and concurrency can make it longer).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flows.prepare import prepare_run
from flows.prompt_reader import iter_prompts
from flows.status import run_status
from providers.base import system_text

LOW_OUTPUT_SHARE = 0.25


def plan_run(config_path: str | Path) -> dict[str, Any]:
    """The plan of a run config, per provider and in total (nothing is called)."""
    prepared = prepare_run(config_path, require_keys=False)
    config = prepared.config
    status = run_status(config_path)
    chars = dict.fromkeys((p.source_id for p in config.providers), 0)
    for record in iter_prompts(config.prompts):
        base = sum(len(m["content"]) for m in record.messages)
        for provider in config.providers:
            chars[provider.source_id] += base + len(system_text(record.system, provider.system_prompt) or "")
    providers: dict[str, Any] = {}
    totals = {"calls": 0, "cost_low": 0.0, "cost_high": 0.0, "priced": False}
    for provider in config.providers:
        counts = status["providers"][provider.source_id]
        to_call = counts["missing"] + counts["failed"]
        share = to_call / max(1, counts["planned"])
        input_tokens = int(chars[provider.source_id] / 4 * config.samples_per_provider * share)
        max_out = provider.estimated_output_tokens()
        output = (int(to_call * max_out * LOW_OUTPUT_SHARE), to_call * max_out)
        entry: dict[str, Any] = {
            "model": provider.model,
            "calls": to_call,
            "already_answered": counts["answered"],
            "input_tokens": input_tokens,
            "output_tokens_range": list(output),
            "cost_usd_range": None,
            "min_minutes_at_rate_limits": _minutes(provider.requests_per_minute, provider.tokens_per_minute, to_call,
                                                   input_tokens + output[1]),
        }
        if provider.price is not None:
            low, high = provider.price.cost(input_tokens, output[0]), provider.price.cost(input_tokens, output[1])
            entry["cost_usd_range"] = [round(low, 4), round(high, 4)]
            totals["cost_low"] += low
            totals["cost_high"] += high
            totals["priced"] = True
        totals["calls"] += to_call
        providers[provider.source_id] = entry
    return {
        "config": str(config_path),
        "prompts": prepared.prompt_count,
        "calls": totals["calls"],
        "cost_usd_range": [round(totals["cost_low"], 4), round(totals["cost_high"], 4)] if totals["priced"] else None,
        "providers": providers,
    }


def _minutes(rpm: float | None, tpm: float | None, calls: int, tokens: int) -> float | None:
    bounds = [calls / rpm if rpm else 0.0, tokens / tpm if tpm else 0.0]
    return round(max(bounds), 2) if (rpm or tpm) else None
