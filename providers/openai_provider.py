"""OpenAI and every OpenAI-compatible server (vLLM, Ollama, Together, Groq, OpenRouter, …)."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from pydantic import SecretStr

from providers.base import Provider
from providers.config import ProviderConfig
from providers.errors import MalformedAnswer
from providers.http import AiohttpExchange, JsonExchange
from providers.kinds import Kind, OpenAIKind
from providers.ratelimit_headers import RateInfo, rate_info, request_id
from providers.result import Answer

CHAT_PATH = "/chat/completions"


class OpenAIProvider(Provider):
    """Chat Completions (``POST {base_url}/chat/completions`` with a bearer key); the answer read from its JSON.

    ``params`` are sent as configured. The exchange is the SDK (:class:`~providers.openai_sdk.SdkExchange`,
    the default) or the lean :class:`~providers.http.AiohttpExchange` (``http_client: aiohttp``).
    """

    kind: ClassVar[type[Kind]] = OpenAIKind

    def _open_exchange(self, config: ProviderConfig, api_key: SecretStr) -> JsonExchange:
        if config.http_client == "aiohttp":
            headers = {"Authorization": f"Bearer {api_key.get_secret_value()}"}
            url = config.effective_base_url + CHAT_PATH
            return AiohttpExchange(url, headers, config.timeout_s, config.max_concurrency, self._secrets)
        from providers.openai_sdk import (
            SdkExchange,  # the SDK takes ~1 s to import: only when used
        )

        return SdkExchange(config, api_key, CHAT_PATH, self._secrets)

    async def _send(self, messages: list[dict[str, Any]], system: str | None) -> Answer:
        raw = await self._exchange.post(chat_body(self.config.model, self._params, messages, system))
        completion = _completion_json(raw.content, raw.headers.get("content-type", "*"))
        return completion_answer(
            completion, request_id(raw.headers, "x-request-id", completion), rate_info(raw.headers)
        )


def chat_body(model: str, params: dict[str, Any], messages: list[dict[str, Any]], system: str | None) -> dict[str, Any]:
    """The Chat Completions request body: the system prompt as the first message, then ``params`` as given."""
    wire = [{"role": "system", "content": system}, *messages] if system else messages
    return {"model": model, "messages": wire, **params}


def completion_answer(completion: dict[str, Any], request_id: str | None, rate: RateInfo | None = None) -> Answer:
    """The answer in a Chat Completions body (online, or a batch output line's); :class:`MalformedAnswer` if none."""
    choices = completion.get("choices")
    if not choices or not isinstance(choices, list):
        raise MalformedAnswer("malformed response: no choices")
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message")
    text = message.get("content") if isinstance(message, dict) else None
    if not text or not isinstance(text, str):
        raise MalformedAnswer("malformed response: empty content")
    usage = completion.get("usage")
    usage = usage if isinstance(usage, dict) else {}
    return Answer(
        text=text,
        model=completion.get("model"),
        finish_reason=choice.get("finish_reason"),
        input_tokens=usage.get("prompt_tokens"),
        output_tokens=usage.get("completion_tokens"),
        request_id=request_id,
        rate=rate,
    )


def _completion_json(content: bytes, content_type: str) -> dict[str, Any]:
    """The body as a JSON object, read the way the SDK reads it.

    A body that is not JSON is malformed (named by the decoding error) when the server said it is
    JSON, and an answer without choices when it did not; JSON that is not an object has no choices.
    """
    try:
        data = json.loads(content)
    except ValueError as exc:
        if content_type.split(";")[0].endswith("json"):
            raise MalformedAnswer(f"malformed response: {type(exc).__name__}") from None
        data = None
    return data if isinstance(data, dict) else {}
