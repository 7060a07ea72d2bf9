"""``rlhf plan``: what a run will call, how many tokens it may use, what it may cost, how long it may take.

Input tokens are estimated as characters / 4 (system prompts included), the estimate the providers'
limiters use (``providers.base.tokens_for_chars``). Output tokens are given as a range: the low end
assumes answers stop at a quarter of the output limit, the high end that every answer hits it. Calls
already answered in the response store are not counted (stored errors are: a rerun with
``--retry-failed`` makes them). Time is the lower bound
the configured requests/tokens-per-minute limits impose (latency and concurrency can make it longer).

The *expected* cost takes each provider's mean answer length: measured from its answers in the store when
it has at least :data:`MEASURED_FROM` of them, else ``budget.expected_output_tokens``, else a quarter of the
output limit; the *worst* cost is every answer at its output limit (what a budget reserves). Judges are
planned too: a rating per answer and, where the template asks for it, the preference of a pair in both
orders, their prompts holding the answers at the expected (worst: the longest) length. Each cost is also
given as a share of ``budget.usd``; prices say where they came from (config, or the shipped price table,
which is flagged once older than 90 days).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flows.config import RunConfig
from flows.generation.prepare import prepare_run
from flows.generation.stores import open_run_store, store_exists
from flows.reporting.status import run_status
from prompts.reader import iter_prompts
from providers.base import CHARS_PER_TOKEN, prompt_chars, system_text, tokens_for_chars
from providers.config import ProviderConfig
from providers.images import image_tokens
from providers.prices import price_table
from task_builder.judging import has_preference, judgeable_dimensions, preference_request, rating_request
from task_builder.template import AnnotationTemplate

LOW_OUTPUT_SHARE = 0.25
MEASURED_FROM = 20
"""Stored answers of a provider from which their mean length is taken as the expected one."""


def plan_run(config_path: str | Path) -> dict[str, Any]:
    """The plan of a run config, per provider and in total (nothing is called)."""
    prepared = prepare_run(config_path, require_keys=False)
    config = prepared.config
    status = run_status(config_path)
    chars = dict.fromkeys((p.source_id for p in config.providers), 0)
    chars_by_prompt = 0  # the prompts' own text, for the judges' requests (which quote it)
    for record in iter_prompts(config.prompts):
        chars_by_prompt += len(str(record.messages[-1]["content"]))
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
        online_price = provider.full_price
        if price is not None and online_price is not None:
            low, high = price.cost(input_tokens, output[0]), price.cost(input_tokens, output[1])
            entry["cost_usd_range"] = [round(low, 4), round(high, 4)]
            if provider.is_batch:
                online = online_price.cost(input_tokens, output[0]), online_price.cost(input_tokens, output[1])
                entry["batch_saving_usd_range"] = [round(online[0] - low, 4), round(online[1] - high, 4)]
                totals["saving_low"] += online[0] - low
                totals["saving_high"] += online[1] - high
            totals["cost_low"] += low
            totals["cost_high"] += high
            totals["priced"] = True
        totals["calls"] += to_call
        providers[provider.source_id] = entry
    no_price = [p.source_id for p in config.providers if p.known_price is None]
    measured = _stored_output_means(config)
    expected_out = {p.source_id: _expected_output(config, p, measured) for p in (*config.providers, *config.judges)}
    for provider in config.providers:
        entry = providers[provider.source_id]
        tokens, source = expected_out[provider.source_id]
        price = provider.effective_price
        entry["price_source"] = provider.price_source
        entry["expected_output_tokens_per_call"] = tokens
        entry["expected_output_from"] = source
        if price is not None:
            entry["cost_usd_expected"] = round(price.cost(entry["input_tokens"], entry["calls"] * tokens), 4)
            entry["cost_usd_worst"] = round(_worst(provider, entry["input_tokens"], entry["output_tokens_range"][1]), 4)
    judges = _plan_judges(config, prepared.template, prepared.prompt_count, chars_by_prompt, expected_out, measured)
    report: dict[str, Any] = {
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
        "judges": judges,
    }
    _totals_and_budget(report, config)
    return report


def _stored_output_means(config: RunConfig) -> dict[str, tuple[int, float]]:
    """Per provider or judge: how many of its answers the store holds and their mean output tokens."""
    if not store_exists(config):
        return {}
    owners = {p.source_id for p in (*config.providers, *config.judges)}
    found: dict[str, tuple[int, float]] = {}
    with open_run_store(config, read_only=True) as store:
        rows = store.execute(
            "SELECT source_id, COUNT(*), SUM(output_tokens) FROM responses "
            "WHERE ok = 1 AND output_tokens IS NOT NULL GROUP BY source_id"
        )
    for stored_id, count, total in rows:
        owner = str(stored_id).split("#", 1)[0]
        if owner not in owners:
            owner = str(stored_id).rsplit(":", 1)[0]
        if owner in owners:
            before_n, before_mean = found.get(owner, (0, 0.0))
            n = before_n + int(count)  # type: ignore[call-overload]
            found[owner] = (n, (before_mean * before_n + float(total or 0)) / n)  # type: ignore[arg-type]
    return found


def _expected_output(
    config: RunConfig, provider: ProviderConfig, measured: dict[str, tuple[int, float]]
) -> tuple[int, str]:
    """The mean answer length expected of ``provider`` and where that figure comes from."""
    limit = provider.estimated_output_tokens()
    count, mean = measured.get(provider.source_id, (0, 0.0))
    if count >= MEASURED_FROM:
        return min(limit, round(mean)), f"store ({count} answers)"
    given = config.budget.expected_output_tokens.get(provider.source_id) if config.budget else None
    if given is not None:
        return min(limit, given), "budget.expected_output_tokens"
    return int(limit * LOW_OUTPUT_SHARE), "a quarter of the output limit"


def _worst(provider: ProviderConfig, input_tokens: float, output_tokens: float) -> float:
    """What a budget reserves for these tokens: every input token at the dearest input price."""
    price = provider.worst_price
    return 0.0 if price is None else price.cost(input_tokens, output_tokens)


def _judge_calls(template: AnnotationTemplate, layout: str, answers: int) -> tuple[int, int]:
    """Judge calls per prompt and judge when every answer is shown: (ratings, preferences)."""
    ratings = answers if judgeable_dimensions(template) else 0
    pairs = 0
    if has_preference(template) and layout != "single":
        pairs = answers * (answers - 1) // 2 if layout == "pairwise" else (1 if answers == 2 else 0)
    return ratings, 2 * pairs  # each pair asked in both orders


def _plan_judges(
    config: RunConfig,
    template: AnnotationTemplate,
    prompts: int,
    prompt_chars_total: int,
    expected_out: dict[str, tuple[int, str]],
    measured: dict[str, tuple[int, float]],
) -> dict[str, Any]:
    """Each judge's calls, tokens and cost: expected (answers at their expected length) and worst (at their
    output limit, every judgement at the judge's); judgements already in the store are not counted."""
    if not config.judges or not prompts:
        return {}
    answers = config.answers_per_prompt
    ratings, preferences = _judge_calls(template, config.annotation.layout, answers)
    answer_chars = [
        (expected_out[p.source_id][0] * 4, p.estimated_output_tokens() * 4)
        for p in config.providers
        for _ in range(config.samples_per_provider)
    ]
    mean_expected = sum(e for e, _ in answer_chars) / max(1, len(answer_chars))
    longest = max((w for _, w in answer_chars), default=0)
    mean_prompt = prompt_chars_total / prompts
    rating_base = _request_chars(rating_request(template, "", "")) if ratings else 0
    preference = preference_request(template, "", "", "") if preferences else None
    preference_base = _request_chars(preference) if preference is not None else 0
    out: dict[str, Any] = {}
    for judge in config.judges:
        calls = prompts * (ratings + preferences)
        done = measured.get(judge.source_id, (0, 0.0))[0]
        to_call = max(0, calls - done)
        share = to_call / calls if calls else 0.0
        system = len(judge.system_prompt or "")
        expected_in = prompts * (
            ratings * (rating_base + system + mean_prompt + mean_expected)
            + preferences * (preference_base + system + mean_prompt + 2 * mean_expected)
        )
        worst_in = prompts * (
            ratings * (rating_base + system + mean_prompt + longest)
            + preferences * (preference_base + system + mean_prompt + 2 * longest)
        )
        expected_tokens, source = expected_out[judge.source_id]
        limit = judge.estimated_output_tokens()
        entry: dict[str, Any] = {
            "model": judge.model,
            "calls": to_call,
            "already_judged": min(done, calls),
            "input_tokens_expected": int(tokens_for_chars(expected_in) * share),
            "input_tokens_worst": int(tokens_for_chars(worst_in) * share),
            "output_tokens_expected": to_call * expected_tokens,
            "output_tokens_worst": to_call * limit,
            "expected_output_from": source,
            "price_source": judge.price_source,
            "cost_usd_expected": None,
            "cost_usd_worst": None,
        }
        price = judge.effective_price
        if price is not None:
            entry["cost_usd_expected"] = round(
                price.cost(entry["input_tokens_expected"], entry["output_tokens_expected"]), 4
            )
            entry["cost_usd_worst"] = round(_worst(judge, entry["input_tokens_worst"], entry["output_tokens_worst"]), 4)
        out[judge.source_id] = entry
    return out


def _request_chars(request: Any) -> int:
    return prompt_chars(request.messages, request.system)


def _totals_and_budget(report: dict[str, Any], config: RunConfig) -> None:
    """The expected and worst cost of answers and judges together, each entry's share of ``budget.usd``,
    where the prices came from and whether the price table is out of date."""
    entries = [*report["providers"].values(), *report["judges"].values()]
    priced = [e for e in entries if e.get("cost_usd_expected") is not None]
    report["cost_usd_expected"] = round(sum(e["cost_usd_expected"] for e in priced), 4) if priced else None
    report["cost_usd_worst"] = round(sum(e["cost_usd_worst"] for e in priced), 4) if priced else None
    report["judges_no_price"] = [sid for sid, e in report["judges"].items() if e["price_source"] is None]
    sources = {e.get("price_source") for e in entries if e.get("price_source")}
    report["price_sources"] = {
        sid: e.get("price_source") for sid, e in (*report["providers"].items(), *report["judges"].items())
    }
    table = price_table()
    warning = table.stale_warning() if any(str(s).startswith("table") for s in sources) else None
    report["price_table"] = {"as_of": table.as_of.isoformat(), "sources": table.sources, "warning": warning}
    usd = config.budget.usd if config.budget is not None else None
    if usd is None:
        report["budget"] = None
        return
    for entry in entries:
        if entry.get("cost_usd_expected") is not None:
            entry["budget_share"] = {
                "expected": round(entry["cost_usd_expected"] / usd, 4),
                "worst": round(entry["cost_usd_worst"] / usd, 4),
            }
    report["budget"] = {
        "usd": usd,
        "expected_share": None if report["cost_usd_expected"] is None else round(report["cost_usd_expected"] / usd, 4),
        "worst_share": None if report["cost_usd_worst"] is None else round(report["cost_usd_worst"] / usd, 4),
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


def plan_budget_text(report: dict[str, Any]) -> str:
    """The expected and worst-case cost (answers and judges), their share of ``budget.usd``, where prices came
    from, and a warning when the price table is out of date."""
    lines = []
    expected, worst = report.get("cost_usd_expected"), report.get("cost_usd_worst")
    if expected is not None:
        line = f"expected cost: ${expected:.2f}; worst case (every answer at its output limit): ${worst:.2f}"
        budget = report.get("budget")
        if budget:
            line += (
                f"; of the budget of ${budget['usd']:.2f}: {budget['expected_share']:.0%} expected, "
                f"{budget['worst_share']:.0%} worst case"
            )
        lines.append(line)
    sources = report.get("price_sources") or {}
    if sources:
        lines.append("prices: " + ", ".join(f"{sid} {src or 'none'}" for sid, src in sources.items()))
    warning = (report.get("price_table") or {}).get("warning")
    if warning:
        lines.append(f"Warning: {warning}")
    return "\n".join(lines)


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
        "expected / worst USD",
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
            _expected_worst(p),
            minutes,
        )
    for sid, j in (report.get("judges") or {}).items():
        table.add_row(
            f"{sid} (judge)",
            j["model"],
            str(j["calls"]),
            str(j["already_judged"]),
            f"{j['input_tokens_expected']}–{j['input_tokens_worst']}",
            f"{j['output_tokens_expected']}–{j['output_tokens_worst']}",
            "no price" if j["cost_usd_expected"] is None else f"{j['cost_usd_expected']:.2f}–{j['cost_usd_worst']:.2f}",
            _expected_worst(j),
            "-",
        )
    return table


def _expected_worst(entry: dict[str, Any]) -> str:
    if entry.get("cost_usd_expected") is None:
        return "-"
    text = f"{entry['cost_usd_expected']:.2f} / {entry['cost_usd_worst']:.2f}"
    share = entry.get("budget_share")
    return f"{text} ({share['expected']:.0%} / {share['worst']:.0%})" if share else text


def _minutes(rpm: float | None, tpm: float | None, calls: int, tokens: int) -> float | None:
    bounds = [calls / rpm if rpm else 0.0, tokens / tpm if tpm else 0.0]
    return round(max(bounds), 2) if (rpm or tpm) else None
