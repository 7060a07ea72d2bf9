"""Anthropic's Messages API over ``httpx`` (on the aiohttp transport)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from httpx_aiohttp import HttpxAiohttpClient
from pydantic import SecretStr

from providers.base import Provider
from providers.config import ProviderConfig
from providers.errors import ProviderError, retry_after_seconds, timeout_error
from providers.ratelimit_headers import anthropic_remaining
from providers.result import Answer


class AnthropicProvider(Provider):
    """``POST /v1/messages`` with ``x-api-key`` and ``anthropic-version``; ``max_tokens`` always sent."""

    def __init__(self, config: ProviderConfig, api_key: SecretStr, should_stop: Callable[[], bool] = lambda: False) -> None:
        super().__init__(config, api_key, should_stop)
        headers = {
            "x-api-key": api_key.get_secret_value(),
            "anthropic-version": config.anthropic_version,
            "content-type": "application/json",
        }
        # Never size the pool to exactly the concurrency: waiters queueing for a connection are slow.
        limits = httpx.Limits(max_connections=config.max_concurrency * 2, max_keepalive_connections=config.max_concurrency * 2)
        self._client = HttpxAiohttpClient(
            base_url=config.effective_base_url, headers=headers, timeout=config.timeout_s, limits=limits
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _send(self, messages: list[dict[str, Any]], system: str | None) -> Answer:
        body: dict[str, Any] = {"model": self.config.model, "messages": messages, **self._params}
        if system:
            body["system"] = system
        started = time.monotonic()
        try:
            response = await self._client.post("/v1/messages", content=json.dumps(body))
        except httpx.TimeoutException as exc:
            raise timeout_error(time.monotonic() - started, self.config.timeout_s, type(exc).__name__) from None
        except httpx.TransportError as exc:
            raise ProviderError(f"connection failed: {type(exc).__name__}", error_type="connection") from None
        if response.status_code >= 400:
            raise ProviderError(
                f"HTTP {response.status_code}: {_error_message(response)}",
                error_type="http",
                status_code=response.status_code,
                retry_after_s=retry_after_seconds(response.headers),
            )
        try:
            data = response.json()
            blocks = data["content"]
            text = "".join(b.get("text", "") for b in blocks if b.get("type") == "text")
            usage = data.get("usage") or {}
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ProviderError("malformed response: not a Messages API body", error_type="malformed") from None
        if not text:
            raise ProviderError("malformed response: empty content", error_type="malformed")
        remaining, reset_s = anthropic_remaining(response.headers, datetime.now(UTC))
        return Answer(
            text=text,
            model=data.get("model"),
            finish_reason=data.get("stop_reason"),
            input_tokens=usage.get("input_tokens"),
            output_tokens=usage.get("output_tokens"),
            request_id=response.headers.get("request-id"),
            remaining_requests=remaining,
            reset_requests_s=reset_s,
        )


def _error_message(response: httpx.Response) -> str:
    try:
        data = response.json()
        return str(data["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.reason_phrase or "error"
