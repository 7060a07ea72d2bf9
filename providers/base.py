"""What every provider kind shares: limits, retries, the breaker, timing, and errors as results."""

from __future__ import annotations

import abc
import time
from collections.abc import Callable
from typing import Any, ClassVar

from pydantic import SecretStr

from common.clock import utc_now
from common.secrets import scrub
from providers.breaker import Breaker
from providers.budget import Account, Hold
from providers.config import ProviderConfig
from providers.costs import charge, price_text
from providers.errors import InternalError, ProviderError
from providers.http import JsonExchange
from providers.images import image_tokens
from providers.kinds import Kind
from providers.limits import GENTLE_START, ProviderLimiter, RateGovernor, Ticket
from providers.result import BUDGET, INTERRUPTED, SKIPPED, Answer, CallResult, answered, internal_failure
from providers.retry import make_retrying

CHARS_PER_TOKEN = 4
"""The token estimate before a call (the limiter's, ``rlhf plan``'s): characters / 4."""


def prompt_chars(messages: list[dict[str, Any]], system: str | None) -> int:
    """The characters of a request's prompt: its messages' contents and the system prompt sent."""
    return sum(len(m["content"]) for m in messages) + len(system or "")


def tokens_for_chars(chars: float) -> float:
    """The estimated tokens of ``chars`` characters of prompt (:data:`CHARS_PER_TOKEN` to a token)."""
    return chars / CHARS_PER_TOKEN


def system_text(record_system: str | None, provider_system: str | None) -> str | None:
    """The system prompt sent: the provider's own (if any), then the record's, separated by a blank line."""
    parts = [p for p in (provider_system, record_system) if p]
    return "\n\n".join(parts) if parts else None


def _never() -> bool:
    return False


def governor_for(config: ProviderConfig) -> RateGovernor:
    """A provider's own rate governor: its configured limits, and its share of what it learns."""
    return RateGovernor(config.requests_per_minute, config.tokens_per_minute, config.burst, config.rate_share)


class _Tries:
    """A call's attempts so far, and when its latest exchange started."""

    __slots__ = ("count", "started")

    def __init__(self, started: float) -> None:
        self.count = 0
        self.started = started


class _Stop(Exception):
    """Raised inside the retry loop when the breaker opened or the run is stopping."""

    def __init__(self, error_type: str, reason: str) -> None:
        super().__init__(reason)
        self.error_type = error_type
        self.reason = reason


class Provider(abc.ABC):
    """One configured endpoint for one run. ``call`` never raises for a provider failure.

    A subclass speaks one kind's wire format and names that kind (``providers.kinds``) in ``kind``.
    """

    kind: ClassVar[type[Kind]]

    def __init__(
        self,
        config: ProviderConfig,
        api_key: SecretStr,
        should_stop: Callable[[], bool] = _never,
        governor: RateGovernor | None = None,
    ) -> None:
        self.config = config
        self._secrets = (api_key.get_secret_value(),)
        self._params = config.wire_params()
        self._output_tokens = config.estimated_output_tokens()
        self._should_stop = should_stop
        self.limiter = ProviderLimiter(
            config.max_concurrency,
            governor=governor or governor_for(config),
            start_concurrency=GENTLE_START,
        )
        self.breaker = Breaker(config.breaker_threshold)
        self._price = config.effective_price
        self._price_text = price_text(config)
        self.account: Account | None = None
        """The budget this provider's requests count against (``providers.budget``; set by the run's pool)."""
        self._exchange = self._open_exchange(config, api_key)

    @abc.abstractmethod
    def _open_exchange(self, config: ProviderConfig, api_key: SecretStr) -> JsonExchange:
        """The kind's HTTP exchange for ``http_client``: its default client stack or the lean aiohttp one."""

    @abc.abstractmethod
    async def _send(self, messages: list[dict[str, Any]], system: str | None) -> Answer:
        """One HTTP exchange; raise :class:`ProviderError` on any failure."""

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._exchange.aclose()

    def estimate_tokens(self, messages: list[dict[str, Any]], system: str | None) -> int:
        """Tokens a request may use: the prompt's estimated tokens (rounded down, plus one) plus the output limit."""
        images = image_tokens(messages)
        return int(tokens_for_chars(prompt_chars(messages, system))) + 1 + images + self._output_tokens

    async def call(self, messages: list[dict[str, Any]], system: str | None) -> CallResult:
        """Send one prompt within the provider's limits, with retries; return the answer or final error.

        Under a budget (:attr:`account`) the request's worst case is reserved just before it is first sent (not
        while it waits for the rate limiter) and released to its actual cost when it ends; a request that does
        not fit is not sent (error type ``budget``)."""
        account = self.account
        if account is None:
            return await self._call(messages, system, None)
        holds: list[Hold] = []
        result = await self._call(messages, system, holds)
        if holds:
            account.settle(holds[0], result)
        return result

    async def _call(self, messages: list[dict[str, Any]], system: str | None, holds: list[Hold] | None) -> CallResult:
        tries = _Tries(time.perf_counter())
        estimate = self.estimate_tokens(messages, system)
        try:
            try:
                # The first attempt runs outside the retry loop: most calls need no other, and building
                # tenacity's controller costs more than the rest of the wrapper. A failure hands over to
                # it as that loop's first attempt, so the policy (what is retried, waits, when to stop) is
                # tenacity's exactly as if the loop had made it.
                answer, ticket = await self._attempt(messages, system, holds, estimate, tries)
            except ProviderError as first:
                if not first.retryable:
                    raise
                answer, ticket = await self._retry(messages, system, holds, estimate, tries, first)
        except _Stop as stop:
            return CallResult(
                ok=False,
                attempts=tries.count,
                error_type=stop.error_type,
                error=stop.reason,
                created_at=utc_now("milliseconds"),
            )
        except ProviderError as exc:
            error = scrub(exc.message, self._secrets)
            self.breaker.record(False, exc.label, exc.status_code, error)
            return CallResult(
                ok=False,
                latency_ms=round((time.perf_counter() - tries.started) * 1000, 1),
                attempts=tries.count,
                error_type=exc.label,
                error=error,
                status_code=exc.status_code,
                created_at=utc_now("milliseconds"),
            )
        except Exception as exc:  # noqa: BLE001 - the call's boundary: a failure here is stored, never lost
            self.breaker.record(False, InternalError.error_type, None, scrub(str(exc), self._secrets))
            return internal_failure(exc, tries.count, secrets=self._secrets)
        self.breaker.record(True, None, None, None)
        self.limiter.answered(answer.rate, ticket)
        latency_ms = round((time.perf_counter() - tries.started) * 1000, 1)
        result = answered(answer, tries.count, latency_ms, utc_now("milliseconds"))
        return charge(result, self._price, self._price_text)

    async def _retry(
        self,
        messages: list[dict[str, Any]],
        system: str | None,
        holds: list[Hold] | None,
        estimate: int,
        tries: _Tries,
        first: ProviderError,
    ) -> tuple[Answer, Ticket]:
        """The attempts after a retryable ``first`` failure, under the retry policy (``providers.retry``)."""
        governor = self.limiter.governor
        failed: ProviderError | None = first
        async for attempt in make_retrying(
            self.config.max_retries,
            self.config.backoff_initial_s,
            self.config.backoff_max_s,
            self.config.max_retry_after_s,
            self.config.max_rate_limited_s,
            lambda: governor.last_progress,
        ):
            with attempt:
                if failed is not None:  # the loop's first attempt is the one already made
                    error, failed = failed, None
                    raise error
                return await self._attempt(messages, system, holds, estimate, tries)
        raise AssertionError("unreachable: the retry loop returns or re-raises")  # pragma: no cover

    async def _attempt(
        self, messages: list[dict[str, Any]], system: str | None, holds: list[Hold] | None, estimate: int, tries: _Tries
    ) -> tuple[Answer, Ticket]:
        """One attempt: a slot and rate budget, the budget's reservation, one exchange. Raises its failure."""
        self._check_stop()
        ticket = await self.limiter.acquire(estimate)
        tries.count += 1
        ok = False
        used: int | None = None
        try:
            self._check_stop()
            if holds is not None and not holds:
                await self._reserve(holds, estimate)
            tries.started = time.perf_counter()
            answer = await self._send(messages, system)
            ok = True
            used = (answer.input_tokens or 0) + (answer.output_tokens or 0) or None
        except ProviderError as exc:
            if exc.slow_down:
                wait = exc.retry_after_s
                self.limiter.rate_limited(None if wait is None else min(wait, self.config.max_retry_after_s), exc.rate)
            raise
        except _Stop:
            raise
        except Exception as exc:  # noqa: BLE001 - building, exchanging or reading failed unforeseen
            raise InternalError.of(exc).scrubbed(self._secrets) from None
        finally:
            self.limiter.release(estimate, used, ok)
        return answer, ticket

    async def _reserve(self, holds: list[Hold], estimate: int) -> None:
        assert self.account is not None
        hold = await self.account.reserve(estimate - self._output_tokens, self._output_tokens)
        if hold is None:
            raise _Stop(BUDGET, f"not sent: {self.account.reason()}")
        holds.append(hold)

    def _check_stop(self) -> None:
        if self.breaker.reason is not None:
            raise _Stop(SKIPPED, f"provider {self.breaker.reason}")
        if self.account is not None and self.account.stopped:
            raise _Stop(BUDGET, f"not sent: {self.account.reason()}")
        if self._should_stop():
            raise _Stop(INTERRUPTED, "the run was stopped before this call was made")
