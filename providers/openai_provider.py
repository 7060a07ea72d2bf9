"""OpenAI and every OpenAI-compatible server (vLLM, Ollama, Together, Groq, OpenRouter, …), via the SDK."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import openai
from pydantic import SecretStr

from providers.base import Provider
from providers.config import ProviderConfig
from providers.errors import ProviderError, retry_after_seconds, timeout_error
from providers.ratelimit_headers import openai_remaining
from providers.result import Answer


class OpenAIProvider(Provider):
    """Chat Completions through ``AsyncOpenAI`` on the aiohttp transport; the SDK's own retries are off."""

    def __init__(self, config: ProviderConfig, api_key: SecretStr, should_stop: Callable[[], bool] = lambda: False) -> None:
        super().__init__(config, api_key, should_stop)
        self._client = openai.AsyncOpenAI(
            api_key=api_key.get_secret_value(),
            base_url=config.effective_base_url,
            max_retries=0,
            timeout=config.timeout_s,
            http_client=openai.DefaultAioHttpClient(timeout=config.timeout_s),
        )
        self._create = self._client.chat.completions.with_raw_response.create

    async def aclose(self) -> None:
        await self._client.close()

    async def _send(self, messages: list[dict[str, Any]], system: str | None) -> Answer:
        wire = [{"role": "system", "content": system}, *messages] if system else messages
        started = time.monotonic()
        try:
            raw = await self._create(model=self.config.model, messages=wire, **self._params)
        except openai.APIStatusError as exc:
            raise ProviderError(
                f"HTTP {exc.status_code}: {_error_message(exc)}",
                error_type="http",
                status_code=exc.status_code,
                retry_after_s=retry_after_seconds(exc.response.headers),
            ) from None
        except openai.APITimeoutError as exc:
            raise timeout_error(time.monotonic() - started, self.config.timeout_s, _cause(exc)) from None
        except openai.APIConnectionError as exc:
            raise ProviderError(f"connection failed: {_cause(exc)}", error_type="connection") from None
        except openai.APIResponseValidationError as exc:
            raise ProviderError(f"malformed response: {exc.message}", error_type="malformed") from None
        try:
            completion = raw.parse()
        except Exception as exc:  # noqa: BLE001 - any parse failure is a malformed body
            raise ProviderError(f"malformed response: {type(exc).__name__}", error_type="malformed") from None
        choices = getattr(completion, "choices", None)
        if not choices:
            raise ProviderError("malformed response: no choices", error_type="malformed")
        choice = choices[0]
        text = choice.message.content if choice.message is not None else None
        if not text:
            raise ProviderError("malformed response: empty content", error_type="malformed")
        usage = completion.usage
        remaining, reset_s = openai_remaining(raw.headers)
        return Answer(
            text=text,
            model=completion.model,
            finish_reason=choice.finish_reason,
            input_tokens=usage.prompt_tokens if usage else None,
            output_tokens=usage.completion_tokens if usage else None,
            request_id=raw.headers.get("x-request-id"),
            remaining_requests=remaining,
            reset_requests_s=reset_s,
        )


def _error_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return inner["message"]
    return exc.message


def _cause(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    return f"{type(cause).__name__}" if cause else type(exc).__name__
