"""The raw floor: plain asyncio + aiohttp (or httpx) with one semaphore per provider.

Sends exactly the requests ``rlhf run`` sends for the benchmark config (same models, messages and
parameters; OpenAI Chat Completions for the OpenAI-kind models, Anthropic Messages for the other),
parses each answer's text and nothing else: the least work any Python orchestrator can do per call.

    python bench/clients/floor.py --client aiohttp --url http://127.0.0.1:PORT \
        --prompts bench/out/prompts-1000.jsonl --concurrency 16
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchlib import ANTHROPIC_KEY, MODELS, OPENAI_KEY  # noqa: E402


def request_for(model: dict[str, Any], prompt: str) -> tuple[str, dict[str, str], bytes]:
    """(path, headers, body) of one request, as the product sends it."""
    messages = [{"role": "user", "content": prompt}]
    body = {"model": model["model"], "messages": messages, **model["params"]}
    if model["kind"] == "openai":
        headers = {"Authorization": f"Bearer {OPENAI_KEY}", "Content-Type": "application/json"}
        return "/v1/chat/completions", headers, json.dumps(body).encode()
    headers = {"x-api-key": ANTHROPIC_KEY, "anthropic-version": "2023-06-01", "Content-Type": "application/json"}
    return "/v1/messages", headers, json.dumps(body).encode()


def answer_text(kind: str, data: dict[str, Any]) -> str:
    """The answer text of a response body."""
    if kind == "openai":
        return data["choices"][0]["message"]["content"]
    return "".join(block.get("text", "") for block in data["content"] if block.get("type") == "text")


async def run_aiohttp(url: str, prompts: list[str], concurrency: int) -> int:
    """One session and one semaphore per provider; returns the number of failed calls."""
    import aiohttp

    failures = 0

    async def provider(model: dict[str, Any]) -> None:
        gate = asyncio.Semaphore(concurrency)
        connector = aiohttp.TCPConnector(limit=concurrency * 2)
        async with aiohttp.ClientSession(url, connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:

            async def one(prompt: str) -> None:
                nonlocal failures
                path, headers, body = request_for(model, prompt)
                async with gate:
                    try:
                        async with session.post(path, data=body, headers=headers) as response:
                            data = await response.json()
                            if response.status != 200 or not answer_text(model["kind"], data):
                                failures += 1
                    except (TimeoutError, aiohttp.ClientError, KeyError, ValueError):
                        failures += 1

            await asyncio.gather(*(one(p) for p in prompts))

    await asyncio.gather(*(provider(m) for m in MODELS))
    return failures


async def run_httpx(url: str, prompts: list[str], concurrency: int) -> int:
    """One ``httpx.AsyncClient`` (default transport) and one semaphore per provider.

    The pool is twice the concurrency: a pool sized to exactly the concurrency makes waiters queue
    for connections, which is pathologically slow (``docs/architecture.md``).
    """
    import httpx

    failures = 0

    async def provider(model: dict[str, Any]) -> None:
        gate = asyncio.Semaphore(concurrency)
        limits = httpx.Limits(max_connections=concurrency * 2, max_keepalive_connections=concurrency * 2)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120, trust_env=False) as client:

            async def one(prompt: str) -> None:
                nonlocal failures
                path, headers, body = request_for(model, prompt)
                async with gate:
                    try:
                        response = await client.post(path, content=body, headers=headers)
                        if response.status_code != 200 or not answer_text(model["kind"], response.json()):
                            failures += 1
                    except (httpx.HTTPError, KeyError, ValueError):
                        failures += 1

            await asyncio.gather(*(one(p) for p in prompts))

    await asyncio.gather(*(provider(m) for m in MODELS))
    return failures


def main() -> int:
    """Parse arguments, send every prompt to every model, report failures on stdout."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--client", choices=("aiohttp", "httpx"), default="aiohttp")
    parser.add_argument("--url", required=True, help="simulator root URL")
    parser.add_argument("--prompts", required=True, type=Path)
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight per provider")
    args = parser.parse_args()
    with args.prompts.open(encoding="utf-8") as handle:
        prompts = [json.loads(line)["prompt"] for line in handle if line.strip()]
    runner = run_aiohttp if args.client == "aiohttp" else run_httpx
    failures = asyncio.run(runner(args.url, prompts, args.concurrency))
    print(json.dumps({"calls": len(prompts) * len(MODELS), "failures": failures}))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
