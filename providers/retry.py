"""The retry policy: exponential backoff with jitter, or exactly what the server asked for."""

from __future__ import annotations

import random

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_base

from providers.errors import ProviderError


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, ProviderError) and exc.retryable


class wait_retry_after_or_backoff(wait_base):
    """Honour ``Retry-After`` (capped) when the last error carried it; else exponential backoff + jitter."""

    def __init__(self, initial: float, maximum: float, max_retry_after: float) -> None:
        self._initial = initial
        self._maximum = maximum
        self._max_retry_after = max_retry_after

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, ProviderError) and exc.retry_after_s is not None:
            return min(exc.retry_after_s, self._max_retry_after)
        exponential = self._initial * 2 ** (retry_state.attempt_number - 1)
        return min(self._maximum, exponential + random.uniform(0, self._initial))


def make_retrying(max_retries: int, initial: float, maximum: float, max_retry_after: float) -> AsyncRetrying:
    """A tenacity controller: ``max_retries`` retries after the first attempt, re-raising the last error."""
    return AsyncRetrying(
        stop=stop_after_attempt(max_retries + 1),
        retry=retry_if_exception(_is_retryable),
        wait=wait_retry_after_or_backoff(initial, maximum, max_retry_after),
        reraise=True,
    )
