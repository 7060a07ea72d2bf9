"""Images on the wire: a prompt's image references (``prompts.images``) as OpenAI content parts and
Anthropic image blocks, their bytes read once per image, and their tokens estimated before a call.

A message with images keeps its text in ``content`` and its references in ``images``; the request body
puts the images first, then the text (Anthropic recommends image-then-text; OpenAI reads either way).
A local image is sent inline (OpenAI: a ``data:`` URL; Anthropic: a ``base64`` source), an ``http(s)``
image as its URL (OpenAI ``image_url.url``; Anthropic a ``url`` source): the provider fetches it.
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from threading import Lock
from typing import Any

_CACHE_ENTRIES = 32
_cache: OrderedDict[str, str] = OrderedDict()
_cache_lock = Lock()
UNKNOWN_IMAGE_TOKENS = 1_600
"""The estimate for an image whose size is unknown (sent by URL): about Anthropic's largest unresized image."""


class ImageChanged(RuntimeError):
    """An image's file no longer holds the bytes it was checked with (its hash differs)."""


def image_base64(ref: dict[str, Any]) -> str:
    """The image's bytes in base64, read from its ``file`` and checked against its ``sha256`` (a few recent
    images are kept encoded, so a prompt sent to several providers is read once)."""
    digest = str(ref["sha256"])
    with _cache_lock:
        found = _cache.get(digest)
        if found is not None:
            _cache.move_to_end(digest)
            return found
    data = Path(str(ref["file"])).read_bytes()
    if hashlib.sha256(data).hexdigest() != digest:
        raise ImageChanged(f"image {ref.get('name')} changed since the prompts were checked (its hash differs)")
    encoded = base64.b64encode(data).decode("ascii")
    with _cache_lock:
        _cache[digest] = encoded
        while len(_cache) > _CACHE_ENTRIES:
            _cache.popitem(last=False)
    return encoded


def _with_image_parts(
    messages: list[dict[str, Any]], image_part: Callable[[dict[str, Any]], dict[str, Any]]
) -> list[dict[str, Any]]:
    """``messages`` with each message that has images as a list of parts: ``image_part`` of each image, then
    its text part (the messages themselves when none has images)."""
    if not any("images" in m for m in messages):
        return messages
    out = []
    for message in messages:
        if "images" not in message:
            out.append(message)
            continue
        parts = [image_part(ref) for ref in message["images"]]
        if message["content"]:
            parts.append({"type": "text", "text": message["content"]})
        out.append({"role": message["role"], "content": parts})
    return out


def _openai_image_part(ref: dict[str, Any]) -> dict[str, Any]:
    url = ref["url"] if "url" in ref else f"data:{ref['media_type']};base64,{image_base64(ref)}"
    return {"type": "image_url", "image_url": {"url": url, "detail": ref.get("detail", "auto")}}


def _anthropic_image_part(ref: dict[str, Any]) -> dict[str, Any]:
    if "url" in ref:
        return {"type": "image", "source": {"type": "url", "url": ref["url"]}}
    return {"type": "image", "source": {"type": "base64", "media_type": ref["media_type"], "data": image_base64(ref)}}


def openai_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chat Completions messages: a message with images becomes ``image_url`` parts, then its text part."""
    return _with_image_parts(messages, _openai_image_part)


def anthropic_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages API messages: a message with images becomes ``image`` blocks, then its text block."""
    return _with_image_parts(messages, _anthropic_image_part)


def openai_image_tokens(width: int, height: int, detail: str) -> int:
    """OpenAI's documented count for an image (GPT-4o family): 85 at ``low``; else the image fitted
    within 2048x2048, its short side scaled to 768, and 85 + 170 per 512-px tile."""
    if detail == "low":
        return 85
    scale = min(1.0, 2048 / max(width, height))
    w, h = width * scale, height * scale
    scale = min(1.0, 768 / min(w, h))
    w, h = w * scale, h * scale
    return 85 + 170 * math.ceil(w / 512) * math.ceil(h / 512)


def anthropic_image_tokens(width: int, height: int) -> int:
    """Anthropic's documented estimate: width x height / 750, after fitting the long edge within 1568 px."""
    scale = min(1.0, 1568 / max(width, height))
    return math.ceil(width * scale * height * scale / 750)


def image_tokens(messages: list[dict[str, Any]]) -> int:
    """Tokens the request's images may cost: for each, the larger of the two vendors' estimates (the
    limiter's estimate before a call; the answer's usage says what it really cost)."""
    total = 0
    for message in messages:
        for ref in message.get("images", ()):
            width, height = ref.get("width"), ref.get("height")
            if not isinstance(width, int) or not isinstance(height, int):
                total += UNKNOWN_IMAGE_TOKENS
                continue
            detail = str(ref.get("detail", "auto"))
            total += max(openai_image_tokens(width, height, detail), anthropic_image_tokens(width, height))
    return total
