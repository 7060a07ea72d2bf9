"""OpenAI and every OpenAI-compatible server (vLLM, Ollama, Together, Groq, OpenRouter, …)."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from pydantic import SecretStr

from providers.answer_parts import AnswerReading, normal_finish_reason
from providers.base import Provider
from providers.config import ProviderConfig
from providers.errors import MalformedAnswer
from providers.http import AiohttpExchange, JsonExchange
from providers.images import openai_messages
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
    messages = openai_messages(messages)  # images as content parts
    wire = [{"role": "system", "content": system}, *messages] if system else messages
    return {"model": model, "messages": wire, **params}


def completion_answer(completion: dict[str, Any], request_id: str | None, rate: RateInfo | None = None) -> Answer:
    """The answer in a Chat Completions body (online, or a batch output line's), in whatever shape it came:
    text (a string or a list of text parts), a refusal (``message.refusal``), tool calls, reasoning
    (``reasoning_content`` / ``reasoning``, as compatible servers send it), or nothing at all (a filtered
    answer, or a reasoning model that spent its whole budget thinking). Raises :class:`MalformedAnswer`
    only for a body that is no answer: no choices, or a choice without a message object.
    """
    choices = completion.get("choices")
    if not choices or not isinstance(choices, list) or not isinstance(choices[0], dict):
        raise MalformedAnswer("malformed response: no choices")
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        raise MalformedAnswer("malformed response: a choice without a message")
    read = AnswerReading()
    text, part_refusal = _content_text(message.get("content"), read)
    refusal = read.text(message.get("refusal")) or part_refusal
    reasoning = [
        {"content": thought}
        for key in ("reasoning_content", "reasoning")
        if isinstance(message.get(key), str) and (thought := read.text(message[key]))
    ][:1]
    vendor_finish = read.text(choice.get("finish_reason"))
    finish = normal_finish_reason(vendor_finish)
    if refusal and finish in (None, "stop"):
        finish = "refusal"
    usage = read.mapping(completion.get("usage"))
    prompt_details = read.mapping(usage.get("prompt_tokens_details"))
    completion_details = read.mapping(usage.get("completion_tokens_details"))
    return Answer(
        text=text,
        model=read.model(completion.get("model")),
        finish_reason=finish,
        input_tokens=read.count(usage.get("prompt_tokens")),
        output_tokens=read.count(usage.get("completion_tokens")),
        request_id=request_id,
        rate=rate,
        vendor_finish_reason=vendor_finish,
        refusal=refusal,
        tool_calls=_tool_calls(message, read),
        reasoning=reasoning or None,
        reasoning_tokens=read.count(completion_details.get("reasoning_tokens")),
        cached_input_tokens=read.count(prompt_details.get("cached_tokens")),
        flags=tuple(read.flags),
    )


def _content_text(content: Any, read: AnswerReading) -> tuple[str, str | None]:
    """A message's ``content`` as text (a string, or a list of parts whose text parts are joined), and the
    text of a ``refusal`` part if it has one. Raises :class:`MalformedAnswer` for content of another type."""
    if content is None:
        return "", None
    if isinstance(content, str):
        return read.text(content) or "", None
    if not isinstance(content, list):
        raise MalformedAnswer(f"malformed response: message content is a {type(content).__name__}")
    texts, refusals = [], []
    for part in content:
        if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif isinstance(part, dict) and part.get("type") == "refusal" and isinstance(part.get("refusal"), str):
            refusals.append(part["refusal"])
    return read.text("".join(texts)) or "", read.text("".join(refusals)) or None


def _tool_calls(message: dict[str, Any], read: AnswerReading) -> list[dict[str, Any]] | None:
    """The message's tool calls (and a legacy ``function_call``) as ``{"id", "name", "arguments"}``."""
    raw = message.get("tool_calls")
    calls = [c for c in raw if isinstance(c, dict)] if isinstance(raw, list) else []
    if isinstance(message.get("function_call"), dict):
        calls.append({"function": message["function_call"]})
    found = []
    for call in calls:
        function = call.get("function")
        function = function if isinstance(function, dict) else {}
        found.append(
            {
                "id": read.text(call.get("id")),
                "name": read.text(function.get("name")),
                "arguments": read.text(function.get("arguments")),
            }
        )
    return found or None


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
