"""Per-provider limits and the breaker: ProviderLimiter on its own, then over loopback and in the flow."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import provider_config, provider_entry, write_config, write_prompts

from providers.base import Provider
from providers.config import ProviderConfig
from providers.factory import open_provider
from providers.limits import ProviderLimiter
from providers.ratelimit_headers import Allowance, RateInfo
from providers.result import CallResult
from simulator import FaultRule, RunningSimulator

KINDS = ["openai", "anthropic"]
PLENTY = RateInfo(requests=Allowance(1_000_000, 1_000_000, 0.0), tokens=None)


# --------------------------------------------------------------------------- ProviderLimiter alone
def test_concurrency_never_exceeds_the_limit_even_with_cancelled_waiters() -> None:
    async def go() -> tuple[int, ProviderLimiter, int]:
        limiter = ProviderLimiter(max_concurrency=5)
        rng = random.Random(7)
        running = peak = 0

        async def worker() -> None:
            nonlocal running, peak
            await limiter.acquire(1)
            running += 1
            peak = max(peak, running)
            try:
                await asyncio.sleep(rng.uniform(0, 0.004))
            finally:
                running -= 1
                limiter.release(1, None, True)

        tasks = [asyncio.create_task(worker()) for _ in range(200)]
        await asyncio.sleep(0.01)
        # Cancel some that are still queued: their places must not leak or be double counted.
        for task in tasks[150:170]:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        cancelled = sum(isinstance(r, asyncio.CancelledError) for r in results)
        return peak, limiter, cancelled

    peak, limiter, cancelled = asyncio.run(go())
    assert peak == 5 and limiter.peak_in_flight == 5
    assert cancelled == 20
    assert limiter.in_flight == 0 and not limiter._waiters


def test_rate_limited_halves_once_per_second_and_grows_back_additively() -> None:
    async def go() -> None:
        limiter = ProviderLimiter(max_concurrency=8)
        for _ in range(8):
            await limiter.acquire(1)
        # A 429 from a server announcing an ample allowance: only the concurrency reacts.
        limiter.rate_limited(None, PLENTY)
        assert limiter.limit == 4
        limiter.rate_limited(None, PLENTY)  # a burst of 429s halves once, not down to 1
        limiter.rate_limited(None, PLENTY)
        assert limiter.limit == 4 and limiter.throttled == 3
        assert limiter.pauses == 0 and limiter.paused_until == 0.0  # no Retry-After: no pause

        # 8 in flight above the new limit of 4: a newcomer waits until fewer than 4 run.
        newcomer = asyncio.create_task(limiter.acquire(1))
        for _ in range(4):
            limiter.release(1, None, False)
            await asyncio.sleep(0)
        assert not newcomer.done() and limiter.in_flight == 4
        limiter.release(1, None, False)  # hands its slot over
        await asyncio.wait_for(newcomer, 5)  # after the request bucket's next token (1/16,667 s)
        assert limiter.in_flight == 4

        # Additive increase: one more slot after `limit` consecutive successes.
        for _ in range(4):
            limiter.release(1, None, True)
        assert limiter.in_flight == 0
        for current in (5, 6):
            assert limiter.limit == current
            for _ in range(current):
                await limiter.acquire(1)
                limiter.release(1, None, True)
        assert limiter.limit == 7

        await asyncio.sleep(1.02)  # a second later a new 429 halves again
        limiter.rate_limited(None, PLENTY)
        assert limiter.limit == 3

    asyncio.run(go())


def test_pause_delays_acquisition_and_is_never_shortened() -> None:
    async def timed_acquire(limiter: ProviderLimiter) -> float:
        started = time.monotonic()
        await limiter.acquire(1)
        limiter.release(1, None, True)
        return time.monotonic() - started

    async def go() -> tuple[float, float, float, int]:
        limiter = ProviderLimiter(max_concurrency=4)
        free = await timed_acquire(limiter)
        limiter.pause(0.3)
        paused = await timed_acquire(limiter)
        limiter.pause(0.5)
        limiter.pause(0.1)  # shorter: must not cut the running pause
        extended = await timed_acquire(limiter)
        return free, paused, extended, limiter.pauses

    free, paused, extended, pauses = asyncio.run(go())
    assert free < 0.15  # margins for a loaded machine: every bound sits well apart from the wrong outcome
    assert 0.28 <= paused < 1.0
    assert 0.48 <= extended < 1.0
    assert pauses == 2


def test_rate_limited_with_retry_after_pauses_every_new_request() -> None:
    async def go() -> float:
        limiter = ProviderLimiter(max_concurrency=4)
        limiter.rate_limited(0.25)
        started = time.monotonic()
        await asyncio.gather(*(limiter.acquire(1) for _ in range(2)))
        return time.monotonic() - started

    assert 0.23 <= asyncio.run(go()) < 1.0


def test_request_bucket_allows_a_burst_then_the_configured_rate() -> None:
    async def go() -> list[float]:
        limiter = ProviderLimiter(max_concurrency=100, requests_per_minute=600, burst=5)
        started = time.monotonic()
        stamps: list[float] = []

        async def one() -> None:
            await limiter.acquire(1)
            stamps.append(time.monotonic() - started)
            limiter.release(1, None, True)

        await asyncio.gather(*(one() for _ in range(30)))
        return sorted(stamps)

    stamps = asyncio.run(go())
    assert len(stamps) == 30
    assert stamps[4] - stamps[0] < 0.25  # the burst of 5 goes at once (at the rate it would take 0.4 s)
    assert stamps[5] >= 0.08  # then one every 0.1 s
    assert 2.3 <= stamps[-1] < 6.0  # (30 - 5) / 10 per second = 2.5 s


def test_token_bucket_is_corrected_with_the_reported_usage() -> None:
    async def acquire_time(limiter: ProviderLimiter, tokens: int) -> float:
        started = time.monotonic()
        await limiter.acquire(tokens)
        return time.monotonic() - started

    async def go() -> tuple[float, float, float]:
        # 60 000 tokens/minute: 1000 tokens per second, a bucket of 1000.
        refund = ProviderLimiter(max_concurrency=4, tokens_per_minute=60_000)
        await refund.acquire(1000)
        refund.release(1000, 200, True)  # used 200 of the estimated 1000: 800 come back
        refunded = await acquire_time(refund, 800)

        uncorrected = ProviderLimiter(max_concurrency=4, tokens_per_minute=60_000)
        await uncorrected.acquire(1000)
        uncorrected.release(1000, None, True)  # no usage reported: the estimate stands
        waited = await acquire_time(uncorrected, 300)

        debt = ProviderLimiter(max_concurrency=4, tokens_per_minute=60_000)
        await debt.acquire(1000)
        debt.release(1000, 1500, True)  # used 500 more than estimated: the bucket goes into debt
        in_debt = await acquire_time(debt, 100)
        return refunded, waited, in_debt

    refunded, waited, in_debt = asyncio.run(go())
    assert refunded < 0.4  # without the refund: 0.8 s
    assert 0.27 <= waited < 1.0  # 300 tokens at 1000/s
    assert 0.57 <= in_debt < 1.5  # (500 debt + 100) at 1000/s


# --------------------------------------------------------------------------- over loopback
async def _many(provider: Provider, count: int) -> list[CallResult]:
    return await asyncio.gather(*(provider.call([{"role": "user", "content": f"q{i}"}], None) for i in range(count)))


def _run_calls(config: ProviderConfig, count: int) -> list[CallResult]:
    async def go() -> list[CallResult]:
        provider = await open_provider(config)
        try:
            return await _many(provider, count)
        finally:
            await provider.aclose()

    return asyncio.run(go())


@pytest.mark.parametrize("kind", KINDS)
def test_request_rate_never_exceeds_rate_plus_burst(
    sim: RunningSimulator, fake_keys: dict[str, str], kind: str
) -> None:
    rpm, burst, count = 300, 3, 40
    results = _run_calls(
        provider_config(sim, kind, "rated-model", requests_per_minute=rpm, burst=burst, max_concurrency=64), count
    )
    assert all(r.ok for r in results)
    times = sorted(sim.stats()["request_times"]["rated-model"])
    assert len(times) == count
    rate = rpm / 60.0
    for i in range(count):
        for j in range(i, count):
            # +2: float edges, and the server's arrival times, taken when its handler runs, bunch up when a loaded
            # machine starves the server's thread for a moment (seen in CI: 5 arrivals within 13 ms). An
            # unlimited client would send all 40 at once.
            allowed = burst + rate * (times[j] - times[i]) + 2
            assert j - i + 1 <= allowed, f"{j - i + 1} requests in {times[j] - times[i]:.3f} s"
    span = times[-1] - times[0]
    assert (count - burst) / rate - 0.3 <= span < (count - burst) / rate + 5.0  # limited, but not starved


@pytest.mark.parametrize("kind", KINDS)
def test_a_burst_of_429s_pauses_the_provider_and_halves_then_regrows_concurrency(
    sim: RunningSimulator, fake_keys: dict[str, str], kind: str
) -> None:
    # Successes take 100 ms, 429s come back at once. The run starts gently (4 in flight, not 8): the
    # first wave is 4 × 429, the next one 2 × 429 (the limit halved to 2), then answers.
    sim.configure(latency_ms=100, faults=[FaultRule(kind="429", times=6, retry_after_s=0.5)])
    config = provider_config(sim, kind, "busy-model", max_concurrency=8, max_retries=0)
    limits: list[int] = []

    async def go() -> tuple[list[CallResult], ProviderLimiter]:
        provider = await open_provider(config)
        limiter = provider.limiter
        original_release, original_rate_limited = limiter.release, limiter.rate_limited

        def release(*args: Any) -> None:
            original_release(*args)
            limits.append(limiter.limit)

        def rate_limited(*args: Any) -> None:
            original_rate_limited(*args)
            limits.append(limiter.limit)

        limiter.release = release  # type: ignore[method-assign]
        limiter.rate_limited = rate_limited  # type: ignore[method-assign]
        try:
            return await _many(provider, 40), limiter
        finally:
            await provider.aclose()

    results, limiter = asyncio.run(go())
    # max_retries is 0, yet every call is answered: a 429 never uses up the retry budget.
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    assert sum(r.attempts for r in results) == 46
    stats = sim.stats()
    assert stats["faults_injected"] == {"429": 6} and stats["by_model"]["busy-model"]["requests"] == 46
    arrivals = stats["request_times"]["busy-model"]  # in the order the fault rule saw them
    # Nothing new starts until each burst's Retry-After (0.5 s) has passed.
    assert arrivals[4] - max(arrivals[:4]) >= 0.45
    assert arrivals[6] - max(arrivals[:6]) >= 0.45
    # Gentle start at 4, one halving per burst (4 -> 2, a second later 2 -> 1 at most), then growth back to 8.
    assert limits[0] == 2 and min(limits) >= 1
    assert limiter.limit == 8 and limiter.throttled == 6 and limiter.peak_in_flight <= 8


# --------------------------------------------------------------------------- the breaker, in the flow
def _run_flow(config: Path, **kwargs: Any) -> dict[str, Any]:
    """The run's summary; a run with calls missing ends Incomplete and raises it with its summary."""
    from flows.generation.generate import generate_tasks
    from flows.reporting.report import RunIncomplete

    try:
        return asyncio.run(generate_tasks(str(config), **kwargs))
    except RunIncomplete as incomplete:
        assert incomplete.summary is not None
        return incomplete.summary


def _read_tasks(summary: dict[str, Any]) -> list[dict[str, Any]]:
    import json

    with open(summary["files"]["tasks"], encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def _answer_sources(task: dict[str, Any]) -> list[str]:
    return sorted(m["source_id"] for m in task["threads"][0]["turns"][-1]["messages"] if m["role"] == "assistant")


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api", "fake_keys")
def test_breaker_cuts_off_a_dead_provider_and_a_rerun_makes_only_the_skipped_calls(
    sim: RunningSimulator, tmp_path: Path
) -> None:
    # "Down" = every request hangs until the client's 1 s timeout. Without the breaker the 30 calls at
    # concurrency 2 would take 15 s. (The provider is fixed later by removing the fault.)
    sim.configure(faults=[FaultRule(kind="hang", model="down-model", hang_s=30)])
    threshold, concurrency = 3, 2
    providers = [
        provider_entry(sim, "gpt-4o", "openai", "gpt-4o"),
        provider_entry(sim, "claude", "anthropic", "claude-sonnet-4-5"),
        provider_entry(
            sim,
            "down",
            "openai",
            "down-model",
            breaker_threshold=threshold,
            max_retries=0,
            timeout_s=1.0,
            max_concurrency=concurrency,
        ),
    ]
    config = write_config(tmp_path, providers, write_prompts(tmp_path / "prompts.jsonl", 30), chunk_size=10)
    started = time.monotonic()
    summary = _run_flow(config)
    wall = time.monotonic() - started

    down = summary["providers"]["down"]
    failed, skipped = down["failed"], down["skipped"]
    assert down["breaker"] and "cut off after" in down["breaker"] and "timeout" in down["breaker"]
    assert threshold <= failed <= threshold - 1 + concurrency, down
    assert down["failure_reasons"] == {"timeout": failed}
    assert skipped == 30 - failed and down["requested"] == 30 and down["answered"] == 0
    assert down["called_this_run"] == failed
    assert sim.stats()["by_model"]["down-model"]["requests"] == failed
    for sid in ("gpt-4o", "claude"):
        assert summary["providers"][sid]["answered"] == 30 and summary["providers"][sid]["breaker"] is None
    assert wall < 12.0, f"the breaker should have cut the run short ({wall:.1f} s; 15 s of timeouts without it)"

    tasks = _read_tasks(summary)
    assert summary["tasks_written"] == 30 and len(tasks) == 30
    error_types = [t["metadata"]["errors"]["down"]["error_type"] for t in tasks]
    assert all(_answer_sources(t) == ["claude", "gpt-4o"] for t in tasks)
    assert error_types.count("timeout") == failed and error_types.count("skipped") == skipped

    # Fixed: a plain rerun makes exactly the skipped calls; stored failures are kept.
    sim.configure(faults=[])
    sim.reset()
    rerun = _run_flow(config)
    by_model = sim.stats()["by_model"]
    assert set(by_model) == {"down-model"} and by_model["down-model"]["requests"] == skipped
    down = rerun["providers"]["down"]
    assert (down["answered"], down["failed"], down["skipped"], down["breaker"]) == (skipped, failed, 0, None)
    assert down["called_this_run"] == skipped and down["reused_from_store"] == failed

    sim.reset()
    final = _run_flow(config, retry_failed=True)
    assert sim.stats()["by_model"]["down-model"]["requests"] == failed
    assert final["providers"]["down"]["answered"] == 30 and final["providers"]["down"]["failed"] == 0
    assert all(_answer_sources(t) == ["claude", "down", "gpt-4o"] for t in _read_tasks(final))


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api", "fake_keys")
def test_401_trips_the_breaker_but_scattered_400s_never_do(sim: RunningSimulator, tmp_path: Path) -> None:
    # 400s among answers are the prompts' own errors; a run of nothing but 400s is covered in test_generate_flow.
    scattered = [FaultRule(kind="400", model="bad-model", prompt_contains=f"number {n}:") for n in (3, 4, 9, 15)]
    sim.configure(faults=[FaultRule(kind="401", model="auth-model"), *scattered])
    providers = [
        provider_entry(sim, "fine", "openai", "gpt-4o"),
        provider_entry(sim, "auth", "openai", "auth-model", breaker_threshold=3, max_concurrency=2),
        provider_entry(sim, "bad", "anthropic", "bad-model", breaker_threshold=3, max_concurrency=1),
    ]
    config = write_config(
        tmp_path, providers, write_prompts(tmp_path / "prompts.jsonl", 20), chunk_size=10, min_responses=1
    )
    summary = _run_flow(config)
    by_model = sim.stats()["by_model"]

    auth = summary["providers"]["auth"]
    assert auth["breaker"] and "http_401" in auth["breaker"]
    assert 3 <= auth["failed"] <= 3 - 1 + 2, auth
    assert auth["failure_reasons"] == {"http_401": auth["failed"]}
    assert auth["skipped"] == 20 - auth["failed"]
    assert by_model["auth-model"]["requests"] == auth["failed"]  # 401 is never retried

    bad = summary["providers"]["bad"]
    assert bad["breaker"] is None and bad["skipped"] == 0
    assert bad["failed"] == 4 and bad["failure_reasons"] == {"http_400": 4} and bad["answered"] == 16
    assert by_model["bad-model"]["requests"] == 20

    assert summary["providers"]["fine"]["answered"] == 20
    tasks = _read_tasks(summary)
    assert len(tasks) == 20 and all("auth" not in _answer_sources(t) for t in tasks)
    assert sum(t["metadata"]["errors"]["auth"]["error_type"] == "skipped" for t in tasks) == auth["skipped"]
