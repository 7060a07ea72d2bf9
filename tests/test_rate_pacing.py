"""Pacing against a provider that enforces its limits: counts at the simulator, never wall-clock rates.

The simulator refuses what its per-(key, model) buckets cannot pay for, as OpenAI and Anthropic do.
A provider configured to go fast (64 in flight, no configured limit) must learn the allowance and use
it without turning many requests into 429s, and without a single failed call.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from conftest import provider_config

from providers.factory import open_provider
from providers.result import CallResult
from simulator import RunningSimulator

KINDS = ["openai", "anthropic"]
CALLS = 120


def run_calls(
    sim: RunningSimulator, kind: str, model: str, calls: int = CALLS, **extra: Any
) -> tuple[list[CallResult], dict[str, Any]]:
    config = provider_config(sim, kind, model, max_concurrency=64, max_retries=2, **extra)

    async def go() -> tuple[list[CallResult], dict[str, Any]]:
        provider = await open_provider(config)
        try:
            results = await asyncio.gather(
                *(provider.call([{"role": "user", "content": f"Question {i}: why?"}], None) for i in range(calls))
            )
            governor = provider.limiter.governor
            return list(results), {"throttled": governor.throttled, "allowance": governor.learned_per_minute()}
        finally:
            await provider.aclose()

    return asyncio.run(go())


@pytest.mark.parametrize("kind", KINDS)
def test_with_headers_the_allowance_is_learned_and_few_requests_are_refused(
    sim: RunningSimulator, fake_keys: dict[str, str], kind: str
) -> None:
    # 20 requests a second, a bucket of 20, announced in the headers, 429 with retry-after in seconds.
    sim.configure(rate_limit_enforce=True, rate_limit_requests=20, rate_limit_window_s=1.0, latency_ms=20)
    results, seen = run_calls(sim, kind, "limited-model", params={"max_tokens": 64})
    stats = sim.stats()["by_model"]["limited-model"]
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    assert stats["requests"] - stats["rate_limited"] == CALLS
    assert stats["rate_limited"] <= 0.05 * stats["requests"], stats  # < 5% refused
    # 20/s learned from the headers (Anthropic's resets have whole seconds: its estimate is coarser).
    assert 600 <= seen["allowance"]["requests"] <= 1500


@pytest.mark.parametrize("kind", KINDS)
def test_without_headers_or_retry_after_the_rate_is_learned_from_429s(
    sim: RunningSimulator, fake_keys: dict[str, str], kind: str
) -> None:
    # 200 ms answers, as LLM answers take at least: the first 429s come after a round trip, not at once.
    sim.configure(
        rate_limit_enforce=True,
        rate_limit_requests=20,
        rate_limit_window_s=1.0,
        latency_ms=200,
        rate_limit_headers=False,
        rate_limit_retry_after="none",
    )
    # Long enough (15 s at the limit) for the learning at the start to be a small part of the run.
    results, seen = run_calls(sim, kind, "silent-model", calls=300, params={"max_tokens": 64})
    stats = sim.stats()["by_model"]["silent-model"]
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]  # a 429 is never a failure
    assert stats["requests"] - stats["rate_limited"] == 300
    assert stats["rate_limited"] <= 0.15 * stats["requests"], stats
    assert seen["throttled"] == stats["rate_limited"]
    assert seen["allowance"]["requests"] is not None and seen["allowance"]["requests"] <= 1200 * 1.3


@pytest.mark.parametrize("kind", KINDS)
def test_a_configured_limit_at_the_servers_limit_is_not_exceeded(
    sim: RunningSimulator, fake_keys: dict[str, str], kind: str
) -> None:
    sim.configure(
        rate_limit_enforce=True,
        rate_limit_requests=20,
        rate_limit_window_s=1.0,
        latency_ms=20,
        rate_limit_headers=False,
        rate_limit_retry_after="none",
    )
    results, _ = run_calls(sim, kind, "configured-model", params={"max_tokens": 64}, requests_per_minute=1200, burst=20)
    stats = sim.stats()["by_model"]["configured-model"]
    assert all(r.ok for r in results)
    assert stats["rate_limited"] <= 0.05 * stats["requests"], stats
