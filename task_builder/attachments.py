"""The images a shell shows with its prompt, as URLs a browser can load (for an annotation platform).

A shell's user message carries its images in ``content.attachments`` (``task_builder.shell.Attachment``):
an ``http(s)`` URL as the prompt file gave it, or ``images/<sha256>.<ext>``, the image's copy in the run
directory. :func:`shown_images` turns each into something an annotator's browser can load: a web URL as
it is; a run-directory copy inlined as a ``data:`` URL when it is within ``inline_max_bytes``, else
whatever ``serve`` makes of its path (a Label Studio local-files URL, a bucket's presigned URL, …).
Nothing here names a model or a source: an image's name in the run directory is its content hash.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

DEFAULT_INLINE_MAX_BYTES = 1024 * 1024
WEB_SCHEMES = ("http://", "https://")


class ImageNotShowable(ValueError):
    """A run-directory image that is missing, or too large to inline with no way given to serve it."""


def prompt_attachments(shell: dict[str, Any]) -> list[dict[str, Any]]:
    """The attachments of the shell's final user message (the prompt annotators judge the answers to)."""
    messages = shell["threads"][0]["turns"][-1]["messages"]
    users = [m for m in messages if m["role"] == "user"]
    return list(users[-1]["content"].get("attachments") or []) if users else []


def shown_images(
    shell: dict[str, Any],
    run_dir: Path,
    inline_max_bytes: int = DEFAULT_INLINE_MAX_BYTES,
    serve: Callable[[Path], str] | None = None,
) -> list[str]:
    """A browser-loadable URL for each image of the shell's prompt, in order (see the module docstring).
    Raises :class:`ImageNotShowable` for a run-directory image that is missing, or over
    ``inline_max_bytes`` without ``serve``."""
    urls = []
    for attachment in prompt_attachments(shell):
        url = str(attachment["url"])
        if url.startswith(WEB_SCHEMES):
            urls.append(url)
            continue
        path = run_dir / url
        if not path.is_file():
            raise ImageNotShowable(f"{path}: the run directory has no copy of this image")
        size = path.stat().st_size
        if size <= inline_max_bytes:
            mime = attachment.get("mime_type") or "application/octet-stream"
            urls.append(f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}")
        elif serve is not None:
            urls.append(serve(path))
        else:
            raise ImageNotShowable(
                f"{path} is {size:,} bytes, over {inline_max_bytes:,} to inline, and no way to serve it was given"
            )
    return urls
