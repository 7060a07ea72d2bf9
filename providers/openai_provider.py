"""OpenAI and every OpenAI-compatible server (vLLM, Ollama, Together, Groq, OpenRouter, …)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import openai
from pydantic import SecretStr

from providers.base import Provider
from providers.config import ProviderConfig
from providers.errors import ProviderError, timeout_error
from providers.http import AiohttpExchange, JsonExchange, RawResponse, status_error
from providers.ratelimit_headers import openai_remaining
from providers.result import Answer

CHAT_PATH = "/chat/completions"


class OpenAIProvider(Provider):
    """Chat Completions (``POST {base_url}/chat/completions`` with a bearer key); the answer read from its JSON.

    ``params`` are sent as configured. The exchange is the SDK (:class:`SdkExchange`, the default) or
    the lean :class:`~providers.http.AiohttpExchange` (``http_client: aiohttp``).
    """

    def __init__(self, config: ProviderConfig, api_key: SecretStr, should_stop: Callable[[], bool] = lambda: False) -> None:
        super().__init__(config, api_key, should_stop)
        if config.http_client == "aiohttp":
            headers = {"Authorization": f"Bearer {api_key.get_secret_value()}"}
            url = config.effective_base_url + CHAT_PATH
            self._exchange = AiohttpExchange(url, headers, config.timeout_s, config.max_concurrency)
        else:
            self._exchange = SdkExchange(config, api_key)

    async def _send(self, messages: list[dict[str, Any]], system: str | None) -> Answer:
        wire = [{"role": "system", "content": system}, *messages] if system else messages
        raw = await self._exchange.post({"model": self.config.model, "messages": wire, **self._params})
        completion = _completion_json(raw.content, raw.headers.get("content-type", "*"))
        choices = completion.get("choices")
        if not choices or not isinstance(choices, list):
            raise ProviderError("malformed response: no choices", error_type="malformed")
        choice = choices[0] if isinstance(choices[0], dict) else {}
        message = choice.get("message")
        text = message.get("content") if isinstance(message, dict) else None
        if not text or not isinstance(text, str):
            raise ProviderError("malformed response: empty content", error_type="malformed")
        usage = completion.get("usage")
        usage = usage if isinstance(usage, dict) else {}
        remaining, reset_s = openai_remaining(raw.headers)
        return Answer(
            text=text,
            model=completion.get("model"),
            finish_reason=choice.get("finish_reason"),
            input_tokens=usage.get("prompt_tokens"),
            output_tokens=usage.get("completion_tokens"),
            request_id=raw.headers.get("x-request-id"),
            remaining_requests=remaining,
            reset_requests_s=reset_s,
        )


class SdkExchange(JsonExchange):
    """Posts through ``AsyncOpenAI`` (aiohttp transport, the SDK's own retries off).

    Requests go through the SDK's client (base URL, auth, headers, timeouts, its error classes), but
    not through ``chat.completions.create``: that re-walks every request against the SDK's typed
    parameter definitions and builds a typed model of every answer, ~1.4 ms of CPU per call, half
    of the SDK's cost (bench/RESULTS.md).
    """

    def __init__(self, config: ProviderConfig, api_key: SecretStr) -> None:
        self._timeout_s = config.timeout_s
        self._client = openai.AsyncOpenAI(
            api_key=api_key.get_secret_value(),
            base_url=config.effective_base_url,
            max_retries=0,
            timeout=config.timeout_s,
            http_client=openai.DefaultAioHttpClient(timeout=config.timeout_s),
        )
        self._post = self._client.post

    async def post(self, body: dict[str, Any]) -> RawResponse:
        started = time.monotonic()
        try:
            # cast_to=httpx.Response: the SDK's documented way to get the raw response (the SDK's
            # status errors are still raised); openai 3.x also accepts it while httpx is imported.
            raw = await self._post(CHAT_PATH, body=body, cast_to=httpx.Response)
        except openai.APIStatusError as exc:
            response = exc.response
            raise status_error(exc.status_code, response.headers, response.content, response.reason_phrase) from None
        except openai.APITimeoutError as exc:
            raise timeout_error(time.monotonic() - started, self._timeout_s, _cause(exc)) from None
        except openai.APIConnectionError as exc:
            raise ProviderError(f"connection failed: {_cause(exc)}", error_type="connection") from None
        except openai.APIResponseValidationError as exc:
            raise ProviderError(f"malformed response: {exc.message}", error_type="malformed") from None
        return RawResponse(raw.status_code, raw.headers, raw.content)

    async def aclose(self) -> None:
        await self._client.close()


def _completion_json(content: bytes, content_type: str) -> dict[str, Any]:
    """The body as a JSON object, read the way the SDK reads it.

    A body that is not JSON is malformed (named by the decoding error) when the server said it is
    JSON, and an answer without choices when it did not; JSON that is not an object has no choices.
    """
    try:
        data = json.loads(content)
    except ValueError as exc:
        if content_type.split(";")[0].endswith("json"):
            raise ProviderError(f"malformed response: {type(exc).__name__}", error_type="malformed") from None
        data = None
    return data if isinstance(data, dict) else {}


def _cause(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    return f"{type(cause).__name__}" if cause else type(exc).__name__
