"""What every provider kind shares: retries, timing, concurrency and turning errors into results."""

from __future__ import annotations

import abc
import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from pydantic import SecretStr

from providers.config import ProviderConfig
from providers.errors import ProviderError, scrub
from providers.result import Answer, CallResult
from providers.retry import make_retrying


def system_text(record_system: str | None, provider_system: str | None) -> str | None:
    """The system prompt sent: the provider's own (if any), then the record's, separated by a blank line."""
    parts = [p for p in (provider_system, record_system) if p]
    return "\n\n".join(parts) if parts else None


class Provider(abc.ABC):
    """One configured endpoint. ``call`` never raises for a provider failure: it returns the error."""

    def __init__(self, config: ProviderConfig, api_key: SecretStr) -> None:
        self.config = config
        self._api_key = api_key
        self._secrets = (api_key.get_secret_value(),)
        self._slots = asyncio.Semaphore(config.max_concurrency)
        self._params = config.wire_params()

    @abc.abstractmethod
    async def _send(self, messages: list[dict[str, Any]], system: str | None) -> Answer:
        """One HTTP exchange; raise :class:`ProviderError` on any failure."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Close the HTTP client."""

    async def call(self, messages: list[dict[str, Any]], system: str | None) -> CallResult:
        """Send one prompt with retries; the result holds the answer or the final error."""
        attempts = 0
        started = time.perf_counter()
        try:
            async for attempt in make_retrying(
                self.config.max_retries,
                self.config.backoff_initial_s,
                self.config.backoff_max_s,
                self.config.max_retry_after_s,
            ):
                with attempt:
                    attempts += 1
                    async with self._slots:
                        started = time.perf_counter()
                        answer = await self._send(messages, system)
        except ProviderError as exc:
            return CallResult(
                ok=False,
                latency_ms=round((time.perf_counter() - started) * 1000, 1),
                attempts=attempts,
                error_type=exc.label,
                error=scrub(exc.message, self._secrets),
                status_code=exc.status_code,
                created_at=_now(),
            )
        return CallResult(
            ok=True,
            text=answer.text,
            model=answer.model,
            finish_reason=answer.finish_reason,
            input_tokens=answer.input_tokens,
            output_tokens=answer.output_tokens,
            request_id=answer.request_id,
            latency_ms=round((time.perf_counter() - started) * 1000, 1),
            attempts=attempts,
            created_at=_now(),
        )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
