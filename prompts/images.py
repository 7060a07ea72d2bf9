"""The images of a prompt record: each one found, read, checked by its bytes and turned into a reference.

An image is named in a prompt file by a local path (relative to the prompt file), a storage URL
(``s3://``, ``gs://``, ``file://``, … read through ``common.storage``) or an ``http(s)://`` URL. A
local or storage image is read here, checked (an image by its bytes: PNG, JPEG, GIF or WebP; within
``prompts.max_image_bytes``; at most 8000 px a side) and referenced by its content hash:

``{"sha256", "media_type", "size", "width", "height", "detail", "name", "file"}``

``file`` is where its bytes are on this machine (the file itself, or the storage object's local copy);
``name`` the name it was given. Neither is part of a request's identity (``common.images.identity_view``).
An ``http(s)://`` image is sent as its URL (the provider fetches it): ``{"url", "detail", "name"}``,
identified by the URL; it is not downloaded, so its bytes are not checked here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from common import storage
from common.images import MAX_IMAGE_SIDE, dimensions, media_type, sha256_hex
from common.yaml_locations import resolve_path

WEB_SCHEMES = ("http://", "https://")


class ImageProblem(ValueError):
    """An image cannot be used; the message says which and why."""


def image_ref(spec: str, base: str | Path, max_bytes: int, detail: str) -> dict[str, Any]:
    """The reference of the image ``spec`` names (a path relative to ``base``, the prompt file's directory
    or URL prefix, or a URL). Raises :class:`ImageProblem`."""
    if not isinstance(spec, str) or not spec.strip():
        raise ImageProblem("an image must be a non-empty path or URL")
    if spec.startswith("data:"):
        raise ImageProblem("a data: URL is not taken here: save the image as a file and give its path")
    name = spec.rstrip("/").rsplit("/", 1)[-1]
    if spec.startswith(WEB_SCHEMES):
        return {"url": spec, "detail": detail, "name": name}
    if storage.is_url(spec) or isinstance(base, str):
        url = spec if storage.is_url(spec) else storage.join(str(base), spec)
        try:
            if not storage.exists(url):
                raise ImageProblem(f"image not found: {url}")
            file = storage.local_copy(url)
        except storage.StorageError as exc:
            raise ImageProblem(str(exc)) from None
    else:
        file = resolve_path(base, spec)
        if not file.is_file():
            raise ImageProblem(f"image not found: {file}")
    size = file.stat().st_size
    if size > max_bytes:
        raise ImageProblem(f"image {spec} is {size:,} bytes, over the limit of {max_bytes:,} (prompts.max_image_bytes)")
    data = file.read_bytes()
    kind = media_type(data)
    if kind is None:
        raise ImageProblem(f"{spec} is not a PNG, JPEG, GIF or WebP image (judged by its bytes, not its name)")
    size_px = dimensions(data)
    if size_px is None:
        raise ImageProblem(f"{spec}: its {kind} header cannot be read (a damaged image?)")
    if max(size_px) > MAX_IMAGE_SIDE or min(size_px) < 1:
        raise ImageProblem(f"{spec} is {size_px[0]}x{size_px[1]} px; the APIs take 1 to {MAX_IMAGE_SIDE} px a side")
    return {
        "sha256": sha256_hex(data),
        "media_type": kind,
        "size": size,
        "width": size_px[0],
        "height": size_px[1],
        "detail": detail,
        "name": name,
        "file": str(file),
    }


def image_base(prompt_path: str, prompt_file: Path) -> str | Path:
    """What images named by relative paths are relative to: the prompt file's URL prefix, or its directory."""
    if storage.is_url(prompt_path):
        return prompt_path.rsplit("/", 1)[0] + "/"
    return prompt_file.parent
