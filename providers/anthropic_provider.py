"""Anthropic's Messages API."""

from __future__ import annotations

import json
from typing import Any, ClassVar

import httpx
from httpx_aiohttp import HttpxAiohttpClient
from pydantic import SecretStr

from providers.answer_parts import AnswerReading, normal_finish_reason
from providers.base import Provider
from providers.config import ProviderConfig
from providers.errors import MalformedAnswer
from providers.http import AiohttpExchange, JsonExchange, RawResponse, status_error
from providers.images import anthropic_messages
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
    body: dict[str, Any] = {"model": model, "messages": anthropic_messages(messages), **params}
    if system:
        body["system"] = system
    return body


def message_answer(data: Any, request_id: str | None, rate: RateInfo | None = None) -> Answer:
    """The answer in a Messages API message (online, or a batch result's), in whatever shape it came: its
    text blocks joined, ``thinking`` and ``redacted_thinking`` blocks as reasoning (signatures kept),
    ``tool_use`` blocks as tool calls (their input as JSON), and the stop reason (``refusal`` included).
    Raises :class:`MalformedAnswer` only for a body that is no message (no ``content`` list).
    """
    blocks = data.get("content") if isinstance(data, dict) else None
    if not isinstance(blocks, list):
        raise MalformedAnswer("malformed response: not a Messages API body")
    read = AnswerReading()
    texts: list[str] = []
    reasoning: list[dict[str, Any]] = []
    tool_calls: list[dict[str, Any]] = []
    for block in blocks:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(read.text(block.get("text")) or "")
        elif kind == "thinking":
            reasoning.append(_signed({"content": read.text(block.get("thinking")) or ""}, block, read))
        elif kind == "redacted_thinking":
            reasoning.append({"redacted": True, "data": read.text(block.get("data"))})
        elif kind == "tool_use":
            arguments = json.dumps(block.get("input"), ensure_ascii=False, default=str)
            tool_calls.append(
                {
                    "id": read.text(block.get("id")),
                    "name": read.text(block.get("name")),
                    "arguments": read.text(arguments),
                }
            )
    vendor_finish = read.text(data.get("stop_reason"))
    usage = read.mapping(data.get("usage"))
    uncached = read.count(usage.get("input_tokens"))
    cache_read = read.count(usage.get("cache_read_input_tokens"))
    cache_write = read.count(usage.get("cache_creation_input_tokens"))
    # Anthropic's input_tokens leaves out the tokens read from and written to the cache: all three are input.
    input_tokens = None if uncached is None else uncached + (cache_read or 0) + (cache_write or 0)
    return Answer(
        text="".join(texts),
        model=read.model(data.get("model")),
        finish_reason=normal_finish_reason(vendor_finish),
        input_tokens=input_tokens,
        output_tokens=read.count(usage.get("output_tokens")),
        request_id=request_id,
        rate=rate,
        vendor_finish_reason=vendor_finish,
        tool_calls=tool_calls or None,
        reasoning=reasoning or None,
        cached_input_tokens=cache_read,
        cache_write_tokens=cache_write,
        flags=tuple(read.flags),
    )


def _signed(entry: dict[str, Any], block: dict[str, Any], read: AnswerReading) -> dict[str, Any]:
    """A thinking block's entry with its ``signature`` (needed to send the block back in a later turn)."""
    signature = read.text(block.get("signature"))
    if signature:
        entry["signature"] = signature
    return entry


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
