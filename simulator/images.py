"""Image parts of a request, read and checked as the real APIs check them.

OpenAI Chat Completions: ``{"type": "image_url", "image_url": {"url", "detail"?}}`` where ``url`` is an
``http(s)`` URL or a ``data:image/<png|jpeg|gif|webp>;base64,…`` URL whose bytes are such an image;
``detail`` is ``auto``, ``low`` or ``high``. Anthropic Messages: ``{"type": "image", "source": …}`` with a
``base64`` source (``media_type`` one of the four, ``data`` an image of that type, at most 5 MB) or a
``url`` source. A malformed part is a 400 whose message follows the API's.

Each image is known by a short hash of its bytes (of its URL for a URL the simulator does not fetch),
which joins the prompt text the answer is derived from: two images give two answers, the same image the
same answer.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from typing import Any

MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
ANTHROPIC_MAX_IMAGE_BYTES = 5 * 1024 * 1024
IMAGE_TOKENS = 85
"""Input tokens the simulator counts per image (OpenAI's ``low`` detail; a flat figure)."""
_DATA_URL = re.compile(r"^data:([^;,]*)(;base64)?,(.*)$", re.DOTALL)


class ImageError(ValueError):
    """A malformed image part (the 400's message)."""


def sniff(data: bytes) -> str | None:
    """The media type of ``data`` by its magic number (the four formats the APIs take), or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _tag(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


def _decode(text: Any) -> bytes | None:
    if not isinstance(text, str):
        return None
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def openai_image(part: dict[str, Any], where: str) -> str:
    """The tag of an OpenAI ``image_url`` part (raises :class:`ImageError` as the API refuses it)."""
    image_url = part.get("image_url")
    if not isinstance(image_url, dict) or not isinstance(image_url.get("url"), str):
        raise ImageError(f"Missing required parameter: '{where}.image_url.url'.")
    detail = image_url.get("detail", "auto")
    if detail not in ("auto", "low", "high"):
        raise ImageError(
            f"Invalid value: '{detail}'. Supported values are: 'low', 'high', and 'auto'. ({where}.image_url.detail)"
        )
    url = image_url["url"]
    if url.startswith(("http://", "https://")):
        return "url-" + _tag(url.encode())
    match = _DATA_URL.match(url)
    if match is None:
        raise ImageError(
            f"Invalid image URL: '{where}.image_url.url'. Expected a valid URL or a base64-encoded data URL "
            "with an image MIME type."
        )
    mime, is_base64, payload = match.groups()
    if mime not in MEDIA_TYPES or not is_base64:
        raise ImageError(
            f"Invalid image URL: '{where}.image_url.url'. Expected a base64-encoded data URL with an image MIME "
            f"type (e.g. 'data:image/png;base64,...'), but got unsupported MIME type '{mime}'."
        )
    data = _decode(payload)
    if data is None or sniff(data) is None:
        raise ImageError("You uploaded an unsupported image. Please make sure your image is valid.")
    return _tag(data)


def anthropic_image(block: dict[str, Any], where: str) -> str:
    """The tag of an Anthropic ``image`` block (raises :class:`ImageError` as the API refuses it)."""
    source = block.get("source")
    if not isinstance(source, dict):
        raise ImageError(f"{where}.image.source: Field required")
    kind = source.get("type")
    if kind == "url":
        if not isinstance(source.get("url"), str) or not source["url"].startswith(("http://", "https://")):
            raise ImageError(f"{where}.image.source.url.url: Field required (an http or https URL)")
        return "url-" + _tag(source["url"].encode())
    if kind != "base64":
        raise ImageError(
            f"{where}.image.source: Input tag '{kind}' found using 'type' does not match any of the expected "
            "tags: 'base64', 'url'"
        )
    media_type = source.get("media_type")
    if media_type not in MEDIA_TYPES:
        raise ImageError(
            f"{where}.image.source.base64.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' "
            "or 'image/webp'"
        )
    data = _decode(source.get("data"))
    if data is None:
        raise ImageError(f"{where}.image.source.base64.data: Invalid base64 data")
    if len(data) > ANTHROPIC_MAX_IMAGE_BYTES:
        raise ImageError(
            f"{where}.image.source.base64: image exceeds 5 MB maximum: {len(data)} bytes > "
            f"{ANTHROPIC_MAX_IMAGE_BYTES} bytes"
        )
    if sniff(data) != media_type:
        raise ImageError(f"{where}.image.source.base64.data: Image does not match the provided media type {media_type}")
    return _tag(data)
