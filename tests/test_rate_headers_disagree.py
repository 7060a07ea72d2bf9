"""Rate limits when a server's headers and its 429s disagree (issue 27): 429s are the truth, headers hints.

Every test runs the governor on a simulated clock (``RateGovernor`` takes its clock and sleep), so what
is asserted is the schedule itself, independent of machine load.
"""

from __future__ import annotations

import asyncio

import pytest

from providers.limits import RateGovernor
from providers.ratelimit_headers import Allowance, RateInfo, rate_info


class FakeClock:
    """Monotonic seconds that advance only when something sleeps on them (or a test moves them)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 1e-9)  # a wait below the clock's resolution still lets time pass


def _governor(clock: FakeClock) -> RateGovernor:
    return RateGovernor(clock=clock, sleep=clock.sleep)


def requests_info(limit: float, remaining: float, reset_s: float | None, coarse: bool = False) -> RateInfo:
    return RateInfo(requests=Allowance(limit, remaining, reset_s, coarse), tokens=None)


def per_minute(governor: RateGovernor) -> float | None:
    return governor.learned_per_minute()["requests"]


# ------------------------------------------------------------------------------ 429s are the truth


def test_429s_in_spite_of_headers_cut_the_rate_to_what_was_accepted_and_it_grows_back_slowly() -> None:
    clock = FakeClock()
    governor = _governor(clock)
    for _ in range(40):  # 40 answers over 2 s, each saying "plenty left" of a 1,200/min allowance
        clock.now += 0.05
        governor.answered(requests_info(1200, 1180, 1.0), None)
    assert per_minute(governor) == pytest.approx(1200.0)
    governor.refused(None, requests_info(1200, 1180, 1.0))  # ... and yet a 429
    assert governor.adaptive_rate == pytest.approx(0.9 * 20.0)  # 90% of the 20/s accepted
    assert per_minute(governor) == pytest.approx(0.9 * 1200.0)
    assert governor.requests is not None and governor.requests.capacity < 20  # the burst too
    governor.refused(None, requests_info(1200, 1180, 1.0))  # the same burst of 429s: one cut
    assert governor.adaptive_rate == pytest.approx(18.0)
    clock.now += 1.0
    governor.answered(requests_info(1200, 1180, 1.0), None)
    assert governor.adaptive_rate == pytest.approx(18.0 * 1.02)  # 2% a second while headers are seen


def test_headers_only_shape_the_rate_within_what_429s_allow() -> None:
    clock = FakeClock()
    governor = _governor(clock)
    for _ in range(20):
        clock.now += 0.1
        governor.answered(requests_info(1200, 1190, 0.5), None)  # 10/s accepted
    governor.refused(None, None)
    assert governor.adaptive_rate == pytest.approx(9.0)
    for _ in range(5):  # later headers still announce 1,200/min: the lower 429 rate holds
        clock.now += 0.1
        governor.answered(requests_info(1200, 1195, 0.25), None)
    rate = per_minute(governor)
    assert rate is not None and rate < 9.0 * 60 * 1.02


# ------------------------------------------------------------------------------ pacing within a second


def test_a_per_minute_allowance_is_spent_evenly_not_all_at_once() -> None:
    async def go() -> tuple[list[float], RateGovernor]:
        clock = FakeClock()
        governor = _governor(clock)
        governor.answered(requests_info(1200, 1199, 0.05), None)  # 1,200/min, one used
        starts = []
        for _ in range(64):
            ticket = await governor.wait_turn(1)
            starts.append(round(clock.now - 1000.0, 6))
            # Each answer says the minute's bucket is nearly full: it must not refill the pacing.
            governor.answered(requests_info(1200, 1190, 0.5), ticket)
        return starts, governor

    starts, governor = asyncio.run(go())
    assert starts[19] == 0.0 and starts[20] > 0.0  # one second's refill (20) at once, not 1,200
    assert 2.2 < starts[63] < 2.6  # the other 44 at ~19.4/s (a little under 20/s), evenly
    gaps = {round(b - a, 4) for a, b in zip(starts[21:], starts[22:], strict=False)}
    assert gaps == {round(1 / (20 * 0.97), 4)}
    assert per_minute(governor) == pytest.approx(1200.0)


def test_a_small_bucket_is_spent_as_announced() -> None:
    async def go() -> list[float]:
        clock = FakeClock()
        governor = _governor(clock)
        governor.answered(requests_info(20, 10, 0.5), None)  # 20/s, a bucket of 20: no extra pacing
        return [await governor.wait_turn(1) and clock.now - 1000.0 for _ in range(20)]

    assert asyncio.run(go()) == [0.0] * 20


# ------------------------------------------------------------------------------ resets read defensively


def test_whole_second_rfc3339_resets_are_read_to_within_a_second() -> None:
    clock = FakeClock()
    rounded_up = _governor(clock)
    rounded_up.answered(requests_info(20, 10, 1.0, coarse=True), None)  # 10 used, "full in 1 s" (0 to 1 s)
    assert per_minute(rounded_up) == pytest.approx(1200.0)  # not 10/s: half a second off, at most 20/s
    cut = _governor(clock)
    cut.answered(requests_info(20, 5, 0.0, coarse=True), None)  # a reset cut to "now"
    assert per_minute(cut) == pytest.approx(1200.0)  # not ignored (the old floor of 20/min)
    later = _governor(clock)
    later.answered(requests_info(100, 40, 4.0, coarse=True), None)  # 60 used in 3.5 s (± 1 s)
    assert per_minute(later) == pytest.approx(60 / 3.5 * 60, abs=0.1)


def test_an_implausibly_short_next_request_reset_is_not_a_refill_rate() -> None:
    clock = FakeClock()
    governor = _governor(clock)
    governor.answered(requests_info(20, 0, 0.05), None)  # "the next request fits in 50 ms"
    assert per_minute(governor) == pytest.approx(1200.0)  # at most the bucket per second, not 400/s
    zero = _governor(clock)
    zero.answered(requests_info(20, 19, 0.0), None)  # "0s": the next request fits now
    assert per_minute(zero) == pytest.approx(1200.0)  # the fastest plausible, not 20/min


def test_a_per_minute_limit_cannot_refill_faster_than_a_sixtieth_per_second() -> None:
    clock = FakeClock()
    governor = _governor(clock)
    governor.answered(requests_info(1200, 1100, 1.0), None)  # would read as 100/s
    assert per_minute(governor) == pytest.approx(1200.0)


# ------------------------------------------------------------------------------ Azure


def test_azure_remaining_headers_without_limits_or_resets_are_read() -> None:
    info = rate_info({"x-ratelimit-remaining-requests": "19", "x-ratelimit-remaining-tokens": "9000"})
    assert info is not None and info.requests is not None and info.tokens is not None
    assert (info.requests.remaining, info.tokens.remaining) == (19, 9000)
    assert not info.requests.limit_known

    async def go() -> tuple[float, float]:
        clock = FakeClock()
        governor = _governor(clock)
        tickets = [await governor.wait_turn(1) for _ in range(3)]
        governor.answered(info, tickets[0])
        assert governor.requests is not None
        return governor.requests.capacity, governor.requests.level

    capacity, level = asyncio.run(go())
    assert capacity == 20  # at least what remained after the request, plus the request
    assert level == pytest.approx(19 - 2)  # the server's remaining, less what was sent since
