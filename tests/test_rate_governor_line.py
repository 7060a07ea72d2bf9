"""Calls held back by the rate governor wait in line: only the first watches the clock (issue 32).

Before, every held-back call slept until the bucket had room for one request and woke to find that
another had taken it: n waiters cost about n wake-ups per request let through, which made
``Provider.call`` under a learned allowance several times dearer than its exchange.
"""

from __future__ import annotations

import asyncio

from providers.limits import RateGovernor


def _paced(sleeps: list[float]) -> RateGovernor:
    """10 requests a second, one at a time; counts the governor's sleeps."""

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        await asyncio.sleep(seconds)

    governor = RateGovernor(requests_per_minute=600, burst=1, sleep=sleep)
    return governor


def test_waiting_calls_do_not_all_wake_for_each_request() -> None:
    sleeps: list[float] = []
    governor = _paced(sleeps)
    order: list[int] = []

    async def one(i: int) -> None:
        await governor.wait_turn(10)
        order.append(i)

    async def main() -> None:
        await asyncio.gather(*(one(i) for i in range(12)))

    asyncio.run(main())
    assert order == list(range(12))  # first come, first served
    assert governor.started == 12
    # 11 requests had to wait for a refill: about one sleep each (a timer may fire a hair early), not
    # one per waiting call per refill (about 66 before).
    assert len(sleeps) <= 2 * 11, len(sleeps)
    assert governor.wait_s > 0.8  # 11 refills at 10 a second: the pacing itself is unchanged


def test_a_cancelled_call_leaves_the_line_moving() -> None:
    sleeps: list[float] = []
    governor = _paced(sleeps)
    done: list[int] = []

    async def one(i: int) -> None:
        await governor.wait_turn(10)
        done.append(i)

    async def main() -> None:
        tasks = [asyncio.create_task(one(i)) for i in range(5)]
        await asyncio.sleep(0.02)  # 0 went through; 1 is first in line (sleeping), 2..4 wait behind it
        tasks[1].cancel()  # the one watching the clock
        tasks[3].cancel()  # one waiting behind
        results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=10)
        assert isinstance(results[1], asyncio.CancelledError)
        assert isinstance(results[3], asyncio.CancelledError)

    asyncio.run(main())
    assert done == [0, 2, 4]
    assert governor._head is False and not governor._line  # nobody is left holding the line
