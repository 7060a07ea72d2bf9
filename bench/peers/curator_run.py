"""Drive bespokelabs-curator (0.1.x) against the simulator: one process per model, all at once.

Runs in its own venv (``bench/.venvs/curator``). Curator's ``LLM`` handles one model per call, so the
driver starts one worker process per model (``--worker MODEL``) and waits for all of them: the
fastest way to run several models with curator (``docs/architecture.md``: processes beat
threads once many calls are in flight). Each worker uses the ``openai`` backend against the
simulator's OpenAI-compatible endpoint with ``max_concurrent_requests`` = the benchmark's per-model
concurrency and request/token budgets far above what the run needs (``--max-requests-per-minute``,
``--max-tokens-per-minute``, ``--max-retries`` and ``--max-tokens`` change that, for bench/ratelimits.py);
curator's cache is off and its working directory is fresh. Curator sends one probe request per
model at start-up (to read rate-limit headers); the benchmark leaves those out of the request rate.

Prints one JSON line: ``{"answered": N, "failed": M, "stopped_workers": K}`` (``--time-limit`` stops
workers still running after that long: their counts are not in N and M, and the driver exits 124).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

TIMED_OUT = 124  # the driver's exit code when --time-limit stopped a worker


def worker(args: argparse.Namespace) -> int:
    """One model: run curator's LLM over every prompt; print the answered/failed counts."""
    from bespokelabs import curator

    with args.prompts.open(encoding="utf-8") as handle:
        prompts = [json.loads(line)["prompt"] for line in handle if line.strip()]
    llm = curator.LLM(
        model_name=args.worker,
        backend="openai",
        generation_params={"temperature": 0.7, "max_tokens": args.max_tokens, "top_p": 1.0},
        backend_params={
            "base_url": f"{args.url}/v1",
            "api_key": "sk-bench-not-a-real-key",
            "max_concurrent_requests": args.concurrency,
            # 0: not given, so curator's own default applies (the limits in the probe's headers, else its built-in ones).
            "max_requests_per_minute": args.max_requests_per_minute or None,
            "max_tokens_per_minute": args.max_tokens_per_minute or None,
            "max_retries": args.max_retries,
            "request_timeout": 120,
            "require_all_responses": False,
        },
    )
    response = llm(prompts, working_dir=str(args.working_dir / _safe(args.worker)))
    dataset = response.dataset if hasattr(response, "dataset") else response
    answered = sum(1 for row in dataset if row.get("response"))
    print(json.dumps({"answered": answered, "failed": len(prompts) - answered}), flush=True)
    return 0


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-._" else "_" for c in name)


def driver(args: argparse.Namespace) -> int:
    """Start one worker process per model, wait for all, add up their counts."""
    processes = []
    for model in args.models.split(","):
        command = [
            sys.executable,
            __file__,
            "--url",
            args.url,
            "--prompts",
            str(args.prompts),
            "--concurrency",
            str(args.concurrency),
            "--working-dir",
            str(args.working_dir),
            "--worker",
            model,
            "--max-tokens",
            str(args.max_tokens),
            "--max-retries",
            str(args.max_retries),
            "--max-requests-per-minute",
            str(args.max_requests_per_minute),
            "--max-tokens-per-minute",
            str(args.max_tokens_per_minute),
        ]
        processes.append(subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=os.environ.copy()))
    answered = failed = stopped = 0
    code = 0
    deadline = time.monotonic() + args.time_limit if args.time_limit > 0 else None
    for process in processes:
        try:
            out, _ = process.communicate(timeout=None if deadline is None else max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:  # --time-limit: this worker is stopped, its counts are unknown
            process.kill()
            out, _ = process.communicate()
            stopped += 1
            code = code or TIMED_OUT
            continue
        code = code or process.returncode
        for line in out.splitlines():
            if line.startswith("{"):
                counts = json.loads(line)
                answered += counts["answered"]
                failed += counts["failed"]
    print(json.dumps({"answered": answered, "failed": failed, "stopped_workers": stopped}))
    return code


def main() -> int:
    """Parse arguments; run as the driver, or as one model's worker with ``--worker``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="simulator root URL")
    parser.add_argument("--prompts", required=True, type=Path)
    parser.add_argument("--models", help="comma-separated model names (driver)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--working-dir", required=True, type=Path)
    parser.add_argument("--worker", help="run one model (internal)")
    # Defaults: the throughput benchmark's (budgets far above what a run needs, no retries).
    parser.add_argument("--max-tokens", type=int, default=1024, help="max_tokens of every request")
    parser.add_argument(
        "--max-requests-per-minute",
        type=int,
        default=10_000_000,
        help="curator's request budget, per model (0: not given, curator's default)",
    )
    parser.add_argument(
        "--max-tokens-per-minute",
        type=int,
        default=10_000_000_000,
        help="curator's token budget, per model (0: not given, curator's default)",
    )
    parser.add_argument("--max-retries", type=int, default=0, help="curator's max_retries (a 429 uses one)")
    parser.add_argument(
        "--time-limit", type=float, default=0, help="driver: stop workers still running after S seconds (0: none)"
    )
    args = parser.parse_args()
    return worker(args) if args.worker else driver(args)


if __name__ == "__main__":
    sys.exit(main())
