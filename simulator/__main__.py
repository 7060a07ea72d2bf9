"""Command line entry point: ``python -m simulator --port 8765 --latency-ms 20 ...``."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from simulator.server import serve
from simulator.settings import SimulatorSettings


def parse_args(argv: Sequence[str] | None = None) -> tuple[str, int, SimulatorSettings]:
    """Parse CLI arguments into (host, port, settings); explicit flags override --settings-json."""
    parser = argparse.ArgumentParser(prog="python -m simulator", description="LLM provider simulator")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="TCP port; 0 picks a free port")
    parser.add_argument("--latency-ms", type=float, default=None)
    parser.add_argument("--jitter-ms", type=float, default=None)
    parser.add_argument("--mode", choices=["auto", "replay", "derived"], default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--faults-json", default=None, help="JSON list of FaultRule objects")
    parser.add_argument("--require-api-key", action="store_true", default=None)
    parser.add_argument("--rate-limit-requests", type=int, default=None, help="requests per window")
    parser.add_argument("--rate-limit-tokens", type=int, default=None, help="tokens per window")
    parser.add_argument("--rate-limit-window-s", type=float, default=None, help="window / refill period")
    parser.add_argument("--rate-limit-burst", type=int, default=None, help="request bucket capacity")
    parser.add_argument(
        "--enforce-rate-limits",
        action="store_true",
        default=None,
        help="answer 429 beyond the limits (token buckets per key and model)",
    )
    parser.add_argument("--no-rate-limit-headers", action="store_false", default=None, dest="rate_limit_headers")
    parser.add_argument("--retry-after", choices=["seconds", "ms", "none"], default=None)
    parser.add_argument(
        "--rate-limit-header-mode",
        choices=["bucket", "per_minute", "truncated", "next_request", "azure"],
        default=None,
        help="what the rate-limit headers say (bucket: what is enforced)",
    )
    parser.add_argument("--settings-json", default=None, help="full SimulatorSettings JSON")
    args = parser.parse_args(argv)

    settings = SimulatorSettings()
    if args.settings_json:
        settings = SimulatorSettings.model_validate_json(args.settings_json)
    patch: dict[str, Any] = {}
    for flag, field in (
        ("latency_ms", "latency_ms"),
        ("jitter_ms", "latency_jitter_ms"),
        ("mode", "mode"),
        ("seed", "seed"),
        ("require_api_key", "require_api_key"),
        ("rate_limit_requests", "rate_limit_requests"),
        ("rate_limit_tokens", "rate_limit_tokens"),
        ("rate_limit_window_s", "rate_limit_window_s"),
        ("rate_limit_burst", "rate_limit_burst"),
        ("enforce_rate_limits", "rate_limit_enforce"),
        ("rate_limit_headers", "rate_limit_headers"),
        ("retry_after", "rate_limit_retry_after"),
        ("rate_limit_header_mode", "rate_limit_header_mode"),
    ):
        value = getattr(args, flag)
        if value is not None:
            patch[field] = value
    if args.faults_json is not None:
        patch["faults"] = json.loads(args.faults_json)
    return args.host, args.port, settings.merged(patch) if patch else settings


def main(argv: Sequence[str] | None = None) -> None:
    """Run the simulator until interrupted."""
    host, port, settings = parse_args(argv)
    serve(host, port, settings)


if __name__ == "__main__":
    main()
