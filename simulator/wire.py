"""Wire formats: parse OpenAI Chat Completions / Anthropic Messages requests, build responses.

Structured output (judge models) is read from either wire into ``ParsedRequest.schema``:

- OpenAI: ``response_format: {"type": "json_schema", "json_schema": {"name", "schema", "strict"}}``. The
  name must match ``^[a-zA-Z0-9_-]{1,64}$``; with ``strict: true`` every object in the schema must set
  ``additionalProperties: false`` and require all its properties (else a 400 like the real API's).
  ``{"type": "text"}`` is a text answer; ``json_object`` (JSON mode, no schema) is not simulated: the
  answer is text.
- Anthropic: ``tools`` (custom tools: ``name`` and an ``input_schema`` of type ``object``) with
  ``tool_choice`` ``{"type": "tool", "name": ...}`` forcing that tool, which sets ``schema`` and
  ``tool_name``. ``{"type": "any"}`` must call some tool: the simulator calls the first custom tool (a
  judge sends only one). ``auto``, ``none`` or no ``tool_choice`` leave the choice to the model: the
  simulator answers with text, as a model that chose not to call the tool does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from simulator.answers import CHARS_PER_TOKEN, approx_tokens
from simulator.images import IMAGE_TOKENS, ImageError, anthropic_image, openai_image

SYSTEM_FINGERPRINT = "fp_sim00000001"
NAME_PATTERN = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


class RequestError(ValueError):
    """The request body is invalid; the message is returned to the client as a 400."""


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    """The parts of a chat request the simulator needs."""

    model: str
    prompt_text: str
    input_tokens: int
    max_tokens: int | None
    # Structured output: the JSON Schema the answer must conform to (None: a text answer) and, for
    # Anthropic, the name of the tool the answer calls (its input is the structured value).
    schema: dict[str, Any] | None = None
    tool_name: str | None = None
    # Tags (short content hashes) of the request's images, every message's, in order.
    images: tuple[str, ...] = ()


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


def _image_tags(content: Any, index: int, api: str) -> list[str]:
    """The tags (short content hashes) of a message's image parts, each checked as ``api`` checks it."""
    if not isinstance(content, list):
        return []
    tags = []
    for number, part in enumerate(content):
        if not isinstance(part, dict):
            continue
        try:
            if api == "openai" and part.get("type") == "image_url":
                tags.append(openai_image(part, f"messages[{index}].content[{number}]"))
            elif api == "anthropic" and part.get("type") == "image":
                tags.append(anthropic_image(part, f"messages.{index}.content.{number}"))
        except ImageError as exc:
            raise RequestError(str(exc)) from None
    return tags


def _messages_text(messages: list[Any], api: str = "openai") -> tuple[str, int, tuple[str, ...]]:
    """Return (text of the last user message, total characters of all message text). The last user
    message's images join its text as ``[image:<hash>]`` lines (the answer depends on them); every image
    counts :data:`IMAGE_TOKENS` tokens (as characters). Also the tags of every image, in order."""
    prompt_text = ""
    found = False
    total = 0
    every: list[str] = []
    for index in range(len(messages) - 1, -1, -1):
        message = messages[index]
        if not isinstance(message, dict):
            raise RequestError("messages: each message must be an object")
        text = content_text(message.get("content"))
        tags = _image_tags(message.get("content"), index, api)
        every[:0] = tags
        total += len(text) + len(tags) * IMAGE_TOKENS * CHARS_PER_TOKEN
        if not found and message.get("role") == "user":
            prompt_text = text + "".join(f"\n[image:{tag}]" for tag in tags)
            found = True
    return prompt_text, total, tuple(every)


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


def _strict_problem(schema: Any, context: tuple[str, ...]) -> str | None:
    """What makes ``schema`` unfit for OpenAI's strict mode (objects closed, all properties required)."""
    if not isinstance(schema, Mapping):
        return None
    where = f"In context={context!r}"
    properties = schema.get("properties")
    if schema.get("type") == "object" or isinstance(properties, Mapping):
        if schema.get("additionalProperties") is not False:
            return f"{where}, 'additionalProperties' is required to be supplied and to be false."
        keys = list(properties) if isinstance(properties, Mapping) else []
        required = schema.get("required")
        missing = [k for k in keys if not isinstance(required, list) or k not in required]
        if missing:
            return (
                f"{where}, 'required' is required to be supplied and to be an array including every key in "
                f"properties. Missing '{missing[0]}'."
            )
        for key in keys:
            assert isinstance(properties, Mapping)
            problem = _strict_problem(properties[key], (*context, "properties", key))
            if problem:
                return problem
    nested: list[tuple[tuple[str, ...], Any]] = [((*context, "items"), schema.get("items"))]
    for word in ("anyOf", "$defs", "definitions"):
        group = schema.get(word)
        if isinstance(group, list):
            nested += [((*context, word, str(i)), item) for i, item in enumerate(group)]
        elif isinstance(group, Mapping):
            nested += [((*context, word, str(k)), item) for k, item in group.items()]
    for where_nested, item in nested:
        problem = _strict_problem(item, where_nested)
        if problem:
            return problem
    return None


def _openai_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON Schema of a ``response_format`` of type ``json_schema`` (None: a text answer)."""
    fmt = body.get("response_format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict) or not isinstance(fmt.get("type"), str):
        raise RequestError("response_format: must be an object with a 'type'")
    kind = fmt["type"]
    if kind in ("text", "json_object"):
        return None
    if kind != "json_schema":
        raise RequestError(
            f"response_format.type: Invalid value: '{kind}'. Supported values are: 'text', 'json_object', "
            "and 'json_schema'."
        )
    spec = fmt.get("json_schema")
    if not isinstance(spec, dict):
        raise RequestError("response_format.json_schema: Missing required parameter.")
    name = spec.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise RequestError(
            "response_format.json_schema.name: string does not match pattern. Expected a string that matches "
            "the pattern '^[a-zA-Z0-9_-]+$' (at most 64 characters)."
        )
    schema = spec.get("schema", {})
    if not isinstance(schema, dict):
        raise RequestError("response_format.json_schema.schema: must be an object")
    if spec.get("strict") is True:
        problem = _strict_problem(schema, ())
        if problem:
            raise RequestError(f"Invalid schema for response_format '{name}': {problem}")
    return schema


def _anthropic_tool(body: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(name, input schema) of the tool the answer must call, or None (see the module docstring)."""
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if tools is None:
        if choice is not None:
            raise RequestError("tool_choice: may only be specified while providing tools.")
        return None
    if not isinstance(tools, list):
        raise RequestError("tools: Input should be a valid list")
    custom: dict[str, dict[str, Any]] = {}
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise RequestError(f"tools.{i}: Input should be an object")
        if tool.get("type") not in (None, "custom"):  # a server tool (web search, …): nothing to simulate
            continue
        name = tool.get("name")
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            raise RequestError(f"tools.{i}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'")
        schema = tool.get("input_schema")
        if not isinstance(schema, dict):
            raise RequestError(f"tools.{i}.custom.input_schema: Field required")
        if schema.get("type") != "object":
            raise RequestError(f"tools.{i}.custom.input_schema.type: Input should be 'object'")
        if name in custom:
            raise RequestError(f"tools: Tool names must be unique. Found '{name}' more than once.")
        custom[name] = schema
    if choice is None:
        return None
    if not isinstance(choice, dict) or choice.get("type") not in ("auto", "any", "tool", "none"):
        raise RequestError(
            "tool_choice: Input tag does not match any of the expected tags: 'auto', 'any', 'tool', 'none'"
        )
    if choice["type"] == "tool":
        name = choice.get("name")
        if not isinstance(name, str):
            raise RequestError("tool_choice.tool.name: Field required")
        if name not in custom:
            raise RequestError(f"tool_choice: Tool '{name}' not found in 'tools'.")
        return name, custom[name]
    if choice["type"] == "any" and custom:
        name = next(iter(custom))
        return name, custom[name]
    return None


def parse_openai(body: Any) -> ParsedRequest:
    """Validate and parse a Chat Completions body (``stream: true`` is rejected)."""
    model, messages = _require_model_and_messages(body)
    if body.get("stream"):
        raise RequestError("stream: streaming is not supported by the simulator")
    prompt_text, chars, images = _messages_text(messages, "openai")
    limits = [
        value
        for value in (_optional_int(body, "max_tokens"), _optional_int(body, "max_completion_tokens"))
        if value is not None
    ]
    max_tokens = min(limits) if limits else None
    schema = _openai_schema(body)
    if schema is not None:  # the schema is part of what the model reads
        chars += len(json.dumps(schema))
    return ParsedRequest(model, prompt_text, max(1, -(-chars // CHARS_PER_TOKEN)), max_tokens, schema, images=images)


def parse_anthropic(body: Any) -> ParsedRequest:
    """Validate and parse a Messages body (``max_tokens`` is required, like the real API)."""
    model, messages = _require_model_and_messages(body)
    if body.get("max_tokens") is None:
        raise RequestError("max_tokens: Field required")
    max_tokens = _optional_int(body, "max_tokens")
    if body.get("stream"):
        raise RequestError("stream: streaming is not supported by the simulator")
    prompt_text, chars, images = _messages_text(messages, "anthropic")
    chars += len(content_text(body.get("system")))
    tool = _anthropic_tool(body)
    if body.get("tools"):  # tool definitions count as input, as they do at Anthropic
        chars += len(json.dumps(body["tools"]))
    input_tokens = max(1, -(-chars // CHARS_PER_TOKEN))
    if tool is None:
        return ParsedRequest(model, prompt_text, input_tokens, max_tokens, images=images)
    return ParsedRequest(model, prompt_text, input_tokens, max_tokens, tool[1], tool[0], images=images)


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
    tool_use: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A Messages API ``message`` object as Anthropic returns it. With ``tool_use`` (a
    :func:`tool_use_block`) the content is that block alone and the stop reason ``tool_use``;
    ``content`` is then the input's JSON, for the token count."""
    blocks: list[dict[str, Any]] = [tool_use] if tool_use is not None else [{"type": "text", "text": content}]
    stop_reason = "max_tokens" if truncated else ("tool_use" if tool_use is not None else "end_turn")
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [] if no_content else blocks,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": input_tokens,
            "output_tokens": approx_tokens(content) if content else 0,
        },
    }


def tool_use_block(block_id: str, name: str, tool_input: dict[str, Any]) -> dict[str, Any]:
    """A ``tool_use`` content block: the model calls tool ``name`` with ``tool_input``."""
    return {"type": "tool_use", "id": block_id, "name": name, "input": tool_input}


def anthropic_tool_use(parsed: ParsedRequest, tool_input: dict[str, Any] | None, uid: str) -> dict[str, Any] | None:
    """The ``tool_use`` block answering ``parsed`` when its answer is a call of the forced tool, else None."""
    if tool_input is None or parsed.tool_name is None:
        return None
    return tool_use_block(f"toolu_01{uid}", parsed.tool_name, tool_input)
