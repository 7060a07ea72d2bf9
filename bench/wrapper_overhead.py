"""What ``Provider.call`` adds to its exchange (send + parse), on the ``http_client: aiohttp`` path (issue 32).

CPU of this process (``time.process_time``), best of ``--repeats``, against the simulator (latency 0,
its own process), 16 calls in flight. Two settings:

- **paced**: the simulator's default allowance (10,000 requests a minute, announced in its headers):
  the rate governor learns it and paces ``Provider.call`` to 97% of it (~160 calls/s), so each call
  waits for its turn on a timer and its exchange cannot share the event loop's wake-ups with others;
  send + parse alone is not paced. This is what ``bench/request_paths.py`` measures.
- **unpaced**: an allowance of 10^8 requests and 10^10 tokens a minute: nothing holds a call back; the wrapper's own bookkeeping
  (limiter, retry policy, breaker, result, price) is all that differs.

    .venv/bin/python bench/wrapper_overhead.py [--calls 2000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import request_paths  # noqa: E402
from benchlib import ANTHROPIC_KEY, OPENAI_KEY, markdown_table  # noqa: E402

from simulator import start_simulator_process  # noqa: E402

SETTINGS: dict[str, dict[str, int]] = {
    "paced": {},
    "unpaced": {"rate_limit_requests": 100_000_000, "rate_limit_tokens": 10_000_000_000},
}


def main() -> int:
    """Print a markdown table: CPU ms per call of send + parse and of ``Provider.call``, and the difference."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", choices=sorted(SETTINGS), help="measure one setting")
    args = parser.parse_args()
    os.environ.setdefault("BENCH_OPENAI_KEY", OPENAI_KEY)
    os.environ.setdefault("BENCH_ANTHROPIC_KEY", ANTHROPIC_KEY)
    rows = []
    for setting, extra in SETTINGS.items():
        if args.only and setting != args.only:
            continue
        with start_simulator_process(latency_ms=0, mode="derived", **extra) as sim:
            for kind in ("openai", "anthropic"):
                ms = {}
                for whole in (False, True):
                    runs = [
                        asyncio.run(
                            request_paths.provider_path(sim.url, kind, "aiohttp", args.calls, 16, whole_call=whole)
                        )
                        for _ in range(args.repeats)
                    ]
                    ms[whole] = min(runs) / args.calls * 1000
                rows.append([setting, kind, f"{ms[False]:.3f}", f"{ms[True]:.3f}", f"{ms[True] - ms[False]:.3f}"])
                print(rows[-1], file=sys.stderr, flush=True)
    print(markdown_table(["setting", "kind", "send + parse", "`Provider.call`", "wrapper"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
