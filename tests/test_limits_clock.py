"""The rate governor's pacing on a simulated clock: exact, instant and independent of machine load.

``RateGovernor`` takes its clock and its sleep as arguments; here both belong to a fake clock that
moves only when the governor sleeps, so what is asserted is the schedule itself, to the millisecond.
"""

from __future__ import annotations

import asyncio

import pytest

from providers.limits import RateGovernor
from providers.ratelimit_headers import Allowance, RateInfo


class FakeClock:
    """Monotonic seconds that advance only when something sleeps on them."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _governor(clock: FakeClock, **limits: float) -> RateGovernor:
    return RateGovernor(**limits, clock=clock, sleep=clock.sleep)


async def _starts(governor: RateGovernor, clock: FakeClock, calls: int, tokens: int = 1) -> list[float]:
    """When each of ``calls`` sequential requests is let through."""
    times = []
    for _ in range(calls):
        await governor.wait_turn(tokens)
        times.append(round(clock.now - 1000.0, 6))
    return times


def test_a_configured_request_rate_spaces_requests_after_the_burst() -> None:
    clock = FakeClock()
    governor = _governor(clock, requests_per_minute=120, burst=2)  # 2/s, two at once
    starts = asyncio.run(_starts(governor, clock, 6))
    assert starts == [0.0, 0.0, 0.5, 1.0, 1.5, 2.0]
    assert governor.wait_s == pytest.approx(2.0)  # time with a request held, on the governor's clock


def test_a_token_budget_paces_by_the_estimate() -> None:
    clock = FakeClock()
    governor = _governor(clock, tokens_per_minute=6000)  # 100 tokens/s, a bucket of 100
    starts = asyncio.run(_starts(governor, clock, 3, tokens=50))
    assert starts == [0.0, 0.0, 0.5]


def test_a_retry_after_pauses_every_request_until_it_has_passed() -> None:
    clock = FakeClock()
    governor = _governor(clock, requests_per_minute=6000)
    governor.refused(7.5, None)
    starts = asyncio.run(_starts(governor, clock, 2))
    assert starts[0] == pytest.approx(7.5) and governor.pauses == 1


def test_a_servers_remaining_zero_holds_requests_until_the_allowance_refills() -> None:
    clock = FakeClock()
    governor = _governor(clock)
    ticket = asyncio.run(governor.wait_turn(1))
    # 60 requests per minute announced, none left: the next request waits a refill (one second).
    governor.answered(RateInfo(requests=Allowance(60, 0, 60.0), tokens=None), ticket)
    starts = asyncio.run(_starts(governor, clock, 2))
    assert starts == [1.0, 2.0]
