"""The retry policy: exponential backoff with jitter, or exactly what the server asked for.

A 429 is back-pressure, not a failure: it never uses up ``max_retries``. The call goes back through
the provider's limiter (which waits out the server's ``Retry-After`` and paces to what the provider
allows) and gives up on rate limits only once the provider has answered nothing for
``max_rate_limited_s``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from providers.errors import ProviderError

# What is retried, and what is back-pressure, is the error kinds' to say (providers/errors.py).


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, ProviderError) and exc.retryable


def _rate_limited(exc: BaseException | None) -> bool:
    return isinstance(exc, ProviderError) and exc.rate_limited


class wait_retry_after_or_backoff(wait_base):
    """Honour ``Retry-After`` (capped) when the last error carried it; else exponential backoff + jitter.

    After a 429 there is no wait here: the limiter holds the call back as long as the provider needs.
    """

    def __init__(self, initial: float, maximum: float, max_retry_after: float) -> None:
        self._initial = initial
        self._maximum = maximum
        self._max_retry_after = max_retry_after

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        if _rate_limited(exc):
            return 0.0
        if isinstance(exc, ProviderError) and exc.retry_after_s is not None:
            return float(min(exc.retry_after_s, self._max_retry_after))
        exponential = self._initial * 2 ** (retry_state.attempt_number - 1)
        return float(min(self._maximum, exponential + random.uniform(0, self._initial)))


class stop_when_budget_spent(stop_base):
    """Stop after ``max_retries`` failed retries that were not rate limits, or when rate limits have
    held the provider without an answer for ``max_rate_limited_s`` (``last_progress`` is the monotonic
    time of the provider's latest answer)."""

    def __init__(self, max_retries: int, max_rate_limited_s: float, last_progress: Callable[[], float]) -> None:
        self._max_retries = max_retries
        self._max_rate_limited_s = max_rate_limited_s
        self._last_progress = last_progress
        self._failures = 0

    def __call__(self, retry_state: RetryCallState) -> bool:
        outcome = retry_state.outcome
        if _rate_limited(outcome.exception() if outcome is not None else None):
            return time.monotonic() - self._last_progress() >= self._max_rate_limited_s
        self._failures += 1
        return self._failures > self._max_retries


def make_retrying(
    max_retries: int,
    initial: float,
    maximum: float,
    max_retry_after: float,
    max_rate_limited_s: float = 900.0,
    last_progress: Callable[[], float] = time.monotonic,
) -> AsyncRetrying:
    """A tenacity controller for one call, re-raising the last error when it gives up."""
    return AsyncRetrying(
        stop=stop_when_budget_spent(max_retries, max_rate_limited_s, last_progress),
        retry=retry_if_exception(_is_retryable),
        wait=wait_retry_after_or_backoff(initial, maximum, max_retry_after),
        reraise=True,
    )
