"""Per-provider limits: adaptive concurrency, and a rate governor that learns the provider's allowance.

One :class:`ProviderLimiter` per provider per run, used from one event loop; its rate side is a
:class:`RateGovernor`, shared by every provider of a ``rate_limit_group`` (one key or one gateway
limit). The path through both is a few comparisons when nothing is limiting.

- **Concurrency**: at most ``limit`` requests in flight. A run starts gently (a few requests, not
  ``max_concurrency`` at once) and grows by one per answer (slow start) until the first 429; after
  that it halves on a burst of 429s (at most once per second) and grows by one after ``limit``
  consecutive answers (additive increase, multiplicative decrease).
- **Rate**: a request bucket and a token bucket, refilled continuously. Their rate and size are the
  lowest of what is known: the configured ``requests_per_minute`` / ``tokens_per_minute`` / ``burst``;
  the allowance the provider announces in its rate-limit headers (size ``limit``; refill rate measured
  as ``(limit - remaining) / reset``, at least ``limit`` per minute; both times ``rate_share``); and,
  for a server that announces nothing, a rate learned from its 429s (at a burst of 429s, 85% of the
  rate it accepted in the last 2 s, or since the first request if the run is younger; if it accepted
  none and gave no ``Retry-After``, half the rate tried; then 5% more per second of answers). Each
  answer's ``remaining`` (requests and tokens) sets the bucket's level, less what was sent after that
  request: the server's count is the truth, the refill rate only bridges the time between answers
  (with a configured limit it can only lower the level: the operator's budget holds).
- **Pauses**: a ``Retry-After`` pauses every new request until it has passed.
- **Waiting is measured**: :attr:`RateGovernor.wait_s` is the wall-clock time during which at least one
  call was held back by a rate limit or a pause.
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from collections.abc import Awaitable, Callable
from typing import NamedTuple

from providers.ratelimit_headers import Allowance, RateInfo

MAX_SERVER_PAUSE_S = 120.0
RATE_LIMIT_HALVING_INTERVAL_S = 1.0
GENTLE_START = 4  # requests in flight before the first answer tells how the provider copes
_CUT_INTERVAL_S = 1.0  # a burst of 429s cuts the learned rate once
_CUT_FACTOR = 0.85
_GROWTH_PER_S = 0.05  # of the learned rate, per second of answers without a 429
_MIN_RATE = 0.05  # requests per second: one every 20 s at the slowest
_MAX_GROWTH_S = 5.0  # one answer after a long wait grows the rate by at most this many seconds' worth
_WINDOW_S = 2.0  # the recent past that "accepted" and "tried" rates are measured over
_DECAY = 0.8  # weight of earlier header samples in the refill-rate estimate
# While 429s arrive in spite of the headers, the rate learned from them is cut less and grows back
# more slowly than without headers: the headers' remaining still paces most requests.
_HEADER_CUT_FACTOR = 0.9
_HEADER_GROWTH_PER_S = 0.02
_PACE_S = 1.0  # a header-learned allowance is spent evenly: at most this many seconds' refill at once
_PER_MINUTE_S = 10.0  # an allowance holding at least this many seconds of its refill is read as per minute
_PACE_RATE = 0.97  # of the learned rate: the server's own bucket keeps some slack against arrival jitter


class Ticket(NamedTuple):
    """Where a request stands in its governor's stream: how much was sent before it, and with it."""

    requests_before: int
    tokens_through: float


class TokenBucket:
    """A continuously refilled bucket; ``level`` may go negative after a correction (debt)."""

    def __init__(self, per_minute: float, capacity: float, now: float) -> None:
        self.rate = per_minute / 60.0
        self.capacity = capacity
        self.level = capacity
        self._stamp = now

    def refill(self, now: float) -> None:
        """Add what accrued since the last refill, up to the capacity."""
        self.level = min(self.capacity, self.level + (now - self._stamp) * self.rate)
        self._stamp = now

    def wait_for(self, amount: float) -> float:
        """Seconds until ``amount`` is available (0 if it is now)."""
        missing = min(amount, self.capacity) - self.level
        return 0.0 if missing <= 0 else missing / self.rate

    def reshape(self, per_second: float, capacity: float, now: float) -> None:
        """Change the refill rate and the size (the level never exceeds the new size)."""
        self.refill(now)
        self.rate, self.capacity = per_second, capacity
        self.level = min(self.level, capacity)


class _Learned:
    """One allowance learned from headers: its size and its refill rate (a decayed ratio of sums)."""

    def __init__(self) -> None:
        self.limit: float | None = None
        self._used = 0.0
        self._seconds = 0.0
        self._sized = True  # False while the size is only inferred (Azure: remaining without a limit)

    def add(self, allowance: Allowance) -> None:
        if allowance.limit_known:
            self.limit, self._sized = allowance.limit, True
        elif not self._sized or self.limit is None:
            self.limit, self._sized = max(self.limit or 0.0, allowance.limit), False
        used = allowance.limit - allowance.remaining
        reset_s = allowance.reset_s
        if reset_s is not None and used >= 1 and allowance.limit_known:
            # Read defensively. A whole-second RFC 3339 reset is up to a second late (rounded up) or
            # early (cut): half a second off it is the middle (exact on average for rounding up), and
            # never under half a second (429s correct a rate that comes out too high). A bucket
            # refills at most its size per second: a shorter reset is a "next request" reset (the time
            # until one more request fits) or a cut whole second, not a refill rate, and counts as the
            # fastest plausible.
            if allowance.coarse:
                reset_s = max(0.5, reset_s - 0.5)
            self._used = _DECAY * self._used + used
            self._seconds = _DECAY * self._seconds + max(reset_s, used / allowance.limit)

    @property
    def per_second(self) -> float | None:
        """The refill rate: measured from ``(limit - remaining) / reset``, between ``limit`` per minute and
        ``limit`` per second.

        Both vendors document their limits per minute and refill continuously (a bucket's reset is
        the time until it is full again). A server counting in fixed windows announces the window's
        end instead, which would make the measured rate far too low: the per-minute floor guards it.
        A size without resets (Azure) is taken as refilling each second; 429s correct it.
        """
        if self.limit is None:
            return None
        if not self._sized and self._seconds <= 0:
            return self.limit
        measured = self._used / self._seconds if self._seconds > 0 else 0.0
        if measured * _PER_MINUTE_S <= self.limit:
            # A bucket holding this many seconds of its refill or more is a per-minute limit: it refills
            # at limit/60 per second, no slower (a fixed window's reset) and no faster (coarse resets).
            return self.limit / 60.0
        return min(self.limit, measured)


class RateGovernor:
    """The rate side of one provider, or of a group of providers sharing one allowance."""

    def __init__(
        self,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        burst: int | None = None,
        share: float = 1.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.share = share
        self._clock = clock  # injectable, with ``sleep``, so tests can run the pacing on a simulated clock
        self._sleep = sleep
        self._configured: dict[str, tuple[float, float] | None] = {"requests": None, "tokens": None}
        self._learned = {"requests": _Learned(), "tokens": _Learned()}
        self.headers_seen = False
        self.adaptive_rate: float | None = None  # requests/s learned from 429s, for servers without headers
        self._last_cut = -math.inf
        self._last_growth = clock()
        self._accepted: collections.deque[float] = collections.deque()  # answers, while no headers are seen
        self._sent: collections.deque[float] = collections.deque()  # requests started, likewise
        self._first_sent: float | None = None
        self.requests: TokenBucket | None = None
        self.tokens: TokenBucket | None = None
        # Spends a header-learned request allowance evenly: one second's refill at most at once, never
        # corrected upward by the headers' remaining (a server may announce a minute's allowance while
        # enforcing it per second). None when the request bucket is no larger than that anyway.
        self._pacer: TokenBucket | None = None
        self.paused_until = 0.0
        self.pauses = 0
        self.throttled = 0
        self.started = 0  # requests let through so far
        self.tokens_started = 0.0  # their estimated tokens
        self.last_progress = clock()
        self.wait_s = 0.0
        self._waiting = 0
        self._waiting_since = 0.0
        self._head = False  # a call is first in line, waiting for budget (:meth:`_wait_in_line`)
        self._line: collections.deque[asyncio.Future[None]] = collections.deque()  # the calls behind it
        self.tighten(requests_per_minute, tokens_per_minute, burst)

    def now(self) -> float:
        """The governor's clock (``time.monotonic`` unless a test gave it another)."""
        return self._clock()

    def tighten(self, requests_per_minute: float | None, tokens_per_minute: float | None, burst: int | None) -> None:
        """Apply a configured limit (a group takes the lowest of its members')."""
        candidates = {
            "requests": (requests_per_minute / 60.0, float(burst or max(1, math.ceil(requests_per_minute / 60))))
            if requests_per_minute
            else None,
            "tokens": (tokens_per_minute / 60.0, tokens_per_minute / 60.0) if tokens_per_minute else None,
        }
        for name, new in candidates.items():
            self._configured[name] = _lowest(self._configured[name], new)
        self._reshape(self._clock())

    # -- the shape of the buckets ---------------------------------------------------------------
    def _limits(self, name: str) -> tuple[float, float] | None:
        """(per second, size) of one bucket: the lowest of the configured, announced and learned limits."""
        configured = self._configured[name]
        known = [configured]
        learned = self._learned[name]
        rate = learned.per_second
        if learned.limit is not None and rate is not None:
            # Under a configured limit the configured rate refills the bucket and the server's
            # remaining only lowers it: a refill rate measured from coarse resets (Anthropic's whole
            # seconds) must not drag a correct configured rate down.
            known.append((configured[0] if configured else rate * self.share, max(1.0, learned.limit * self.share)))
        if name == "requests" and self.adaptive_rate is not None:
            known.append((self.adaptive_rate, max(1.0, self.adaptive_rate / 4)))
        found = [k for k in known if k is not None]
        return None if not found else (min(k[0] for k in found), min(k[1] for k in found))

    def _reshape(self, now: float) -> None:
        self._reshape_buckets(now)
        requests = self.requests
        pace = None
        limit = self._learned["requests"].limit
        if requests is not None and self._configured["requests"] is None and limit:
            # Only a per-minute allowance: a smaller bucket is spent as announced.
            size = max(1.0, requests.rate * _PACE_S)
            pace = size if size * _PER_MINUTE_S <= limit * self.share and limit > 60.0 else None
        if pace is None or requests is None:
            self._pacer = None
        elif self._pacer is None:
            self._pacer = TokenBucket(requests.rate * _PACE_RATE * 60.0, pace, now)
            self._pacer.level = pace - self.started  # what was sent before the allowance was known counts
        else:
            self._pacer.reshape(requests.rate * _PACE_RATE, pace, now)

    def _reshape_buckets(self, now: float) -> None:
        for name in ("requests", "tokens"):
            shape = self._limits(name)
            bucket: TokenBucket | None = getattr(self, name)
            if shape is None:
                setattr(self, name, None)
            elif bucket is None:
                bucket = TokenBucket(shape[0] * 60.0, shape[1], now)
                setattr(self, name, bucket)
            else:
                bucket.reshape(shape[0], shape[1], now)

    # -- the call path ----------------------------------------------------------------------------
    async def wait_turn(self, estimated_tokens: int) -> Ticket:
        """Wait for any pause to pass and for rate budget; return the request's place in the stream."""
        now = self._clock()
        if self._head or self._wait(now, estimated_tokens) > 0:
            self._hold(now)
            try:
                await self._wait_in_line(estimated_tokens)
            finally:
                self._unhold()
        ticket = Ticket(self.started, self.tokens_started + estimated_tokens)
        self.started += 1
        self.tokens_started = ticket.tokens_through
        _remember(self._sent, self._clock())
        if self._first_sent is None:
            self._first_sent = self._sent[-1]
        return ticket

    async def _wait_in_line(self, estimated_tokens: int) -> None:
        """Wait behind the calls held back before this one, then until the budget lets this one through.

        Only the first call in line watches the clock; the others wait for their turn without waking: many
        calls sleeping on the same refill would all wake for the one request it lets through.
        """
        if self._head:
            turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._line.append(turn)
            try:
                await turn  # _next_in_line() made this call the first in line
            except BaseException:
                if turn.done() and not turn.cancelled():
                    self._next_in_line()
                else:
                    self._line.remove(turn)
                raise
        else:
            self._head = True
        try:
            wait = self._wait(self._clock(), estimated_tokens)
            while wait > 0:
                await self._sleep(wait)
                wait = self._wait(self._clock(), estimated_tokens)
        finally:
            self._next_in_line()

    def _next_in_line(self) -> None:
        while self._line:
            turn = self._line.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        self._head = False

    def _wait(self, now: float, estimated_tokens: int) -> float:
        wait = self.paused_until - now
        if wait > 0:
            return wait
        requests, tokens = self.requests, self.tokens
        if requests is None and tokens is None:
            return 0.0
        pacer = self._pacer
        if requests is not None:
            requests.refill(now)
            wait = requests.wait_for(1)
            if pacer is not None:
                pacer.refill(now)
                wait = max(wait, pacer.wait_for(1))
        if tokens is not None:
            tokens.refill(now)
            wait = max(wait, tokens.wait_for(estimated_tokens))
        if wait > 0:
            return wait
        if pacer is not None:
            pacer.level -= 1
        if requests is not None:
            requests.level -= 1
        if tokens is not None:
            tokens.level -= estimated_tokens
        return 0.0

    def _hold(self, now: float) -> None:
        if self._waiting == 0:
            self._waiting_since = now
        self._waiting += 1

    def _unhold(self) -> None:
        self._waiting -= 1
        if self._waiting == 0:
            self.wait_s += self._clock() - self._waiting_since

    def correct_tokens(self, estimated_tokens: int, actual_tokens: int | None) -> None:
        """Replace a call's token estimate with the usage the provider reported."""
        if self.tokens is not None and actual_tokens is not None:
            self.tokens.level += estimated_tokens - actual_tokens

    # -- what the provider says -------------------------------------------------------------------
    def answered(self, info: RateInfo | None, ticket: Ticket | None) -> None:
        """An answer: progress, headers to learn from, and (without headers) room to grow the learned rate."""
        now = self._clock()
        self.last_progress = now
        _remember(self._accepted, now)
        if self.adaptive_rate is not None:
            growth = _HEADER_GROWTH_PER_S if self.headers_seen else _GROWTH_PER_S
            self.adaptive_rate += self.adaptive_rate * growth * min(_MAX_GROWTH_S, now - self._last_growth)
            self._last_growth = now
            self._reshape(now)
        if info is not None:
            self._learn(info, ticket, now)

    def refused(self, retry_after_s: float | None, info: RateInfo | None) -> None:
        """A 429: pause for the server's Retry-After, learn from its headers, and cut the rate learned from 429s.

        429s are the truth and headers are hints: a 429 means more was sent than the server accepts,
        whatever its headers said, so the rate is cut from what it actually accepted (see :meth:`_cut`),
        with or without headers; the headers then only shape the rate within that.
        """
        now = self._clock()
        self.throttled += 1
        if retry_after_s:
            self.pause(retry_after_s, now)
        if info is not None:
            self._learn(info, None, now)
        # A configured request limit is the operator's word on the server's rate: no guessing from 429s.
        if self._configured["requests"] is None and now - self._last_cut >= _CUT_INTERVAL_S:
            self._last_cut = now
            self._cut(now, guided=bool(retry_after_s))
        for bucket in (self.requests, self._pacer):
            if bucket is not None:
                bucket.refill(now)
                bucket.level = min(bucket.level, 0.0)

    def _cut(self, now: float, guided: bool) -> None:
        """Pace to 85% of the rate the server accepted lately (90% when it sends headers, whose remaining
        still paces most requests).

        If it accepted nothing lately, a server that said when to come back (``guided``) is taken at its
        word; one that said nothing gets half the rate tried (an exponential backoff of the rate).
        """
        # Early in a run the window reaches back only to the first request.
        span = min(_WINDOW_S, now - self._first_sent) if self._first_sent is not None else _WINDOW_S
        accepted = _recent_rate(self._accepted, now, span)
        tried = self.adaptive_rate if self.adaptive_rate is not None else _recent_rate(self._sent, now, span)
        if accepted > 0:
            rate = (_HEADER_CUT_FACTOR if self.headers_seen else _CUT_FACTOR) * accepted
        elif tried > 0 and not guided:
            rate = tried / 2
        else:
            return  # nothing sent lately to measure against: the Retry-After (if any) is all there is
        self.adaptive_rate = max(_MIN_RATE, rate)
        self._last_growth = now
        self._reshape(now)

    def _learn(self, info: RateInfo, ticket: Ticket | None, now: float) -> None:
        if not self.headers_seen:
            # The first headers replace a rate guessed from 429s before them; later 429s cut again.
            self.headers_seen = True
            self.adaptive_rate = None
        for name, allowance in (("requests", info.requests), ("tokens", info.tokens)):
            if allowance is not None:
                self._learned[name].add(allowance)
        self._reshape(now)
        if ticket is None:
            return
        # The server's remaining is the truth when it answered: it counted this request, not the ones
        # sent after it. The buckets take its word, up or down, less what was sent since.
        # A configured limit is the operator's own budget: the server's count may lower it, never raise it.
        for name, bucket, allowance, sent_since in (
            ("requests", self.requests, info.requests, self.started - ticket.requests_before - 1),
            ("tokens", self.tokens, info.tokens, self.tokens_started - ticket.tokens_through),
        ):
            if bucket is not None and allowance is not None:
                bucket.refill(now)
                level = min(bucket.capacity, allowance.remaining * self.share - sent_since)
                bucket.level = level if self._configured[name] is None else min(bucket.level, level)

    def pause(self, seconds: float, now: float | None = None) -> None:
        """Start no new request for ``seconds`` (capped); extends, never shortens, a running pause."""
        now = self._clock() if now is None else now
        until = now + min(seconds, MAX_SERVER_PAUSE_S)
        if until > self.paused_until:
            self.paused_until = until
            self.pauses += 1

    def learned_per_minute(self) -> dict[str, float | None]:
        """The allowance in force per minute (requests, tokens), for the run summary."""
        shapes = {name: self._limits(name) for name in ("requests", "tokens")}
        return {name: None if shape is None else round(shape[0] * 60.0, 1) for name, shape in shapes.items()}


def _recent_rate(times: collections.deque[float], now: float, span: float) -> float:
    """Events per second over the last ``span`` seconds (at least a quarter of a second)."""
    span = max(span, _WINDOW_S / 8)
    return sum(1 for t in times if t >= now - span) / span


def _remember(times: collections.deque[float], now: float) -> None:
    """Append ``now`` and forget what is older than the measuring window."""
    times.append(now)
    while times[0] < now - _WINDOW_S:
        times.popleft()


def _lowest(a: tuple[float, float] | None, b: tuple[float, float] | None) -> tuple[float, float] | None:
    if a is None or b is None:
        return a or b
    return (min(a[0], b[0]), min(a[1], b[1]))


class ProviderLimiter:
    """Concurrency of one provider, and its rate governor (its own, or its group's)."""

    def __init__(
        self,
        max_concurrency: int,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        burst: int | None = None,
        *,
        governor: RateGovernor | None = None,
        start_concurrency: int | None = None,
    ) -> None:
        self.max_concurrency = max_concurrency
        self.limit = min(max_concurrency, start_concurrency or max_concurrency)
        self.in_flight = 0
        self.peak_in_flight = 0
        self.governor = governor or RateGovernor(requests_per_minute, tokens_per_minute, burst)
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._successes = 0
        self._last_halving = 0.0
        self._congested = False  # slow start until the first 429

    # The governor's counters, for tests and the summary.
    @property
    def paused_until(self) -> float:
        return self.governor.paused_until

    @property
    def pauses(self) -> int:
        return self.governor.pauses

    @property
    def throttled(self) -> int:
        return self.governor.throttled

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
    async def acquire(self, estimated_tokens: int) -> Ticket:
        """Wait for a slot, for any server-requested pause to pass, and for rate budget.

        Returns the request's ticket, to hand back with the answer's rate-limit headers.
        """
        await self._acquire_slot()
        try:
            return await self.governor.wait_turn(estimated_tokens)
        except BaseException:
            self._release_slot()
            raise

    def release(self, estimated_tokens: int, actual_tokens: int | None, ok: bool) -> None:
        """Give the slot back; correct the token estimate; grow the concurrency limit on success."""
        self.governor.correct_tokens(estimated_tokens, actual_tokens)
        if not ok:
            self._successes = 0
        elif self.limit < self.max_concurrency:
            self._successes += 1
            if not self._congested or self._successes >= self.limit:
                self._successes = 0
                self.limit += 1
                self._wake_waiters()
        self._release_slot()

    # -- server signals ----------------------------------------------------------------------
    def answered(self, info: RateInfo | None, ticket: Ticket | None) -> None:
        """An answer arrived, with the rate-limit headers it carried (if any)."""
        self.governor.answered(info, ticket)

    def rate_limited(self, retry_after_s: float | None, info: RateInfo | None = None) -> None:
        """A 429 (or 529): pause for the server's Retry-After, learn, and halve the concurrency limit."""
        now = self.governor.now()
        self._congested = True
        self.governor.refused(retry_after_s, info)
        if now - self._last_halving >= RATE_LIMIT_HALVING_INTERVAL_S and self.limit > 1:
            self.limit = max(1, self.limit // 2)
            self._successes = 0
            self._last_halving = now

    def pause(self, seconds: float, now: float | None = None) -> None:
        """Start no new request for ``seconds`` (capped); extends, never shortens, a running pause."""
        self.governor.pause(seconds, now)
