"""Per-provider limits: adaptive concurrency, requests/minute and tokens/minute buckets, server pauses.

One :class:`ProviderLimiter` per provider per run, used from one event loop. The path through it is
a few comparisons when nothing is limiting; it waits only when a limit is reached.

- **Concurrency**: at most ``limit`` requests in flight. The limit starts at ``max_concurrency``,
  halves on a burst of 429s (at most once per second) and grows back by one after ``limit``
  consecutive successes (additive increase, multiplicative decrease).
- **Requests and tokens per minute**: token buckets refilled continuously. The request bucket holds
  ``burst`` requests, so over any window of T seconds at most ``burst + rpm * T / 60`` requests start.
  Tokens are estimated before a call (prompt characters / 4 + the output limit) and corrected with the
  usage the provider reports.
- **Server signals**: a ``Retry-After`` on a 429 pauses every new request of the provider until it has
  passed; ``x-ratelimit-remaining-requests: 0`` (or Anthropic's equivalent) pauses until the reset the
  server announced.
"""

from __future__ import annotations

import asyncio
import collections
import math
import time

MAX_SERVER_PAUSE_S = 120.0
RATE_LIMIT_HALVING_INTERVAL_S = 1.0


class TokenBucket:
    """A continuously refilled bucket; ``level`` may go negative after a correction (debt)."""

    def __init__(self, per_minute: float, capacity: float) -> None:
        self.rate = per_minute / 60.0
        self.capacity = capacity
        self.level = capacity
        self._stamp = time.monotonic()

    def refill(self, now: float) -> None:
        """Add what accrued since the last refill, up to the capacity."""
        self.level = min(self.capacity, self.level + (now - self._stamp) * self.rate)
        self._stamp = now

    def wait_for(self, amount: float) -> float:
        """Seconds until ``amount`` is available (0 if it is now)."""
        missing = min(amount, self.capacity) - self.level
        return 0.0 if missing <= 0 else missing / self.rate


class ProviderLimiter:
    """Concurrency, rate and pause control for one provider (single event loop, no locks needed)."""

    def __init__(
        self,
        max_concurrency: int,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        burst: int | None = None,
    ) -> None:
        self.max_concurrency = max_concurrency
        self.limit = max_concurrency
        self.in_flight = 0
        self.peak_in_flight = 0
        self.paused_until = 0.0
        self.pauses = 0
        self.throttled = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._successes = 0
        self._last_halving = 0.0
        self.requests = (
            TokenBucket(requests_per_minute, float(burst or max(1, math.ceil(requests_per_minute / 60))))
            if requests_per_minute
            else None
        )
        self.tokens = TokenBucket(tokens_per_minute, tokens_per_minute / 60.0) if tokens_per_minute else None

    # -- concurrency -------------------------------------------------------------------------
    async def _acquire_slot(self) -> None:
        if self.in_flight < self.limit and not self._waiters:
            self.in_flight += 1
        else:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(future)
            try:
                await future  # release() hands its slot over: in_flight already counts us
            except asyncio.CancelledError:
                if future.done() and not future.cancelled():
                    self._release_slot()
                else:
                    self._waiters.remove(future)
                raise
        if self.in_flight > self.peak_in_flight:
            self.peak_in_flight = self.in_flight

    def _release_slot(self) -> None:
        if self._waiters and self.in_flight <= self.limit:
            self._waiters.popleft().set_result(None)
        else:
            self.in_flight -= 1

    def _wake_waiters(self) -> None:
        while self._waiters and self.in_flight < self.limit:
            self.in_flight += 1
            self._waiters.popleft().set_result(None)

    # -- the call path -----------------------------------------------------------------------
    async def acquire(self, estimated_tokens: int) -> None:
        """Wait for a slot, for any server-requested pause to pass, and for rate budget."""
        await self._acquire_slot()
        try:
            while True:
                now = time.monotonic()
                wait = self.paused_until - now
                if wait <= 0 and (self.requests is not None or self.tokens is not None):
                    wait = self._take(now, estimated_tokens)
                if wait <= 0:
                    return
                await asyncio.sleep(wait)
        except BaseException:
            self._release_slot()
            raise

    def _take(self, now: float, estimated_tokens: int) -> float:
        wait = 0.0
        if self.requests is not None:
            self.requests.refill(now)
            wait = self.requests.wait_for(1)
        if self.tokens is not None:
            self.tokens.refill(now)
            wait = max(wait, self.tokens.wait_for(estimated_tokens))
        if wait > 0:
            return wait
        if self.requests is not None:
            self.requests.level -= 1
        if self.tokens is not None:
            self.tokens.level -= estimated_tokens
        return 0.0

    def release(self, estimated_tokens: int, actual_tokens: int | None, ok: bool) -> None:
        """Give the slot back; correct the token estimate; grow the concurrency limit on success."""
        if self.tokens is not None and actual_tokens is not None:
            self.tokens.level += estimated_tokens - actual_tokens
        if not ok:
            self._successes = 0
        elif self.limit < self.max_concurrency:
            self._successes += 1
            if self._successes >= self.limit:
                self._successes = 0
                self.limit += 1
                self._wake_waiters()
        self._release_slot()

    # -- server signals ----------------------------------------------------------------------
    def rate_limited(self, retry_after_s: float | None) -> None:
        """A 429 (or 529): pause for the server's Retry-After and halve the concurrency limit."""
        now = time.monotonic()
        self.throttled += 1
        if retry_after_s:
            self.pause(retry_after_s, now)
        if now - self._last_halving >= RATE_LIMIT_HALVING_INTERVAL_S and self.limit > 1:
            self.limit = max(1, self.limit // 2)
            self._successes = 0
            self._last_halving = now

    def pause(self, seconds: float, now: float | None = None) -> None:
        """Start no new request for ``seconds`` (capped); extends, never shortens, a running pause."""
        now = time.monotonic() if now is None else now
        until = now + min(seconds, MAX_SERVER_PAUSE_S)
        if until > self.paused_until:
            self.paused_until = until
            self.pauses += 1

    def server_remaining(self, remaining_requests: int | None, reset_s: float | None) -> None:
        """Rate-limit headers of a successful response: pause when the server says none are left."""
        if remaining_requests is not None and remaining_requests <= 0 and reset_s:
            self.pause(reset_s)
