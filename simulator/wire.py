"""Wire formats: parse OpenAI Chat Completions / Anthropic Messages requests, build responses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from simulator.answers import CHARS_PER_TOKEN, approx_tokens

SYSTEM_FINGERPRINT = "fp_sim00000001"


class RequestError(ValueError):
    """The request body is invalid; the message is returned to the client as a 400."""


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    """The parts of a chat request the simulator needs."""

    model: str
    prompt_text: str
    input_tokens: int
    max_tokens: int | None


def content_text(content: Any) -> str:
    """Text of a message ``content``: a string or a list of ``{"type": "text", "text": ...}``."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "")
            for part in content
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
        )
    return ""


def _messages_text(messages: list[Any]) -> tuple[str, int]:
    """Return (text of the last user message, total characters of all message text)."""
    prompt_text = ""
    found = False
    total = 0
    for message in reversed(messages):
        if not isinstance(message, dict):
            raise RequestError("messages: each message must be an object")
        text = content_text(message.get("content"))
        total += len(text)
        if not found and message.get("role") == "user":
            prompt_text = text
            found = True
    return prompt_text, total


def _require_model_and_messages(body: Any) -> tuple[str, list[Any]]:
    if not isinstance(body, dict):
        raise RequestError("Request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError("model: a non-empty string is required")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("messages: a non-empty array is required")
    return model, messages


def _optional_int(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RequestError(f"{key}: must be a positive integer")
    return value


def parse_openai(body: Any) -> ParsedRequest:
    """Validate and parse a Chat Completions body (``stream: true`` is rejected)."""
    model, messages = _require_model_and_messages(body)
    if body.get("stream"):
        raise RequestError("stream: streaming is not supported by the simulator")
    prompt_text, chars = _messages_text(messages)
    limits = [
        value
        for value in (_optional_int(body, "max_tokens"), _optional_int(body, "max_completion_tokens"))
        if value is not None
    ]
    max_tokens = min(limits) if limits else None
    return ParsedRequest(model, prompt_text, max(1, -(-chars // CHARS_PER_TOKEN)), max_tokens)


def parse_anthropic(body: Any) -> ParsedRequest:
    """Validate and parse a Messages body (``max_tokens`` is required, like the real API)."""
    model, messages = _require_model_and_messages(body)
    if body.get("max_tokens") is None:
        raise RequestError("max_tokens: Field required")
    max_tokens = _optional_int(body, "max_tokens")
    if body.get("stream"):
        raise RequestError("stream: streaming is not supported by the simulator")
    prompt_text, chars = _messages_text(messages)
    chars += len(content_text(body.get("system")))
    return ParsedRequest(model, prompt_text, max(1, -(-chars // CHARS_PER_TOKEN)), max_tokens)


def openai_completion(
    completion_id: str,
    created: int,
    model: str,
    content: str,
    truncated: bool,
    prompt_tokens: int,
    *,
    no_choices: bool = False,
) -> dict[str, Any]:
    """A ``chat.completion`` object as OpenAI returns it."""
    completion_tokens = approx_tokens(content) if content else 0
    choices: list[dict[str, Any]] = []
    if not no_choices:
        choices.append(
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "logprobs": None,
                "finish_reason": "length" if truncated else "stop",
            }
        )
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }


def anthropic_message(
    message_id: str,
    model: str,
    content: str,
    truncated: bool,
    input_tokens: int,
    *,
    no_content: bool = False,
) -> dict[str, Any]:
    """A Messages API ``message`` object as Anthropic returns it."""
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [] if no_content else [{"type": "text", "text": content}],
        "stop_reason": "max_tokens" if truncated else "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": input_tokens,
            "output_tokens": approx_tokens(content) if content else 0,
        },
    }
