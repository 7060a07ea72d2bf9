"""Answer shapes: every 200 body a provider can answer with, in each API's own shape.

:func:`render` builds the body of a successful answer -- the normal one, or the one a 200-kind fault
rule asks for -- for both the online endpoints and the batch APIs. The shape kinds
(:data:`SHAPE_FAULTS`, see ``docs/simulator.md``):

- ``refusal``: OpenAI ``message.content`` null and ``message.refusal`` a sentence, ``finish_reason``
  ``stop``; Anthropic ``stop_reason`` ``refusal`` with ``content`` ``[]`` (its streaming classifiers'
  refusal). ``content_filter``: OpenAI ``content`` null, ``finish_reason`` ``content_filter``;
  Anthropic has no such thing, so its refusal.
- ``length``: the first ~40 % of the answer, cut inside a word, ``finish_reason`` ``length`` /
  ``stop_reason`` ``max_tokens``, output tokens = the request's max tokens (if it sets one).
- ``reasoning_length``: the budget went on reasoning: OpenAI ``content`` ``""``, ``finish_reason``
  ``length``, ``completion_tokens`` = ``reasoning_tokens`` = max tokens; Anthropic a lone ``thinking``
  block, ``stop_reason`` ``max_tokens``.
- ``thinking`` / ``redacted_thinking``: Anthropic a ``thinking`` block (text and signature) or a
  ``redacted_thinking`` block (opaque ``data``) before the answer, its tokens in ``output_tokens``;
  OpenAI the answer plus ``completion_tokens_details.reasoning_tokens`` (counted in
  ``completion_tokens``) and, for ``thinking``, ``message.reasoning_content`` as vLLM and DeepSeek send.
- ``tool_calls``: a call of ``get_weather`` with ``{"city": "Paris"}`` (OpenAI ``tool_calls``,
  ``finish_reason`` ``tool_calls``; Anthropic a ``tool_use`` block, ``stop_reason`` ``tool_use``).
- ``content_parts``: the answer in two text parts (OpenAI ``content`` a list; Anthropic two blocks).
- ``whitespace``: the text is whitespace only. ``huge_text``: the text is ``huge_chars`` long, the
  usage says 7 output tokens. ``lone_surrogate``: the text holds a lone ``\\ud800`` escape.
- ``usage_negative`` (-5 in and out), ``usage_huge`` (input 1e308, a float), ``usage_overflow``
  (input 2**63), ``usage_list`` (``usage`` is ``[1, 2]``), ``model_object`` (``model`` is an object).
- ``cached_input``: the usage reports cached input: OpenAI ``prompt_tokens_details.cached_tokens`` (a
  part of ``prompt_tokens``); Anthropic ``cache_read_input_tokens`` and
  ``cache_creation_input_tokens``, which its ``input_tokens`` leaves out (the three add up to the
  prompt).

:class:`Rendered` also carries the true token counts, which the advertised rate-limit windows and a
batch's usage count whatever the body's ``usage`` claims.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any, get_args

from simulator.answers import Answer, approx_tokens
from simulator.settings import ApiName, FaultRule, ShapeKind
from simulator.wire import (
    SYSTEM_FINGERPRINT,
    ParsedRequest,
    anthropic_message,
    anthropic_tool_use,
    openai_completion,
    tool_use_block,
)

SHAPE_FAULTS: frozenset[str] = frozenset(get_args(ShapeKind))
REFUSAL_TEXT = "I'm sorry, but I can't help with that request."
TOOL_NAME = "get_weather"
TOOL_INPUT: dict[str, Any] = {"city": "Paris"}
WHITESPACE_TEXT = "  \n\t  "
LONE_SURROGATE = "\ud800"
# The share of the answer a ``length`` answer keeps (then cut on inside a word).
LENGTH_FRACTION = 0.4
HUGE_TEXT_OUTPUT_TOKENS = 7
CACHE_CREATION_TOKENS = 10
NEGATIVE_TOKENS = -5
HUGE_TOKENS = 1e308
OVERFLOW_TOKENS = 2**63


@dataclass(frozen=True, slots=True)
class Rendered:
    """A 200 body and the request's true token counts (whatever the body's ``usage`` says)."""

    payload: dict[str, Any]
    input_tokens: int
    output_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


def cut_mid_word(text: str, fraction: float = LENGTH_FRACTION) -> str:
    """The first ``fraction`` of ``text``, moved on to end inside a word if one follows."""
    if len(text) < 2:
        return text
    cut = max(1, int(len(text) * fraction))
    for end in range(cut, len(text)):
        if text[end - 1].isalnum() and text[end].isalnum():
            return text[:end]
    return text[:cut]


def halves(text: str) -> tuple[str, str]:
    """``text`` in two parts (the first half, the rest)."""
    middle = len(text) // 2
    return text[:middle], text[middle:]


def huge_text(text: str, chars: int) -> str:
    """``text`` repeated (space-separated) to exactly ``chars`` characters."""
    unit = (text or "x") + " "
    return (unit * (chars // len(unit) + 1))[:chars]


def with_lone_surrogate(text: str) -> str:
    """``text`` with a lone high surrogate in its middle (JSON: the escape ``\\ud800``)."""
    middle = len(text) // 2
    return text[:middle] + LONE_SURROGATE + text[middle:]


def thinking_text(prompt_text: str) -> str:
    """Deterministic reasoning for a prompt, worded like a model's visible thinking."""
    topic = " ".join(prompt_text.split()[:12]) or "this"
    return (
        f'The user asks: "{topic}". Let me work out what they need before answering. '
        "First, find the core of the question and any constraints it sets. "
        "Then check the facts I would rely on, and decide how much detail is useful here. "
        "A direct answer with a short example should serve best, so I will lead with the main point."
    )


def _opaque(seed: str, digests: int) -> str:
    """Base64 text standing in for an encrypted payload (a signature, redacted thinking)."""
    chunks = []
    block = hashlib.sha256(seed.encode()).digest()
    for _ in range(digests):
        chunks.append(block)
        block = hashlib.sha256(block).digest()
    return base64.b64encode(b"".join(chunks)).decode()


def thinking_block(model: str, thought: str) -> dict[str, Any]:
    """An Anthropic ``thinking`` content block: the reasoning and the signature that seals it."""
    return {"type": "thinking", "thinking": thought, "signature": _opaque(f"sig\x00{model}\x00{thought}", 6)}


def redacted_thinking_block(model: str, thought: str) -> dict[str, Any]:
    """An Anthropic ``redacted_thinking`` content block: encrypted reasoning, only ``data``."""
    return {"type": "redacted_thinking", "data": _opaque(f"redacted\x00{model}\x00{thought}", 12)}


def _openai_usage(
    prompt: int, completion: int, *, cached: int | None = None, reasoning: int | None = None
) -> dict[str, Any]:
    """A Chat Completions ``usage``; with ``cached`` or ``reasoning``, both details objects, as OpenAI
    sends them (``cached_tokens`` is part of ``prompt_tokens``, ``reasoning_tokens`` part of
    ``completion_tokens``)."""
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if cached is not None or reasoning is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached or 0, "audio_tokens": 0}
        usage["completion_tokens_details"] = {
            "reasoning_tokens": reasoning or 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        }
    return usage


def _openai_shape(
    kind: str, rule: FaultRule, parsed: ParsedRequest, answer: Answer, uid: str, created: int
) -> Rendered:
    """A ``chat.completion`` in the shape of fault ``kind`` (one of :data:`SHAPE_FAULTS`)."""
    text = answer.text
    prompt = parsed.input_tokens
    message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
    finish = "length" if answer.truncated else "stop"
    completion = approx_tokens(text) if text else 0
    reported: int | None = None  # output tokens the usage claims, when not the true count
    cached: int | None = None
    reasoning: int | None = None
    if kind == "refusal":
        message.update(content=None, refusal=REFUSAL_TEXT)
        finish, completion = "stop", approx_tokens(REFUSAL_TEXT)
    elif kind == "content_filter":
        message["content"] = None
        finish, completion = "content_filter", 0
    elif kind == "length":
        partial = cut_mid_word(text)
        message["content"] = partial
        finish, completion = "length", parsed.max_tokens or approx_tokens(partial)
    elif kind == "reasoning_length":
        message["content"] = ""
        finish = "length"
        completion = reasoning = parsed.max_tokens or approx_tokens(thinking_text(parsed.prompt_text))
    elif kind in ("thinking", "redacted_thinking"):
        thought = thinking_text(parsed.prompt_text)
        reasoning = approx_tokens(thought)
        completion += reasoning
        if kind == "thinking":
            message["reasoning_content"] = thought
    elif kind == "tool_calls":
        arguments = json.dumps(TOOL_INPUT)
        call = {"id": f"call_{uid}", "type": "function", "function": {"name": TOOL_NAME, "arguments": arguments}}
        message.update(content=None, tool_calls=[call])
        finish, completion = "tool_calls", approx_tokens(TOOL_NAME + arguments)
    elif kind == "content_parts":
        first, second = halves(text)
        message["content"] = [{"type": "text", "text": first}, {"type": "text", "text": second}]
    elif kind == "whitespace":
        message["content"] = WHITESPACE_TEXT
        finish, completion = "stop", approx_tokens(WHITESPACE_TEXT)
    elif kind == "huge_text":
        message["content"] = huge_text(text, rule.huge_chars)
        finish, completion = "stop", approx_tokens(message["content"])
        reported = HUGE_TEXT_OUTPUT_TOKENS
    elif kind == "lone_surrogate":
        message["content"] = with_lone_surrogate(text)
    elif kind == "cached_input":
        cached = prompt // 2
    payload = {
        "id": f"chatcmpl-{uid}",
        "object": "chat.completion",
        "created": created,
        "model": parsed.model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": _openai_usage(
            prompt, completion if reported is None else reported, cached=cached, reasoning=reasoning
        ),
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }
    return Rendered(payload, prompt, completion)


def _anthropic_shape(kind: str, rule: FaultRule, parsed: ParsedRequest, answer: Answer, uid: str) -> Rendered:
    """A Messages API ``message`` in the shape of fault ``kind`` (one of :data:`SHAPE_FAULTS`)."""
    text = answer.text
    tool_use = anthropic_tool_use(parsed, answer.tool_input, uid)
    answer_blocks: list[dict[str, Any]] = [tool_use] if tool_use is not None else [{"type": "text", "text": text}]
    blocks = answer_blocks
    stop = "max_tokens" if answer.truncated else ("tool_use" if tool_use is not None else "end_turn")
    output = approx_tokens(text) if text else 0
    reported: int | None = None
    prompt = parsed.input_tokens
    usage: dict[str, Any] = {"input_tokens": prompt}
    if kind in ("refusal", "content_filter"):
        blocks, stop, output = [], "refusal", 0
    elif kind == "length":
        partial = cut_mid_word(text)
        blocks = [{"type": "text", "text": partial}]
        stop, output = "max_tokens", parsed.max_tokens or approx_tokens(partial)
    elif kind == "reasoning_length":
        thought = cut_mid_word(thinking_text(parsed.prompt_text), 0.6)
        blocks = [thinking_block(parsed.model, thought)]
        stop, output = "max_tokens", parsed.max_tokens or approx_tokens(thought)
    elif kind in ("thinking", "redacted_thinking"):
        thought = thinking_text(parsed.prompt_text)
        make = thinking_block if kind == "thinking" else redacted_thinking_block
        blocks = [make(parsed.model, thought), *answer_blocks]
        output += approx_tokens(thought)
    elif kind == "tool_calls":
        blocks = [tool_use_block(f"toolu_01{uid}", TOOL_NAME, dict(TOOL_INPUT))]
        stop, output = "tool_use", approx_tokens(TOOL_NAME + json.dumps(TOOL_INPUT))
    elif kind == "content_parts":
        first, second = halves(text)
        blocks = [{"type": "text", "text": first}, {"type": "text", "text": second}]
    elif kind == "whitespace":
        blocks = [{"type": "text", "text": WHITESPACE_TEXT}]
        stop, output = "end_turn", approx_tokens(WHITESPACE_TEXT)
    elif kind == "huge_text":
        blocks = [{"type": "text", "text": huge_text(text, rule.huge_chars)}]
        stop, output = "end_turn", approx_tokens(blocks[0]["text"])
        reported = HUGE_TEXT_OUTPUT_TOKENS
    elif kind == "lone_surrogate":
        blocks = [{"type": "text", "text": with_lone_surrogate(text)}]
    elif kind == "cached_input":
        # Anthropic's input_tokens leaves out what was read from or written to the cache: the three
        # add up to the prompt.
        read = prompt // 2
        written = min(CACHE_CREATION_TOKENS, prompt - read)
        usage = {
            "input_tokens": prompt - read - written,
            "cache_creation_input_tokens": written,
            "cache_read_input_tokens": read,
            "cache_creation": {"ephemeral_5m_input_tokens": written, "ephemeral_1h_input_tokens": 0},
        }
    usage["output_tokens"] = output if reported is None else reported
    payload = {
        "id": f"msg_01{uid}",
        "type": "message",
        "role": "assistant",
        "model": parsed.model,
        "content": blocks,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": usage,
    }
    return Rendered(payload, prompt, output)


def _lie_about_usage(api: ApiName, kind: str, payload: dict[str, Any]) -> None:
    """Make a normal body's ``usage`` (or ``model``) wrong in the way fault ``kind`` says."""
    usage = payload["usage"]
    prompt_key, output_key = (
        ("prompt_tokens", "completion_tokens") if api == "openai" else ("input_tokens", "output_tokens")
    )
    if kind == "usage_negative":
        usage[prompt_key] = usage[output_key] = NEGATIVE_TOKENS
    elif kind == "usage_huge":
        usage[prompt_key] = HUGE_TOKENS
    elif kind == "usage_overflow":
        usage[prompt_key] = OVERFLOW_TOKENS
    elif kind == "usage_list":
        payload["usage"] = [1, 2]
        return
    elif kind == "model_object":
        payload["model"] = {"id": payload["model"], "version": 3}
        return
    if api == "openai":
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]


_USAGE_LIES = frozenset({"usage_negative", "usage_huge", "usage_overflow", "usage_list", "model_object"})


def render(
    api: ApiName,
    parsed: ParsedRequest,
    answer: Answer,
    uid: str,
    created: int,
    rule: FaultRule | None = None,
) -> Rendered:
    """The 200 body answering ``parsed`` with ``answer``: the normal one, or the one fault ``rule``
    asks for (``empty``, ``no_choices`` or a :data:`SHAPE_FAULTS` kind; other kinds: the normal one).
    ``created``: the OpenAI body's Unix time."""
    kind = rule.kind if rule is not None else None
    if rule is not None and kind in SHAPE_FAULTS and kind not in _USAGE_LIES:
        if api == "openai":
            return _openai_shape(rule.kind, rule, parsed, answer, uid, created)
        return _anthropic_shape(rule.kind, rule, parsed, answer, uid)
    empty = kind == "empty"
    content = "" if empty else answer.text
    truncated = answer.truncated and not empty
    if api == "openai":
        payload = openai_completion(
            f"chatcmpl-{uid}",
            created,
            parsed.model,
            content,
            truncated,
            parsed.input_tokens,
            no_choices=kind == "no_choices",
        )
        usage = payload["usage"]
        rendered = Rendered(payload, usage["prompt_tokens"], usage["completion_tokens"])
    else:
        payload = anthropic_message(
            f"msg_01{uid}",
            parsed.model,
            content,
            truncated,
            parsed.input_tokens,
            no_content=kind == "no_choices",
            tool_use=None if empty else anthropic_tool_use(parsed, answer.tool_input, uid),
        )
        usage = payload["usage"]
        rendered = Rendered(payload, usage["input_tokens"], usage["output_tokens"])
    if kind in _USAGE_LIES:
        _lie_about_usage(api, kind, payload)
    return rendered
