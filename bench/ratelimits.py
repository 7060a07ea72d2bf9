"""Rate limits: how much of an enforced allowance `rlhf run` and curator use, and how often they are refused.

    .venv/bin/python bench/ratelimits.py                 # all seven settings (~15 min), updates bench/RESULTS.md
    .venv/bin/python bench/ratelimits.py --only a        # one setting (a-g); writes bench/out/ratelimits.md only
    .venv/bin/python bench/ratelimits.py --skip-peers    # without curator
    .venv/bin/python bench/run.py --only ratelimits      # the same section through the benchmark driver

The simulator enforces rate limits (token buckets per API key and model, ``rate_limit_enforce``),
and three clients send the same prompts to three models (two OpenAI-kind, one Anthropic-kind, as in
the throughput section) with 64 in flight per provider: ``rlhf run`` with no configured limit,
``rlhf run`` with ``requests_per_minute`` (and, where tokens decide, ``tokens_per_minute``) set to
exactly the server's limit, and bespokelabs-curator with ``max_requests_per_minute`` /
``max_tokens_per_minute`` set to the limit. Settings (d)-(g), whose headers disagree with what is
enforced (issue 27), run ``rlhf run`` with no configured limit, curator with the limit and curator
with its defaults (the limits its start-up probe's headers announce; stopped after
``CURATOR_DEFAULTS_TIME_LIMIT_S``).

*Share of the allowance*: answers per second divided by the allowed rate, after the initial bucket is
spent. Per model, the server's buckets are replayed over the request arrivals the simulator recorded
(each request costing the mean cost): from the arrival after which they could admit no further request
(the initial bucket spent; for a client that never empties them, its ``n0``-th arrival, ``n0`` = the
bucket in requests) to the last arrival, the model's answers in that span, less what they drew from the
bucket's earlier contents (its headroom at the start minus at the end), divided by the span, is its
answer rate. The allowed rate is the request refill rate, or the token refill rate / the mean cost of a
request where tokens decide (the simulator charges input tokens + ``max_tokens`` at admission, as
OpenAI does). Over the three models: sum(answers) / sum(span × allowed rate).
*Refused* is the simulator's rate-limit 429s / all requests it received (curator's start-up probe,
which the simulator rejects with a 400 before any limit, is left out of both).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchlib import (  # noqa: E402
    BENCH,
    MODELS,
    OUT,
    VENVS,
    Measured,
    fmt,
    log,
    markdown_table,
    prompt_file,
    run_measured,
    write_section,
)
from rlhf_runner import PrefectServer, run_rlhf, summary_of, write_config  # noqa: E402

from simulator import start_simulator_process  # noqa: E402
from simulator.wire import parse_anthropic, parse_openai  # noqa: E402

LATENCY_MS = 200
CONCURRENCY = 64
PROMPTS = 300
CURATOR_RETRIES = 10  # curator's own default max_retries (a 429 uses one); the throughput section uses 0
# Curator's log lines saying which budgets it took (rich wraps them: matched with the spaces taken out).
CURATOR_BUDGET = re.compile(r"(Automatically|Manually)setmax_(requests|tokens)_per_minuteto(\d+)")
CURATOR_FALLBACK = re.compile(r"No(?:manual)?max_(requests|tokens)_per_minuteset.*?usingdefaultvalueof(\d+)")
TIKTOKEN_BUNDLED = "lib/python3.11/site-packages/litellm/litellm_core_utils/tokenizers"
BEGIN, END = "<!-- ratelimits -->", "<!-- /ratelimits -->"
RLHF_NO_LIMIT, RLHF_LIMIT = "rlhf run, no configured limit", "rlhf run, limit configured"
CURATOR, CURATOR_DEFAULTS = "curator, limit configured", "curator, defaults"
# Curator with its defaults takes the limit its start-up probe's headers announce as a per-minute one (a
# bucket of 20 read as 20/min crawls at a sixtieth of the allowance): stopped after this long, measured so far.
CURATOR_DEFAULTS_TIME_LIMIT_S = 120.0


@dataclass(frozen=True)
class Scenario:
    """One rate-limited server: the simulator's limits per (API key, model), and the targets there."""

    key: str
    title: str
    requests: int  # per window
    tokens: int  # per window
    window_s: float
    burst: int
    headers: bool
    retry_after: str  # seconds | ms | none
    max_tokens: int  # every client's max_tokens
    short_answers: bool  # a fixed short answer per model (scripted), else derived text (30-400 words)
    configure_tokens: bool  # the configured rlhf run also sets tokens_per_minute
    min_share: float
    max_refused: float
    versus_curator: bool
    header_mode: str = "bucket"  # what the headers say (simulator's rate_limit_header_mode)
    full_rows: bool = True  # also the configured rlhf run (the issue-27 settings: the no-limit run only)
    curator_defaults: bool = False  # also curator with nothing configured (its defaults: limits from the headers)

    @property
    def rpm(self) -> int:
        return round(self.requests * 60 / self.window_s)

    @property
    def tpm(self) -> int:
        return round(self.tokens * 60 / self.window_s)

    def simulator_settings(self) -> dict[str, Any]:
        return {
            "latency_ms": LATENCY_MS,
            "mode": "derived",
            "rate_limit_enforce": True,
            "rate_limit_requests": self.requests,
            "rate_limit_tokens": self.tokens,
            "rate_limit_window_s": self.window_s,
            "rate_limit_burst": self.burst,
            "rate_limit_headers": self.headers,
            "rate_limit_retry_after": self.retry_after,
            "rate_limit_header_mode": self.header_mode,
            # Short answers that are not cut by max_tokens (curator retries a "length" finish as an error).
            "scripted": [{"text": f"A short simulated answer from {m['model']}.", "model": m["model"]} for m in MODELS]
            if self.short_answers
            else [],
        }


SCENARIOS = (
    # (a) 20 requests/s per model, bucket 20; short answers (~10 tokens) and max_tokens 64: a request costs
    # ~31 + 64 tokens, so 1M tokens/s never binds.
    Scenario(
        "a",
        "requests-bound",
        requests=20,
        tokens=1_000_000,
        window_s=1.0,
        burst=20,
        headers=True,
        retry_after="seconds",
        max_tokens=64,
        short_answers=True,
        configure_tokens=False,
        min_share=0.9,
        max_refused=0.05,
        versus_curator=True,
    ),
    # (b) 10,000 tokens/s per model; a request costs its input (~31 tokens) + max_tokens 1024 ≈ 1,055 tokens,
    # so tokens allow ~9.5 requests/s while the request limit allows 20/s: tokens decide. Long answers
    # (derived text, 30-400 words, ~330 tokens on average, never cut).
    Scenario(
        "b",
        "tokens-bound",
        requests=20,
        tokens=10_000,
        window_s=1.0,
        burst=20,
        headers=True,
        retry_after="seconds",
        max_tokens=1024,
        short_answers=False,
        configure_tokens=True,
        min_share=0.9,
        max_refused=0.05,
        versus_curator=True,
    ),
    # (c) like (a), but no rate-limit headers and a bare 429 (no retry-after): the client must learn from 429s.
    Scenario(
        "c",
        "announces nothing",
        requests=20,
        tokens=1_000_000,
        window_s=1.0,
        burst=20,
        headers=False,
        retry_after="none",
        max_tokens=64,
        short_answers=True,
        configure_tokens=False,
        min_share=0.8,
        max_refused=0.10,
        versus_curator=False,
    ),
    # (d)-(g): the server of (a), whose headers disagree with what it enforces (issue 27). Targets for the
    # run with nothing configured: >= 0.95 of the allowance, < 2% refused.
    *(
        Scenario(
            key,
            title,
            requests=20,
            tokens=1_000_000,
            window_s=1.0,
            burst=20,
            headers=True,
            retry_after="ms" if mode == "azure" else "seconds",
            max_tokens=64,
            short_answers=True,
            configure_tokens=False,
            min_share=0.95,
            max_refused=0.02,
            versus_curator=False,
            header_mode=mode,
            full_rows=False,
            curator_defaults=True,
        )
        for key, title, mode in (
            ("d", "quantized: headers announce 1,200/min", "per_minute"),
            ("e", "RFC 3339 resets cut to the second", "truncated"),
            ("f", '"next request" resets', "next_request"),
            ("g", "Azure headers (remaining only), retry-after-ms", "azure"),
        )
    ),
)


def server_costs(scenario: Scenario, prompts: Path) -> dict[str, float]:
    """Mean tokens the simulator charges per request, per model (input tokens + max_tokens)."""
    texts = [json.loads(line)["prompt"] for line in prompts.read_text(encoding="utf-8").splitlines() if line.strip()]
    costs = {}
    for model in MODELS:
        parse = parse_openai if model["kind"] == "openai" else parse_anthropic
        total = 0
        for text in texts:
            parsed = parse(
                {
                    "model": model["model"],
                    "messages": [{"role": "user", "content": text}],
                    "max_tokens": scenario.max_tokens,
                }
            )
            total += parsed.input_tokens + scenario.max_tokens
        costs[model["model"]] = total / len(texts)
    return costs


@dataclass
class Allowance:
    """What the server allows one model: answers per second after the initial bucket, and that bucket."""

    per_s: float
    bucket: int  # requests the initial buckets admit at once
    bound_by: str  # requests | tokens


def allowances(scenario: Scenario, costs: dict[str, float]) -> dict[str, Allowance]:
    out = {}
    for model, cost in costs.items():
        by_requests = scenario.requests / scenario.window_s
        by_tokens = scenario.tokens / scenario.window_s / cost
        bucket = min(scenario.burst, math.floor(scenario.tokens / cost))
        out[model] = Allowance(
            min(by_requests, by_tokens), max(1, bucket), "tokens" if by_tokens < by_requests else "requests"
        )
    return out


@dataclass
class RunResult:
    """One client run in one setting."""

    scenario: str
    client: str
    code: int | None = None
    wall_s: float | None = None
    load1: float | None = None
    answered: int | None = None
    failed: int | None = None
    per_model: dict[str, dict[str, Any]] = field(default_factory=dict)
    limits: dict[str, dict[str, Any]] = field(default_factory=dict)  # rlhf: summary.json's limits per provider
    note: str = ""
    skipped: bool = False
    verdict: str = ""
    misses: list[str] = field(default_factory=list)

    def total(self, key: str) -> float:
        return sum(m.get(key) or 0 for m in self.per_model.values())

    @property
    def share(self) -> float | None:
        allowed = self.total("allowed_answers")
        return self.total("answers_after") / allowed if allowed > 0 else None

    @property
    def refused(self) -> float | None:
        sent = self.total("requests")
        return self.total("refused") / sent if sent > 0 else None

    @property
    def answers_per_s(self) -> float | None:
        span = self.total("span_s")
        return self.total("answers_after") / span if span > 0 else None

    @property
    def allowed_per_s(self) -> float | None:
        span = self.total("span_s")
        return self.total("allowed_answers") / span if span > 0 else None


def replay_buckets(times: list[float], scenario: Scenario, cost: float) -> list[tuple[int, float]]:
    """Replay the server's buckets over a model's arrivals, each request costing the mean cost: after
    each arrival, the requests admitted so far and the headroom (how many more requests the buckets
    could admit at once: the lower of the request level and the token level / cost)."""
    capacity_r, rate_r = float(scenario.burst), scenario.requests / scenario.window_s
    capacity_t, rate_t = float(scenario.tokens), scenario.tokens / scenario.window_s
    level_r, level_t, last, admitted = capacity_r, capacity_t, None, 0
    states = []
    for t in times:
        if last is not None:
            level_r = min(capacity_r, level_r + (t - last) * rate_r)
            level_t = min(capacity_t, level_t + (t - last) * rate_t)
        last = t
        if level_r >= 1.0 and level_t >= cost:
            level_r -= 1.0
            level_t -= cost
            admitted += 1
        states.append((admitted, min(level_r, level_t / cost)))
    return states


def measure_models(
    stats: dict[str, Any], scenario: Scenario, allowed: dict[str, Allowance], costs: dict[str, float], probes: int
) -> dict[str, dict[str, Any]]:
    """Per model: requests, refusals and the share of the allowance used after the initial bucket is spent.

    From the arrival after which the replayed buckets could admit no further request (or, for a client
    that never empties them, from its ``n0``-th arrival) to the last arrival: the answers in that span,
    less what they drew from the bucket's earlier contents (its headroom at the start minus at the end),
    are the answers the refill paid for; divided by the span and the allowed rate, the share.
    """
    out = {}
    for model, allowance in allowed.items():
        counts = stats.get("by_model", {}).get(model, {})
        times = sorted(stats.get("request_times", {}).get(model, []))[probes:]
        requests = max(0, counts.get("requests", 0) - probes)
        ok = counts.get("ok", 0)
        entry: dict[str, Any] = {
            "requests": requests,
            "ok": ok,
            "refused": counts.get("rate_limited", 0),
            "other_errors": counts.get("errors", 0) - counts.get("rate_limited", 0) - probes,
            "allowed_per_s": allowance.per_s,
            "bucket": allowance.bucket,
            "bound_by": allowance.bound_by,
            "arrivals_s": [round(t - times[0], 4) for t in times] if times else [],
        }
        states = replay_buckets(times, scenario, costs[model])
        start = next((i for i, (_, headroom) in enumerate(states) if headroom < 1.0), None)
        if start is None and len(times) >= allowance.bucket:  # never emptied: from the n0-th arrival
            start = allowance.bucket - 1
            entry["bucket_never_spent"] = True
        if start is not None and times[-1] > times[start] and ok > states[start][0]:
            admitted_before, headroom_start = states[start]
            span = times[-1] - times[start]
            drawn = math.floor(headroom_start + 1e-6) - math.floor(states[-1][1] + 1e-6)  # whole requests
            funded = ok - admitted_before - drawn
            entry.update(
                span_s=span,
                answers_after=funded,
                allowed_answers=span * allowance.per_s,
                answers_per_s=funded / span,
                share=funded / span / allowance.per_s,
                drawn_from_bucket=drawn,
                spent_after=admitted_before,
                spent_at_s=times[start] - times[0],
            )
        out[model] = entry
    return out


class RateLimitBench:
    """The three settings, each on its own simulator process; one Prefect server for every rlhf run."""

    def __init__(self, prefect: PrefectServer, prompts: int = PROMPTS, skip_peers: bool = False) -> None:
        self.prefect = prefect
        self.prompts = prompts
        self.skip_peers = skip_peers
        self.results: list[RunResult] = []
        self.costs: dict[str, dict[str, float]] = {}
        self.curator_reason = ""

    def run(self, scenarios: tuple[Scenario, ...] = SCENARIOS) -> list[RunResult]:
        prompts = prompt_file(self.prompts)
        for scenario in scenarios:
            costs = self.costs[scenario.key] = server_costs(scenario, prompts)
            allowed = allowances(scenario, costs)
            rows: list[RunResult] = []
            with start_simulator_process(**scenario.simulator_settings()) as sim:
                rows.append(self._rlhf(scenario, sim, prompts, allowed, configured=False))
                if scenario.full_rows:
                    rows.append(self._rlhf(scenario, sim, prompts, allowed, configured=True))
                if not self.skip_peers:
                    rows.append(self._curator(scenario, sim, prompts, allowed, configured=True))
                    if scenario.curator_defaults and not rows[-1].skipped:
                        rows.append(self._curator(scenario, sim, prompts, allowed, configured=False))
            judge(scenario, rows)
            self.results.extend(rows)
        return self.results

    def _rlhf(
        self, scenario: Scenario, sim: Any, prompts: Path, allowed: dict[str, Allowance], configured: bool
    ) -> RunResult:
        client = RLHF_LIMIT if configured else RLHF_NO_LIMIT
        name = f"rl-{scenario.key}-{'limit' if configured else 'nolimit'}-{self.prompts}"
        config = write_config(name, prompts, sim.url, CONCURRENCY)
        data = json.loads(config.read_text(encoding="utf-8"))
        for provider in data["providers"]:
            provider["params"] = {**provider["params"], "max_tokens": scenario.max_tokens}
            if configured:
                provider["requests_per_minute"] = scenario.rpm
                if scenario.configure_tokens:
                    provider["tokens_per_minute"] = scenario.tpm
        config.write_text(json.dumps(data, indent=2), encoding="utf-8")
        sim.reset()
        result = RunResult(scenario.key, client, load1=os.getloadavg()[0])
        log(
            f"rate limits ({scenario.key}) {scenario.title}: {client}, {self.prompts} prompts × 3 (load {result.load1:.1f})"
        )
        measured = run_rlhf(config, self.prefect.env(), name, timeout_s=900)
        self._finish(result, measured, sim.stats(), scenario, allowed, probes=0)
        try:
            summary = summary_of(config)
        except (OSError, ValueError):
            summary = {}
        providers = summary.get("providers", {})
        if providers:
            result.answered = sum(p.get("answered", 0) for p in providers.values())
            result.failed = sum(p.get("failed", 0) for p in providers.values())
            result.limits = {
                sid: {"model": p.get("model"), "failed": p.get("failed"), **p.get("limits", {})}
                for sid, p in providers.items()
            }
        else:
            result.note = "no summary.json"
        self._log(result)
        return result

    def _curator(
        self, scenario: Scenario, sim: Any, prompts: Path, allowed: dict[str, Allowance], configured: bool
    ) -> RunResult:
        """Curator on the scenario's server: budgets = the server's limit per model (``configured``), or
        none given (curator's defaults: the limits its start-up probe's headers announce, else its own)."""
        from peers.setup import ensure

        result = RunResult(scenario.key, CURATOR if configured else CURATOR_DEFAULTS)
        python, reason = ensure("curator")
        if python is None:
            self.curator_reason = reason
            log(f"curator skipped: {reason}")
            result.skipped, result.note = True, f"skipped: {reason}"
            return result
        work = OUT / "peers" / "curator-ratelimits"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True, exist_ok=True)
        env: dict[str, str | None] = {
            "TELEMETRY_ENABLED": "false",
            "CURATOR_DISABLE_CACHE": "true",
            "CURATOR_CACHE_DIR": str(work / "cache"),
            "CURATOR_VIEWER": "0",
            "TIKTOKEN_CACHE_DIR": str(VENVS / "curator" / TIKTOKEN_BUNDLED),
        }
        command = [
            str(python),
            str(BENCH / "peers" / "curator_run.py"),
            "--url",
            sim.url,
            "--prompts",
            str(prompts),
            "--models",
            ",".join(m["model"] for m in MODELS),
            "--concurrency",
            str(CONCURRENCY),
            "--working-dir",
            str(work / "work"),
            "--max-tokens",
            str(scenario.max_tokens),
            "--max-requests-per-minute",
            str(scenario.rpm if configured else 0),
            "--max-tokens-per-minute",
            str(scenario.tpm if configured else 0),
            "--max-retries",
            str(CURATOR_RETRIES),
        ]
        if not configured:
            command += ["--time-limit", str(CURATOR_DEFAULTS_TIME_LIMIT_S)]
        sim.reset()
        result.load1 = os.getloadavg()[0]
        log(
            f"rate limits ({scenario.key}) {scenario.title}: {result.client}, {self.prompts} prompts × 3 (load {result.load1:.1f})"
        )
        log_path = OUT / "logs" / f"curator-ratelimits-{scenario.key}{'' if configured else '-defaults'}.log"
        measured = run_measured(command, env=env, log_path=log_path, timeout_s=900)
        stats = sim.stats()
        # Curator's start-up probe (an empty request to read rate-limit headers) is refused with a 400
        # before any limit applies: one per model, left out.
        self._finish(result, measured, stats, scenario, allowed, probes=1)
        notes = []
        budgets = curator_budgets(log_path.read_text(errors="replace"))
        if budgets:
            notes.append(budgets)
        for line in reversed(measured.output.splitlines()):
            if line.startswith('{"answered"'):
                counts = json.loads(line)
                result.answered, result.failed = counts["answered"], counts["failed"]
                if counts.get("stopped_workers"):
                    ok = sum(m.get("ok", 0) for m in result.per_model.values())
                    result.answered, result.failed = ok, None
                    notes.append(
                        f"stopped after {CURATOR_DEFAULTS_TIME_LIMIT_S:.0f} s: {ok} of {self.prompts * len(MODELS)} "
                        "answered, the rest not yet sent"
                    )
                break
        else:
            notes.append("no counts from curator")
        result.note = "; ".join(notes)
        self._log(result)
        return result

    def _finish(
        self,
        result: RunResult,
        measured: Measured,
        stats: dict[str, Any],
        scenario: Scenario,
        allowed: dict[str, Allowance],
        probes: int,
    ) -> None:
        result.code, result.wall_s = measured.code, measured.wall_s
        result.per_model = measure_models(stats, scenario, allowed, self.costs[scenario.key], probes)

    @staticmethod
    def _log(result: RunResult) -> None:
        log(
            f"  → share {fmt(result.share, 3)}, refused {pct(result.refused)}, failed {result.failed}, exit {result.code}, "
            f"wall {fmt(result.wall_s)} s {result.note}"
        )


def curator_budgets(log_text: str) -> str:
    """What curator's log says it paces to: "20 rpm / 1,000,000 tpm (from the probe's headers)", or
    "(configured)", or "(its built-in defaults)"; "" when the log does not say."""
    lines = []
    for line in log_text.splitlines():
        line = re.sub(r"\s*\S+\.py:\d+\s*$", "", line).strip()  # rich's source column
        lines.append(re.sub(r"^(?:\[?[\d:.]+\]?\s+)?(?:DEBUG|INFO|WARNING|ERROR)\s+", "", line))
    text = "".join(line.replace(" ", "") for line in lines)
    found: dict[str, set[tuple[int, str]]] = {"requests": set(), "tokens": set()}
    for how, what, value in CURATOR_BUDGET.findall(text):
        found[what].add((int(value), "from the probe's headers" if how == "Automatically" else "configured"))
    for what, value in CURATOR_FALLBACK.findall(text):
        found[what].add((int(value), "its built-in defaults"))
    if not found["requests"] and not found["tokens"]:
        return ""
    sources = sorted({source for pairs in found.values() for _, source in pairs})
    rpm = "/".join(f"{v:,}" for v, _ in sorted(found["requests"])) or "?"
    tpm = "/".join(f"{v:,}" for v, _ in sorted(found["tokens"])) or "?"
    return f"paced to {rpm} rpm / {tpm} tpm ({', '.join(sources)})"


def pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def judge(scenario: Scenario, rows: list[RunResult]) -> None:
    """PASS/MISS for the rlhf rows: the setting's share and refusal targets, no failed call, exit 0,
    and (a, b) at or above curator on both figures, to within one answer (one request) per model, the
    measurement's resolution."""
    curator = next((r for r in rows if r.client == CURATOR and not r.skipped), None)
    for row in rows:
        if row.client in (CURATOR, CURATOR_DEFAULTS):
            row.verdict = "–"
            continue
        misses = []
        if row.share is None or row.share < scenario.min_share:
            misses.append(f"share {fmt(row.share, 3)} < {scenario.min_share}")
        if row.refused is None or row.refused >= scenario.max_refused:
            misses.append(f"refused {pct(row.refused)} ≥ {scenario.max_refused * 100:.0f}%")
        if row.failed != 0:
            misses.append(f"failed {row.failed}")
        if row.code != 0:
            misses.append(f"exit {row.code}")
        if scenario.versus_curator and curator is not None:
            share_step = len(MODELS) / max(1.0, row.total("allowed_answers"))
            refused_step = len(MODELS) / max(1.0, row.total("requests"))
            if curator.share is not None and (row.share or 0) < curator.share - share_step:
                misses.append(f"share below curator's {curator.share:.3f}")
            if (
                curator.refused is not None
                and (row.refused if row.refused is not None else 1) > curator.refused + refused_step
            ):
                misses.append(f"refused above curator's {pct(curator.refused)}")
        row.misses = misses
        row.verdict = "PASS" if not misses else "MISS"


# ----------------------------------------------------------------------------------------- report
def settings_table(scenarios: tuple[Scenario, ...], costs: dict[str, dict[str, float]]) -> str:
    rows = []
    for s in scenarios:
        cost = costs.get(s.key, {})
        mean_cost = sum(cost.values()) / len(cost) if cost else None
        allowed = allowances(s, cost) if cost else {}
        per_s = next(iter(allowed.values())).per_s if allowed else None
        bucket = next(iter(allowed.values())).bucket if allowed else None
        rlhf_limit = f"requests_per_minute {s.rpm:,}" + (f", tokens_per_minute {s.tpm:,}" if s.configure_tokens else "")
        rows.append(
            [
                f"({s.key}) {s.title}",
                f"{s.requests:,} req + {s.tokens:,} tokens / {s.window_s:g} s",
                str(s.burst),
                "short (~10 tokens)" if s.short_answers else "long (30-400 words)",
                str(s.max_tokens),
                fmt(mean_cost, 0),
                ("yes" if s.headers else "no") + ("" if s.header_mode == "bucket" else f" ({s.header_mode})"),
                s.retry_after,
                f"{fmt(per_s, 2)} ({next(iter(allowed.values())).bound_by if allowed else '–'})",
                fmt(bucket, 0),
                rlhf_limit,
                f"{s.rpm:,} / {s.tpm:,}" + ("; defaults: none given" if s.curator_defaults else ""),
            ]
        )
    return markdown_table(
        [
            "setting",
            "server limit per model",
            "request bucket",
            "answers",
            "max_tokens",
            "tokens charged / request",
            "headers",
            "retry-after",
            "allowed answers/s per model",
            "initial bucket (requests)",
            "`rlhf run` configured",
            "curator rpm / tpm",
        ],
        rows,
    )


def results_table(results: list[RunResult]) -> str:
    rows = []
    for r in results:
        if r.skipped:
            rows.append([f"({r.scenario})", r.client, "–", "–", "–", "–", "–", "–", "–", "–", "–", r.note])
            continue
        n = len(MODELS)
        rows.append(
            [
                f"({r.scenario})",
                r.client,
                fmt((r.answers_per_s or 0) * n if r.answers_per_s else None, 1),
                fmt((r.allowed_per_s or 0) * n if r.allowed_per_s else None, 1),
                fmt(r.share, 3),
                pct(r.refused),
                "–" if r.failed is None else str(r.failed),
                str(r.code),
                fmt(r.wall_s),
                fmt(r.load1),
                r.verdict,
                "; ".join(r.misses) or r.note,
            ]
        )
    return markdown_table(
        [
            "setting",
            "client",
            "answers/s (3 models)",
            "allowed/s",
            "share of allowance",
            "refused (429)",
            "failed",
            "exit",
            "wall s",
            "load",
            "target",
            "note",
        ],
        rows,
    )


def detail_table(results: list[RunResult]) -> str:
    """Per model: share and refusals at the simulator; for rlhf, summary.json's limits block."""
    rows = []
    short = {m["model"]: m["source_id"] for m in MODELS}
    for r in results:
        if r.skipped:
            continue
        by_model = {lim.get("model"): lim for lim in r.limits.values()}
        for model, m in r.per_model.items():
            lim = by_model.get(model, {})
            allowance = lim.get("allowance_per_minute") or {}
            refused_share = m["refused"] / m["requests"] if m.get("requests") else None
            rows.append(
                [
                    f"({r.scenario})",
                    r.client,
                    short.get(model, model),
                    (
                        "never"
                        if m.get("bucket_never_spent")
                        else f"{fmt(m.get('spent_at_s'), 2)} s, {m.get('spent_after', '–')} req"
                    )
                    if "span_s" in m
                    else "–",
                    fmt(m.get("answers_per_s"), 2),
                    fmt(m.get("share"), 3),
                    f"{m['refused']} / {m['requests']} ({pct(refused_share)})",
                    str(m.get("other_errors", 0)),
                    str(lim.get("failed", "–")),
                    str(lim.get("rate_limited_responses", "–")),
                    fmt(lim.get("rate_limit_wait_s")),
                    fmt(allowance.get("requests"), 0),
                    fmt(allowance.get("tokens"), 0),
                    str(lim.get("peak_in_flight", "–")),
                    str(lim.get("pauses", "–")),
                    str(lim.get("final_concurrency_limit", "–")),
                ]
            )
    return markdown_table(
        [
            "setting",
            "client",
            "provider",
            "bucket spent at",
            "answers/s",
            "share",
            "refused / requests",
            "other errors",
            "failed",
            "429s seen (client)",
            "rate-limit wait s",
            "allowance req/min",
            "allowance tokens/min",
            "peak in flight",
            "pauses",
            "final concurrency",
        ],
        rows,
    )


def comparison(results: list[RunResult]) -> str:
    """One paragraph of figures: per issue-27 setting, each client's refused share and share of the allowance."""
    by_scenario: dict[str, list[RunResult]] = {}
    for r in results:
        if r.scenario in "defg" and not r.skipped:
            by_scenario.setdefault(r.scenario, []).append(r)
    if not by_scenario:
        return ""
    short = {RLHF_NO_LIMIT: "rlhf run", CURATOR: "curator (limit)", CURATOR_DEFAULTS: "curator (defaults)"}
    parts = [
        f"({key}) " + ", ".join(f"{short.get(r.client, r.client)} {pct(r.refused)} / {fmt(r.share, 2)}" for r in rows)
        for key, rows in by_scenario.items()
    ]
    return (
        "**Where headers and 429s disagree, (d)-(g)** (refused / share of the allowance used): "
        + "; ".join(parts)
        + ". Curator with the limit configured does not use the headers' limits (configured budgets take "
        "precedence); with its defaults it takes the limits its start-up probe's headers announce as per-minute "
        "budgets, once (*note*)."
    )


def section_markdown(
    bench: RateLimitBench, scenarios: tuple[Scenario, ...], started: float, machine: list[str] | None = None
) -> str:
    curator_note = (
        f"curator was skipped: {bench.curator_reason}."
        if bench.curator_reason
        else "Curator (bespokelabs-curator, its own venv from `bench/peers/requirements-curator.txt`) speaks only "
        "the OpenAI protocol: it sends all three models to the simulator's OpenAI endpoint (one worker "
        "process per model, as in the throughput section), each with `max_requests_per_minute` / "
        "`max_tokens_per_minute` = the server's limit per model, `max_concurrent_requests` 64 and "
        f"`max_retries` {CURATOR_RETRIES} (curator's default; each 429 uses one). In (d)-(g) curator also runs "
        "with its defaults (*curator, defaults*: no `max_requests_per_minute` / `max_tokens_per_minute` given): "
        "it then sends one empty-`messages` request per model at start-up and takes `x-ratelimit-limit-requests` / "
        "`-tokens` of the 400 as its per-minute budgets (the simulator, like OpenAI, puts the key's rate-limit "
        "headers on that 400), else its built-in 200 requests / 100,000 tokens per minute; such a run is stopped "
        f"after {CURATOR_DEFAULTS_TIME_LIMIT_S:.0f} s and measured over what it sent (*note* says what curator "
        "paced to, from its log). The simulator's buckets are per API key and model, so every model has its own "
        "allowance for every client."
    )
    if bench.skip_peers:
        curator_note = "curator left out (`--skip-peers`)."
    parts = [
        BEGIN,
        "## Rate limits",
        f"Generated by `bench/ratelimits.py` on {time.strftime('%Y-%m-%d %H:%M %Z')}, "
        f"{(time.monotonic() - started) / 60:.1f} min; load average (1 min) at the end {os.getloadavg()[0]:.1f} "
        "(each row's `load` is the 1-minute load average when it started)."
        + ("" if machine is None else "\n\n" + "\n".join(machine)),
        f"The simulator enforces its limits (`rate_limit_enforce`: a request bucket and a token bucket per API key and "
        f"model, refilled continuously; a request costs its input tokens + `max_tokens`), answers after {LATENCY_MS} ms "
        f"(short answers: one fixed scripted text per model, never cut by `max_tokens`; long answers: `derived` text), and every client sends {bench.prompts} prompts to each of the three models of the "
        f"throughput section (two OpenAI-kind, one Anthropic-kind; `rlhf run` speaks each one's own API) with "
        f"`max_concurrency` {CONCURRENCY} per provider. {curator_note}",
        settings_table(scenarios, bench.costs),
        "*share of allowance*: per model, the server's buckets are replayed over the arrivals the simulator recorded "
        "(each request at the mean cost) to find when the initial bucket was spent (the first arrival after which they "
        "could admit no further request; for a client that never empties it, its 20th arrival, or 9th in (b)); the "
        "answers from there to the last arrival, less what they drew from the bucket's earlier contents (its headroom "
        "at the start of that span minus at the end), divided by the span, are *answers/s*; divided by the allowed "
        "rate, the share; over three models: Σ answers / Σ (span × allowed rate). *refused*: the simulator's rate-limit 429s / requests it received "
        "(curator's start-up probe, rejected with a 400, left out). *failed*: calls with no answer at the end "
        "(summary.json for `rlhf run`, curator's dataset). Targets for the `rlhf run` rows: (a) and (b) ≥ 0.9 of the "
        "allowance, < 5% refused, no failed call, exit 0, and at or above curator on both figures (to within one "
        "answer, or one request, per model: the measurement's resolution); (c) ≥ 0.8, < 10% refused, no failed call, "
        "exit 0. (d)-(g) are the server of (a) with headers that disagree with what it enforces (issue 27): (d) "
        "quantized enforcement, headers announcing the minute's allowance (limit 1,200, remaining and reset of a "
        "1,200 bucket) while 20/s with a bucket of 20 is enforced; (e) Anthropic's RFC 3339 resets cut to the whole "
        "second instead of rounded up; (f) resets giving the time until the next request fits, not until the bucket "
        "is full; (g) Azure OpenAI's headers (`x-ratelimit-remaining-requests` / `-tokens` only, for every provider) "
        "and `retry-after-ms` on 429s. There `rlhf run` runs with nothing configured only (the configured run is "
        "left out for time), curator with the limit configured and with its defaults; targets for `rlhf run`: ≥ "
        "0.95 of the allowance, < 2% refused, no failed call, exit 0.",
        comparison(bench.results),
        results_table(bench.results),
        "### Per provider\n\n*bucket spent at*: when (after the model's first arrival) and after how many admitted "
        "requests the replayed initial bucket was empty; *answers/s*, *share* and *refused* are measured at the simulator; *429s seen*, *rate-limit "
        "wait*, *allowance* (what the client's governor paced to at the end), *peak in flight*, *pauses* (Retry-After "
        "pauses) and *final concurrency* are `rlhf run`'s summary.json `limits` block.\n\n"
        + detail_table(bench.results),
        "Reproduce: `.venv/bin/python bench/ratelimits.py` (or `bench/run.py --only ratelimits`); logs in "
        "`bench/out/logs/rl-*.log` and `curator-ratelimits-*.log`, raw numbers in `bench/out/ratelimits.json`.",
        END,
    ]
    return "\n\n".join(parts)


def section(
    prefect: PrefectServer,
    *,
    prompts: int = PROMPTS,
    skip_peers: bool = False,
    scenarios: tuple[Scenario, ...] = SCENARIOS,
    machine: list[str] | None = None,
) -> tuple[str, dict[str, Any]]:
    """Run the settings; return the section's markdown (between the markers) and the raw numbers."""
    started = time.monotonic()
    bench = RateLimitBench(prefect, prompts, skip_peers)
    bench.run(scenarios)
    raw = {
        "prompts": prompts,
        "latency_ms": LATENCY_MS,
        "concurrency": CONCURRENCY,
        "scenarios": [asdict(s) for s in scenarios],
        "costs": bench.costs,
        "results": [asdict(r) | {"share": r.share, "refused_share": r.refused} for r in bench.results],
    }
    return section_markdown(bench, scenarios, started, machine), raw


def main() -> int:
    parser = argparse.ArgumentParser(description="rate-limit benchmark (bench/README.md)")
    parser.add_argument("--only", action="append", choices=[s.key for s in SCENARIOS], help="one setting (repeatable)")
    parser.add_argument("--prompts", type=int, default=PROMPTS, help=f"prompts per model (default {PROMPTS})")
    parser.add_argument("--skip-peers", action="store_true", help="leave curator out")
    parser.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
    args = parser.parse_args()
    from machine import describe

    scenarios = tuple(s for s in SCENARIOS if not args.only or s.key in args.only)
    OUT.mkdir(parents=True, exist_ok=True)
    os.environ.pop("PREFECT_API_URL", None)
    log("starting prefect server (PREFECT_HOME=bench/out/prefect-home)")
    with PrefectServer() as prefect:
        markdown, raw = section(
            prefect,
            prompts=args.prompts,
            skip_peers=args.skip_peers,
            scenarios=scenarios,
            machine=["### Machine", "", *describe()],
        )
    (OUT / "ratelimits.md").write_text(markdown + "\n", encoding="utf-8")
    (OUT / "ratelimits.json").write_text(json.dumps(raw, indent=2, default=str), encoding="utf-8")
    print(markdown)
    complete = scenarios == SCENARIOS and args.prompts >= PROMPTS and not args.skip_peers
    if complete and not args.no_write:
        write_section(markdown, BEGIN, END)
        log("wrote the rate-limit section of bench/RESULTS.md")
    else:
        log(f"report: {OUT / 'ratelimits.md'} (bench/RESULTS.md is updated only by a full run of every setting)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
