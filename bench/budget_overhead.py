"""What a budget adds to a call: one reservation and its settlement (``providers.budget``), in microseconds.

The per-call path must stay lean (docs/architecture.md: the client's CPU per call decides the rate): this
times ``Account.reserve`` + ``Account.settle`` on the event loop, as ``Provider.call`` makes them, against a
limit that is never reached, and prints the microseconds per call (a run's call costs milliseconds).

Run: ``.venv/bin/python bench/budget_overhead.py`` (``--calls N``).
"""

from __future__ import annotations

import argparse
import asyncio
import time

from providers.budget import Budget, Hold, Limit
from providers.config import Price
from providers.result import CallResult


async def _measure(calls: int) -> float:
    total, own = Limit("budget.usd", 1e12), Limit("budget.providers.a", 1e12)
    tokens = Limit("budget.tokens", 1e15, "tokens")
    budget = Budget([total, own, tokens])
    account = budget.add_account("a", [total, own], [tokens], Price(input_per_million=2.5, output_per_million=10.0))
    result = CallResult(ok=True, input_tokens=120, output_tokens=300, cost_usd=0.0033)
    started = time.perf_counter()
    for _ in range(calls):
        hold = await account.reserve(121, 1024)
        assert isinstance(hold, Hold)
        account.settle(hold, result)
    return (time.perf_counter() - started) / calls * 1e6


def main() -> None:
    """Print the microseconds a reservation and its settlement take per call."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=200_000)
    args = parser.parse_args()
    per_call = min(asyncio.run(_measure(args.calls)) for _ in range(3))
    print(f"budget reservation + settlement: {per_call:.2f} µs per call (best of 3 × {args.calls:,} calls)")


if __name__ == "__main__":
    main()
