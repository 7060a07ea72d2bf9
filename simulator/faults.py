"""Fault injection: choosing a fault for a request and rendering errors in each API's shape."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence

from simulator.settings import ApiName, FaultRule, KeyEcho

# (OpenAI error type, OpenAI error code, Anthropic error type, message) per HTTP status fault.
_ERRORS: dict[str, tuple[str, str | None, str, str]] = {
    "400": ("invalid_request_error", None, "invalid_request_error", "Invalid request (simulated)."),
    "401": (
        "invalid_request_error",
        "invalid_api_key",
        "authentication_error",
        "Incorrect or missing API key (simulated).",
    ),
    "429": (
        "requests",
        "rate_limit_exceeded",
        "rate_limit_error",
        "Rate limit reached (simulated). Please try again later.",
    ),
    "500": ("server_error", None, "api_error", "Internal server error (simulated)."),
    "503": ("server_error", None, "overloaded_error", "Service unavailable (simulated)."),
    "529": ("server_error", None, "overloaded_error", "Overloaded (simulated)."),
}

MALFORMED_BODY: bytes = b'{"id": "sim-malformed", "choices": [{"message": {"content": "trunc'


class FaultEngine:
    """Selects the fault (if any) for each request from an ordered list of rules.

    Keeps per-rule application counters (for ``times``) and a seeded RNG (for ``probability``).
    Not thread-safe: use it from the server's event loop only.
    """

    def __init__(self, rules: Sequence[FaultRule], seed: int) -> None:
        self._rules: list[FaultRule] = list(rules)
        self._used: list[int] = [0] * len(self._rules)
        self._seed = seed
        self._rng = random.Random(seed)

    def reset(self) -> None:
        """Clear the per-rule counters and re-seed the RNG."""
        self._used = [0] * len(self._rules)
        self._rng = random.Random(self._seed)

    def select(self, api: ApiName, model: str, prompt_text: str) -> FaultRule | None:
        """Return the first matching, non-exhausted rule that fires for this request, else None."""
        if not self._rules:
            return None
        for index, rule in enumerate(self._rules):
            if rule.api is not None and rule.api != api:
                continue
            if rule.model is not None and rule.model != model:
                continue
            if rule.prompt_contains is not None and rule.prompt_contains not in prompt_text:
                continue
            if rule.times is not None and self._used[index] >= rule.times:
                continue
            if rule.probability is not None and self._rng.random() >= rule.probability:
                continue
            self._used[index] += 1
            return rule
        return None


def error_body(api: ApiName, kind: str, message: str | None = None) -> bytes:
    """JSON error body for HTTP status fault ``kind`` (e.g. "429") in ``api``'s real shape."""
    openai_type, openai_code, anthropic_type, default_message = _ERRORS[kind]
    text = message or default_message
    if api == "openai":
        payload: dict[str, object] = {
            "error": {"message": text, "type": openai_type, "param": None, "code": openai_code}
        }
    else:
        payload = {"type": "error", "error": {"type": anthropic_type, "message": text}}
    return json.dumps(payload).encode()


def retry_after_headers(rule: FaultRule) -> dict[str, str]:
    """``Retry-After`` (integer-ceil seconds) and ``retry-after-ms`` headers for a rule, if set."""
    if rule.retry_after_s is None:
        return {}
    return {
        "Retry-After": str(math.ceil(rule.retry_after_s)),
        "retry-after-ms": str(round(rule.retry_after_s * 1000)),
    }


def echoed_key_message(api: ApiName, key: str, echo: KeyEcho, chars: int) -> str:
    """An authentication error message quoting ``key``, whole or truncated the way real services do.

    OpenAI's own: "Incorrect API key provided: sk-proj-****abcd. ..."; gateways echo more, e.g.
    a key's first 12 characters.
    """
    masked = "*" * max(0, len(key) - chars)
    if echo == "full":
        shown = key
    elif echo == "prefix":
        shown = key[:chars] + masked
    else:
        shown = masked + key[-chars:]
    if api == "openai":
        return (
            f"Incorrect API key provided: {shown}. "
            "You can find your API key at https://platform.openai.com/account/api-keys."
        )
    return f"invalid x-api-key: {shown}"
