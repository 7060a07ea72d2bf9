"""The ``prompts`` block of a run config: where the prompts come from and how each becomes a message."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from common.config_types import ConfigInt
from common.images import DEFAULT_MAX_IMAGE_BYTES
from common.storage import is_url, local_copy
from common.yaml_locations import resolve_path


class PromptsConfig(BaseModel):
    """Where the prompts come from and how each record becomes the user message.

    ``path`` and a ``template`` given as a path are relative to the config file's directory
    (:attr:`base_dir`, set by :func:`load_config`; the working directory for a model built in code).
    """

    model_config = ConfigDict(extra="forbid")

    path: str
    format: Literal["auto", "jsonl", "csv"] = "auto"
    template: str | None = None
    max_prompt_chars: ConfigInt = Field(default=200_000, ge=1)
    # Images in prompts ("Prompts with images" in README): the largest image file taken (default 5 MiB,
    # Anthropic's limit per image; OpenAI takes more) and OpenAI's `detail` for every image sent.
    max_image_bytes: ConfigInt = Field(default=DEFAULT_MAX_IMAGE_BYTES, ge=1)
    image_detail: Literal["auto", "low", "high"] = "auto"

    _base_dir: Path = PrivateAttr(default=Path("."))

    @property
    def base_dir(self) -> Path:
        """The directory relative paths in this block are relative to: the config file's."""
        return self._base_dir

    @property
    def is_url(self) -> bool:
        """Whether ``path`` is an object-storage URL (``s3://``, ``gs://``, ``az://``, ``file://``)."""
        return is_url(self.path)

    @property
    def file(self) -> Path:
        """The prompt file on disk: ``path`` resolved against :attr:`base_dir`, or a URL's object downloaded
        whole (once per process; ``common.storage.local_copy``)."""
        if self.is_url:
            return local_copy(self.path)
        return resolve_path(self._base_dir, self.path)

    @property
    def name(self) -> str:
        """How problems name the prompt file: its URL, or its path."""
        return self.path if self.is_url else str(self.file)
