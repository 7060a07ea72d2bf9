"""Images by their bytes: the format (magic numbers), the pixel size (from the header) and the names used
for an image everywhere (``<sha256>.<ext>``).

Only the four formats both OpenAI's and Anthropic's APIs take are known: PNG, JPEG, GIF and WebP. The
format is read from the first bytes, never from a file name; the size from the header (PNG's IHDR, GIF's
logical screen, JPEG's first SOFn frame, WebP's VP8/VP8L/VP8X chunk). A few dozen lines, so no imaging
library (Pillow) is needed: nothing here decodes pixels.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
from pathlib import Path
from typing import Any

MEDIA_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/gif": "gif", "image/webp": "webp"}
DEFAULT_MAX_IMAGE_BYTES = 5 * 1024 * 1024
"""Anthropic's limit per image sent through the API (OpenAI's is larger): what both accept."""
IMAGES_DIR = "images"
"""Where a run directory (and a store's directory) keeps its images, one file per image: ``<sha256>.<ext>``."""
MAX_IMAGE_SIDE = 8000
"""Anthropic refuses an image wider or taller than this."""


def media_type(data: bytes) -> str | None:
    """The image's media type by its first bytes (PNG, JPEG, GIF or WebP), or None for anything else."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def dimensions(data: bytes) -> tuple[int, int] | None:
    """(width, height) in pixels from the image's header, or None when the header cannot be read."""
    kind = media_type(data)
    try:
        if kind == "image/png" and data[12:16] == b"IHDR":
            width, height = struct.unpack(">II", data[16:24])
            return int(width), int(height)
        if kind == "image/gif":
            width, height = struct.unpack("<HH", data[6:10])
            return int(width), int(height)
        if kind == "image/jpeg":
            return _jpeg_size(data)
        if kind == "image/webp":
            return _webp_size(data)
    except struct.error:
        return None
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    index = 2
    while index + 9 < len(data):
        if data[index] != 0xFF:
            return None
        marker = data[index + 1]
        if marker == 0xFF:  # fill byte
            index += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            index += 2
            continue
        (length,) = struct.unpack(">H", data[index + 2 : index + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a start-of-frame
            height, width = struct.unpack(">HH", data[index + 5 : index + 9])
            return int(width), int(height)
        index += 2 + length
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8X":
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    if chunk == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 ":
        width, height = struct.unpack("<HH", data[26:30])
        return int(width) & 0x3FFF, int(height) & 0x3FFF
    return None


def sha256_hex(data: bytes) -> str:
    """The image's identity: the SHA-256 of its bytes, in hex."""
    return hashlib.sha256(data).hexdigest()


def stored_name(sha256: str, kind: str) -> str:
    """The content-addressed file name of an image: ``<sha256>.<ext>``."""
    return f"{sha256}.{EXTENSIONS.get(kind, 'bin')}"


LOCAL_KEYS = ("file", "name")
"""Keys of an image reference that say where its bytes are on this machine and what it was called:
not part of what is sent, so not part of a request's identity."""


def identity_view(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``messages`` as they identify a request: image references without their :data:`LOCAL_KEYS` (the same
    bytes under another path are the same request). Messages without images are returned as they are."""
    if not any("images" in m for m in messages):
        return messages
    return [
        {**m, "images": [{k: v for k, v in ref.items() if k not in LOCAL_KEYS} for ref in m["images"]]}
        if "images" in m
        else m
        for m in messages
    ]


def keep_copy(ref: dict[str, Any], directory: Path) -> Path | None:
    """Copy a local image (a reference with a ``file``) into ``directory`` as ``<sha256>.<ext>`` unless it is
    there already (written once, atomically: a partial copy is never seen under the final name); returns the
    copy, or None for an image sent by URL."""
    if "file" not in ref or "sha256" not in ref:
        return None
    target = directory / stored_name(str(ref["sha256"]), str(ref["media_type"]))
    copy_once(Path(str(ref["file"])), target)
    return target


def copy_once(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target`` unless ``target`` exists (a content-addressed name: what is there is the
    same image); atomically, so a partial copy is never seen under the final name."""
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.part")
    shutil.copyfile(source, partial)
    os.replace(partial, target)
