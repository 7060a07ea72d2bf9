"""Advertised (not enforced) per-model rate-limit headers for both APIs (one-minute windows by default)."""

from __future__ import annotations

import math
import time
from datetime import datetime, timedelta, timezone

WINDOW_S = 60.0  # default window length


def _openai_duration(seconds: float) -> str:
    """Format a reset delay like OpenAI does: ``"20ms"``, ``"8.64s"``, ``"1m30s"``."""
    if seconds < 1.0:
        return f"{max(0, int(seconds * 1000))}ms"
    if seconds < 60.0:
        return f"{seconds:.2f}s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest}s"


class RateLimitWindows:
    """Counts requests and tokens per model in fixed windows of ``window_s`` seconds (default a minute)."""

    def __init__(self, request_limit: int, token_limit: int, window_s: float = WINDOW_S) -> None:
        self.request_limit = request_limit
        self.token_limit = token_limit
        self.window_s = window_s
        self._windows: dict[str, list[float]] = {}  # model -> [window_start, requests, tokens]
        self._rfc3339_resets: dict[str, str] = {}  # model -> formatted end of its current window

    def clear(self) -> None:
        """Forget all windows."""
        self._windows.clear()
        self._rfc3339_resets.clear()

    def _consume(self, model: str, tokens: int) -> tuple[int, int, float]:
        now = time.monotonic()
        window = self._windows.get(model)
        if window is None or now - window[0] >= self.window_s:
            window = self._windows[model] = [now, 0.0, 0.0]
            self._rfc3339_resets.pop(model, None)
        window[1] += 1
        window[2] += tokens
        remaining_requests = max(0, self.request_limit - int(window[1]))
        remaining_tokens = max(0, self.token_limit - int(window[2]))
        return remaining_requests, remaining_tokens, max(0.0, window[0] + self.window_s - now)

    def openai_headers(self, model: str, tokens: int) -> dict[str, str]:
        """``x-ratelimit-*`` headers after counting one request of ``tokens`` tokens."""
        requests_left, tokens_left, reset_s = self._consume(model, tokens)
        reset = _openai_duration(reset_s)
        return {
            "x-ratelimit-limit-requests": str(self.request_limit),
            "x-ratelimit-remaining-requests": str(requests_left),
            "x-ratelimit-reset-requests": reset,
            "x-ratelimit-limit-tokens": str(self.token_limit),
            "x-ratelimit-remaining-tokens": str(tokens_left),
            "x-ratelimit-reset-tokens": reset,
        }

    def anthropic_headers(self, model: str, tokens: int) -> dict[str, str]:
        """``anthropic-ratelimit-*`` headers (reset as RFC 3339) after counting one request."""
        requests_left, tokens_left, reset_s = self._consume(model, tokens)
        reset = self._rfc3339_resets.get(model)
        if reset is None:  # computed once per window: the window's end does not move
            reset_at = datetime.now(timezone.utc) + timedelta(seconds=math.ceil(reset_s))
            reset = self._rfc3339_resets[model] = reset_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        return {
            "anthropic-ratelimit-requests-limit": str(self.request_limit),
            "anthropic-ratelimit-requests-remaining": str(requests_left),
            "anthropic-ratelimit-requests-reset": reset,
            "anthropic-ratelimit-tokens-limit": str(self.token_limit),
            "anthropic-ratelimit-tokens-remaining": str(tokens_left),
            "anthropic-ratelimit-tokens-reset": reset,
        }
