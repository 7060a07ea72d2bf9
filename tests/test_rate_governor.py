"""The rate governor on its own: what it reads from rate-limit headers and how it paces to it."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest
from conftest import provider_config

from providers.breaker import Breaker
from providers.limits import RateGovernor
from providers.pool import ProviderPool
from providers.ratelimit_headers import Allowance, RateInfo, rate_info
from simulator import FaultRule, RunningSimulator

NOW = datetime(2026, 12, 1, 9, 0, 0, tzinfo=UTC)


def allowance(limit: float, remaining: float, reset_s: float | None) -> RateInfo:
    return RateInfo(requests=Allowance(limit, remaining, reset_s), tokens=None)


# -------------------------------------------------------------------------------------------- headers


def test_openai_headers_as_documented() -> None:
    # The example in OpenAI's rate-limit guide.
    info = rate_info(
        {
            "x-ratelimit-limit-requests": "60",
            "x-ratelimit-limit-tokens": "150000",
            "x-ratelimit-remaining-requests": "59",
            "x-ratelimit-remaining-tokens": "149984",
            "x-ratelimit-reset-requests": "1s",
            "x-ratelimit-reset-tokens": "6m0s",
        }
    )
    assert info == RateInfo(requests=Allowance(60, 59, 1.0), tokens=Allowance(150000, 149984, 360.0))


def test_anthropic_headers_with_rfc3339_resets() -> None:
    info = rate_info(
        {
            "anthropic-ratelimit-requests-limit": "50",
            "anthropic-ratelimit-requests-remaining": "49",
            "anthropic-ratelimit-requests-reset": (NOW + timedelta(seconds=1.2)).isoformat().replace("+00:00", "Z"),
            "anthropic-ratelimit-tokens-limit": "30000",
            "anthropic-ratelimit-tokens-remaining": "29000",
            "anthropic-ratelimit-tokens-reset": "2026-12-01T09:00:02Z",
            "anthropic-ratelimit-input-tokens-limit": "20000",
            "anthropic-ratelimit-input-tokens-remaining": "19000",
            "anthropic-ratelimit-input-tokens-reset": "2026-12-01T09:00:02Z",
        },
        NOW,
    )
    assert info is not None and info.requests == Allowance(50, 49, pytest.approx(1.2))
    assert info.tokens == Allowance(30000, 29000, 2.0)  # the most restrictive of the token limits


def test_anthropic_input_tokens_stand_in_for_tokens_and_bad_values_are_ignored() -> None:
    info = rate_info(
        {
            "anthropic-ratelimit-input-tokens-limit": "20000",
            "anthropic-ratelimit-input-tokens-remaining": "5",
            "anthropic-ratelimit-input-tokens-reset": "not a time",
            "anthropic-ratelimit-requests-limit": "lots",
            "anthropic-ratelimit-requests-remaining": "1",
        },
        NOW,
    )
    assert info == RateInfo(requests=None, tokens=Allowance(20000, 5, None))
    assert rate_info({"content-type": "application/json"}) is None
    assert rate_info({"x-ratelimit-limit-requests": "inf", "x-ratelimit-remaining-requests": "1"}) == RateInfo(
        None, None
    )


# ------------------------------------------------------------------------------------ learning


def test_refill_rate_and_size_are_learned_from_headers() -> None:
    governor = RateGovernor()
    assert governor.requests is None  # nothing known: no pacing at all
    governor.answered(allowance(20, 10, 0.5), None)  # 10 used, full again in 0.5 s: 20 per second
    assert governor.requests is not None
    assert governor.requests.rate == pytest.approx(20.0) and governor.requests.capacity == 20
    assert governor.learned_per_minute()["requests"] == pytest.approx(1200.0)


def test_a_fixed_window_reset_never_drives_the_rate_below_the_limit_per_minute() -> None:
    governor = RateGovernor()
    governor.answered(allowance(10_000, 9_900, 59.0), None)  # a window ending in 59 s, not a refill time
    assert governor.learned_per_minute()["requests"] == pytest.approx(10_000.0)


def test_the_lowest_of_configured_and_announced_wins_and_shares_scale_what_is_learned() -> None:
    configured = RateGovernor(requests_per_minute=600)
    configured.answered(allowance(20, 10, 0.5), None)
    assert configured.learned_per_minute()["requests"] == pytest.approx(600.0)

    half = RateGovernor(share=0.5)
    half.answered(allowance(20, 10, 0.5), None)
    assert half.learned_per_minute()["requests"] == pytest.approx(600.0)
    assert half.requests is not None and half.requests.capacity == 10


def test_the_servers_remaining_sets_the_level_less_what_was_sent_since() -> None:
    async def go() -> tuple[float, float]:
        governor = RateGovernor()
        governor.answered(allowance(100, 50, 0.5), None)  # 100 per second, size 100
        tickets = [await governor.wait_turn(1) for _ in range(6)]
        assert governor.requests is not None
        # The server answered the first request with 3 left; five more were sent after it.
        governor.answered(allowance(100, 3, 0.97), tickets[0])
        lower = governor.requests.level
        # A later answer says the server has refilled more than the client thought: take its word.
        governor.answered(allowance(100, 90, 0.1), tickets[5])
        return lower, governor.requests.level

    lower, higher = asyncio.run(go())
    assert lower == pytest.approx(3 - 5, abs=0.01)
    assert higher == pytest.approx(90, abs=0.01)


def test_token_remaining_counts_the_tokens_sent_since() -> None:
    async def go() -> float:
        governor = RateGovernor()
        info = RateInfo(requests=None, tokens=Allowance(10_000, 9_000, 6.0))
        governor.answered(info, None)
        first = await governor.wait_turn(300)
        await governor.wait_turn(200)
        await governor.wait_turn(100)
        governor.answered(RateInfo(requests=None, tokens=Allowance(10_000, 4_000, 6.0)), first)
        assert governor.tokens is not None
        return governor.tokens.level

    assert asyncio.run(go()) == pytest.approx(4_000 - 300, abs=5)


def test_without_headers_a_429_cuts_to_85_percent_of_what_was_accepted_then_grows() -> None:
    governor = RateGovernor()
    for _ in range(40):
        governor.answered(None, None)  # 40 answers in the last 2 s: 20 per second accepted
    governor.refused(None, None)
    assert governor.adaptive_rate == pytest.approx(17.0)
    assert governor.requests is not None and governor.requests.rate == pytest.approx(17.0)
    governor.refused(None, None)  # the same burst: cut once per second
    assert governor.adaptive_rate == pytest.approx(17.0)
    time.sleep(0.2)
    governor.answered(None, None)
    assert 17.0 < governor.adaptive_rate < 17.0 * 1.05  # 5% a second, for 0.2 s


def test_without_headers_or_answers_a_429_halves_the_rate_tried() -> None:
    async def go() -> RateGovernor:
        governor = RateGovernor()
        for _ in range(10):
            await governor.wait_turn(1)  # 10 sent in the last 2 s, none answered
        governor.refused(None, None)
        return governor

    governor = asyncio.run(go())
    # 10 sent within a moment of the first: measured over the shortest span (0.25 s), 40/s tried.
    assert governor.adaptive_rate == pytest.approx(20.0)


def test_a_429_with_retry_after_and_nothing_accepted_only_pauses() -> None:
    async def go() -> RateGovernor:
        governor = RateGovernor()
        for _ in range(10):
            await governor.wait_turn(1)
        governor.refused(0.3, None)  # the server said when to come back: no guessing
        return governor

    governor = asyncio.run(go())
    assert governor.adaptive_rate is None and governor.paused_until > time.monotonic() + 0.2


def test_headers_replace_a_rate_guessed_from_429s() -> None:
    governor = RateGovernor()
    for _ in range(10):
        governor.answered(None, None)
    governor.refused(None, None)
    assert governor.adaptive_rate is not None
    governor.answered(allowance(1200, 1100, 5.0), None)
    assert governor.adaptive_rate is None and governor.learned_per_minute()["requests"] == pytest.approx(1200.0)


def test_waiting_is_measured_as_wall_clock_time() -> None:
    async def go() -> float:
        governor = RateGovernor()
        governor.pause(0.3)
        await asyncio.gather(*(governor.wait_turn(1) for _ in range(5)))  # five calls wait together
        return governor.wait_s

    assert 0.25 <= asyncio.run(go()) < 1.5  # once, not five times


def test_the_breaker_ignores_429s() -> None:
    breaker = Breaker(2)
    for _ in range(20):
        breaker.record(False, "http_429", 429, "HTTP 429: rate limited")
    assert not breaker.is_open


# ------------------------------------------------------------------------------------ groups


def test_providers_of_one_rate_limit_group_share_one_governor(sim: RunningSimulator, fake_keys: dict[str, str]) -> None:
    async def go() -> None:
        first = provider_config(sim, "openai", "m1", rate_limit_group="gateway", requests_per_minute=600)
        second = provider_config(sim, "anthropic", "m2", rate_limit_group="gateway", requests_per_minute=120)
        alone = provider_config(sim, "openai", "m3")
        with ProviderPool("group-test", lambda: False) as pool:
            a, b, c = (
                await pool.get(first.model_copy(update={"source_id": "a"})),
                await pool.get(second.model_copy(update={"source_id": "b"})),
                await pool.get(alone.model_copy(update={"source_id": "c"})),
            )
            try:
                assert a.limiter.governor is b.limiter.governor is not c.limiter.governor
                assert a.limiter.governor.learned_per_minute()["requests"] == pytest.approx(120.0)
                assert a.limiter is not b.limiter  # concurrency stays each provider's own
            finally:
                await pool.aclose()

    asyncio.run(go())


# ------------------------------------------------------------------------------ calls that wait


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_a_call_waits_out_429s_past_max_retries(sim: RunningSimulator, fake_keys: dict[str, str], kind: str) -> None:
    from providers.factory import open_provider

    sim.configure(faults=[FaultRule(kind="429", times=6, retry_after_s=0.05)])
    config = provider_config(sim, kind, "limited", max_retries=1, max_concurrency=1)

    async def go() -> tuple[bool, int, int]:
        provider = await open_provider(config)
        try:
            result = await provider.call([{"role": "user", "content": "hello"}], None)
            return result.ok, result.attempts, provider.limiter.governor.throttled
        finally:
            await provider.aclose()

    ok, attempts, throttled = asyncio.run(go())
    assert ok and attempts == 7 and throttled == 6


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_a_call_gives_up_on_rate_limits_only_after_max_rate_limited_s_without_progress(
    sim: RunningSimulator, fake_keys: dict[str, str], kind: str
) -> None:
    from providers.factory import open_provider

    sim.configure(faults=[FaultRule(kind="429", retry_after_s=0.1)])
    config = provider_config(sim, kind, "never", max_retries=0, max_rate_limited_s=1.0, breaker_threshold=2)

    async def go() -> list[tuple[bool, str | None, bool, float]]:
        provider = await open_provider(config)
        try:
            started = time.monotonic()
            results = await asyncio.gather(
                *(provider.call([{"role": "user", "content": f"q{i}"}], None) for i in range(3))
            )
            return [(r.ok, r.error_type, r.storable, time.monotonic() - started) for r in results] + [
                (provider.breaker.is_open, None, False, 0.0)
            ]
        finally:
            await provider.aclose()

    *results, (breaker_open, _, _, _) = asyncio.run(go())
    assert all(not ok and error == "http_429" and not storable for ok, error, storable, _ in results)
    assert all(elapsed >= 0.9 for *_, elapsed in results)  # kept trying for the whole second
    assert not breaker_open  # three calls gave up on 429s: still no breaker
    assert sim.stats()["by_model"]["never"]["requests"] > 3  # retried, well past max_retries=0


def test_a_shard_gets_its_share_of_what_is_learned(sim: RunningSimulator) -> None:
    from flows.sharding.shard import scaled_provider
    from providers.base import governor_for

    config = provider_config(sim, "openai", "m", requests_per_minute=600)
    half = scaled_provider(config, 0.5)
    assert half.rate_share == 0.5 and half.requests_per_minute == 300
    governor = governor_for(half)
    governor.answered(allowance(100, 50, 1.0), None)  # 50 per second announced: this shard may use 25
    assert governor.learned_per_minute()["requests"] == pytest.approx(300.0)  # the configured share is lower still
    unlimited = governor_for(scaled_provider(provider_config(sim, "openai", "m"), 0.5))
    unlimited.answered(allowance(100, 50, 1.0), None)
    assert unlimited.learned_per_minute()["requests"] == pytest.approx(1500.0)


def test_coarse_resets_do_not_drag_a_configured_rate_down() -> None:
    # Anthropic's resets have whole seconds: 1 used, "full again in 1 s" reads as 1 request/s.
    governor = RateGovernor(requests_per_minute=1200, burst=20)
    governor.answered(allowance(20, 19, 1.0), None)
    assert governor.learned_per_minute()["requests"] == pytest.approx(1200.0)
    assert governor.requests is not None and governor.requests.capacity == 20


def test_a_configured_request_limit_is_not_cut_by_429s_without_headers() -> None:
    governor = RateGovernor(requests_per_minute=1200, burst=20)
    for _ in range(10):
        governor.answered(None, None)
    governor.refused(None, None)
    assert governor.adaptive_rate is None and governor.learned_per_minute()["requests"] == pytest.approx(1200.0)
    assert governor.requests is not None and governor.requests.level <= 0  # this 429 still empties the bucket
