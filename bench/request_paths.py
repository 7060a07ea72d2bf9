"""CPU per call of each request path, in one process against the simulator (latency 0, its own process).

What one call costs the client's event loop, path by path: the raw aiohttp floor, each provider kind
on each ``http_client``, and ``Provider.call`` end to end (limiter, retries, breaker, result) on top.
``time.process_time`` of this process only, best of ``--repeats``; the simulator's CPU is not counted.

    .venv/bin/python bench/request_paths.py            # prints a markdown table
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import ANTHROPIC_KEY, MODELS, OPENAI_KEY, markdown_table  # noqa: E402
from clients.floor import answer_text, request_for  # noqa: E402

from providers.config import ProviderConfig  # noqa: E402
from providers.factory import open_provider  # noqa: E402
from simulator import start_simulator_process  # noqa: E402

PROMPT = [{"role": "user", "content": "Explain the difference between a list and a tuple in Python."}]


async def _drive(call: Callable[[int], Awaitable[Any]], calls: int, in_flight: int) -> float:
    """CPU seconds of this process for ``calls`` calls, ``in_flight`` at a time."""
    semaphore = asyncio.Semaphore(in_flight)

    async def one(i: int) -> None:
        async with semaphore:
            await call(i)

    await call(-1)  # warm the connection pool and any lazy setup
    started = time.process_time()
    await asyncio.gather(*(one(i) for i in range(calls)))
    return time.process_time() - started


def _config(url: str, kind: str, http_client: str) -> ProviderConfig:
    model = next(m for m in MODELS if m["kind"] == kind)
    return ProviderConfig(
        source_id=f"{kind}-{http_client}",
        kind=kind,
        model=model["model"],
        params=model["params"],
        base_url=f"{url}/v1" if kind == "openai" else url,
        http_client=http_client,
        max_concurrency=64,
        api_key_env="BENCH_OPENAI_KEY" if kind == "openai" else "BENCH_ANTHROPIC_KEY",
    )


async def raw_aiohttp(url: str, calls: int, in_flight: int) -> float:
    """The floor's path (``clients/floor.py``): one session, its request building and answer reading."""
    model = next(m for m in MODELS if m["kind"] == "openai")
    async with aiohttp.ClientSession() as session:

        async def call(i: int) -> None:
            path, headers, body = request_for(model, PROMPT[-1]["content"])
            async with session.post(url + path, data=body, headers=headers) as response:
                assert answer_text(model["kind"], json.loads(await response.read()))

        return await _drive(call, calls, in_flight)


async def provider_path(
    url: str, kind: str, http_client: str, calls: int, in_flight: int, *, whole_call: bool
) -> float:
    """``Provider.call`` end to end (``whole_call``), or only its exchange and answer parsing (``_send``)."""
    provider = await open_provider(_config(url, kind, http_client))

    async def call(i: int) -> None:
        if whole_call:
            result = await provider.call(PROMPT, None)
            assert result.ok, result.error
        else:
            await provider._send(PROMPT, None)

    try:
        return await _drive(call, calls, in_flight)
    finally:
        await provider.aclose()


def measure(calls: int, in_flight: int, repeats: int) -> list[tuple[str, float]]:
    """(path, best CPU ms per call) for every path."""
    os.environ.setdefault("BENCH_OPENAI_KEY", OPENAI_KEY)
    os.environ.setdefault("BENCH_ANTHROPIC_KEY", ANTHROPIC_KEY)
    paths: list[tuple[str, Callable[[str], Awaitable[float]]]] = [
        ("raw aiohttp (the floor's path)", lambda url: raw_aiohttp(url, calls, in_flight)),
    ]
    for kind in ("openai", "anthropic"):
        default = "openai SDK" if kind == "openai" else "httpx"
        for http_client, label in (("default", default), ("aiohttp", "aiohttp")):
            for whole, what in ((False, "send + parse"), (True, "`Provider.call`")):
                paths.append(
                    (
                        f"{kind}: {what}, {label}",
                        lambda url, k=kind, h=http_client, w=whole: provider_path(
                            url, k, h, calls, in_flight, whole_call=w
                        ),
                    )
                )
    results = []
    with start_simulator_process(latency_ms=0, mode="derived") as sim:
        for label, run in paths:
            best = min(asyncio.run(run(sim.url)) for _ in range(repeats))
            results.append((label, best / calls * 1000))
    return results


def main() -> int:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--in-flight", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    args = parser.parse_args()
    rows = measure(args.calls, args.in_flight, args.repeats)
    table = markdown_table(["path", "CPU ms per call"], [[label, f"{ms:.2f}"] for label, ms in rows])
    print(table)
    if args.out:
        args.out.write_text(table + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
