"""Anthropic's Messages API."""

from __future__ import annotations

import json
from typing import Any, ClassVar

import httpx
from httpx_aiohttp import HttpxAiohttpClient
from pydantic import SecretStr

from providers.base import Provider
from providers.config import ProviderConfig
from providers.errors import MalformedAnswer
from providers.http import AiohttpExchange, JsonExchange, RawResponse, status_error
from providers.kinds import AnthropicKind, Kind
from providers.ratelimit_headers import RateInfo, rate_info, request_id
from providers.result import Answer

MESSAGES_PATH = "/v1/messages"


class AnthropicProvider(Provider):
    """``POST /v1/messages`` with ``x-api-key`` and ``anthropic-version``; ``max_tokens`` always sent.

    The exchange is httpx (:class:`HttpxExchange`, the default) or the lean
    :class:`~providers.http.AiohttpExchange` (``http_client: aiohttp``).
    """

    kind: ClassVar[type[Kind]] = AnthropicKind

    def _open_exchange(self, config: ProviderConfig, api_key: SecretStr) -> JsonExchange:
        headers = {"x-api-key": api_key.get_secret_value(), "anthropic-version": config.anthropic_version}
        url = config.effective_base_url + MESSAGES_PATH
        exchange = AiohttpExchange if config.http_client == "aiohttp" else HttpxExchange
        return exchange(url, headers, config.timeout_s, config.max_concurrency, self._secrets)

    async def _send(self, messages: list[dict[str, Any]], system: str | None) -> Answer:
        raw = await self._exchange.post(messages_body(self.config.model, self._params, messages, system))
        try:
            data = json.loads(raw.content)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise MalformedAnswer("malformed response: not a Messages API body")
        return message_answer(data, request_id(raw.headers, "request-id", data), rate_info(raw.headers))


def messages_body(
    model: str, params: dict[str, Any], messages: list[dict[str, Any]], system: str | None
) -> dict[str, Any]:
    """The Messages API request body: ``params`` as the kind translated them, the system prompt on its own."""
    body: dict[str, Any] = {"model": model, "messages": messages, **params}
    if system:
        body["system"] = system
    return body


def message_answer(data: Any, request_id: str | None, rate: RateInfo | None = None) -> Answer:
    """The answer in a Messages API message (online, or a batch result's): its text blocks, or for a message
    that is only a tool call (a judge's forced tool) the tool's input as JSON; :class:`MalformedAnswer` if none."""
    try:
        blocks = data["content"]
        text = "".join(b.get("text", "") for b in blocks if b.get("type") == "text")
        if not text:  # a forced tool call (structured output): its input is the answer, as JSON
            tool_inputs = [b.get("input") for b in blocks if b.get("type") == "tool_use"]
            text = json.dumps(tool_inputs[0], ensure_ascii=False) if tool_inputs else ""
        usage = data.get("usage") or {}
    except (KeyError, TypeError, AttributeError):
        raise MalformedAnswer("malformed response: not a Messages API body") from None
    if not text:
        raise MalformedAnswer("malformed response: empty content")
    return Answer(
        text=text,
        model=data.get("model"),
        finish_reason=data.get("stop_reason"),
        input_tokens=usage.get("input_tokens"),
        output_tokens=usage.get("output_tokens"),
        request_id=request_id,
        rate=rate,
    )


class HttpxExchange(JsonExchange):
    """Posts with ``httpx`` on the httpx-aiohttp transport.

    httpx's timeouts are per read; ``timeout_s`` bounds the whole attempt in :meth:`JsonExchange.post`.
    """

    _transport_errors = (*JsonExchange._transport_errors, httpx.TransportError)

    def __init__(
        self, url: str, headers: dict[str, str], timeout_s: float, max_connections: int, secrets: tuple[str, ...]
    ) -> None:
        super().__init__(timeout_s, secrets)
        self._url = url
        # Never size the pool to exactly the concurrency: waiters queueing for a connection are slow.
        limits = httpx.Limits(max_connections=max_connections * 2, max_keepalive_connections=max_connections * 2)
        self._client = HttpxAiohttpClient(
            headers={**headers, "content-type": "application/json"}, timeout=timeout_s, limits=limits
        )

    async def _post(self, body: dict[str, Any]) -> RawResponse:
        response = await self._client.post(self._url, content=json.dumps(body))
        if response.status_code >= 400:
            raise status_error(response.status_code, response.headers, response.content, response.reason_phrase)
        return RawResponse(response.status_code, response.headers, response.content)

    async def aclose(self) -> None:
        await self._client.aclose()
