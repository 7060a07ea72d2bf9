"""The task shell: pydantic models of the Scale GenAI v2 task shape (``docs/format.md``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

AnnotationType = Literal["integer", "category", "text", "boolean", "ranked_choices"]


class _Shape(BaseModel):
    # Every model is dumped with exclude_none: absent optional keys stay absent, as in Scale's API.
    model_config = ConfigDict(extra="forbid")


class Annotation(_Shape):
    """One slot. ``value`` is ``null`` until a human fills it, and is always present."""

    id: str
    key: str
    type: AnnotationType
    title: str | None = None
    description: str | None = None
    labels: list[str] | None = None
    possible_values: list[int] | list[str] | None = None
    value: Any = None

    @model_serializer(mode="wrap")
    def _keep_value(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        data.setdefault("value", self.value)
        return data


class Reasoning(_Shape):
    """A reasoning block returned by a model that exposes one."""

    content: str


class Attachment(_Shape):
    """An image shown with a message (Scale's ``ImageFile``): ``url`` is the image's own ``http(s)`` URL when
    the prompt gave one, else its content-addressed copy in the run directory (``images/<sha256>.<ext>``,
    relative to the run directory); ``name`` the name the prompt file gave it."""

    url: str
    mime_type: str | None = None
    name: str | None = None
    file_size_in_bytes: int | None = None


class MessageContent(_Shape):
    """The text of a message (and optional reasoning, and the images shown with a user message)."""

    text: str
    attachments: list[Attachment] | None = None
    reasoning: list[Reasoning] | None = None


class ModelParameters(_Shape):
    """The sampling parameters an answer was made with (only the keys Scale's shape knows)."""

    model: str | None = None
    temperature: float | None = None
    max_completion_tokens: int | None = None
    top_p: float | None = None
    top_k: int | None = None


class Message(_Shape):
    """A user prompt, a shared system prompt, an earlier context answer, or a model's answer."""

    role: Literal["system", "user", "assistant"]
    content: MessageContent
    source_id: str
    model_parameters: ModelParameters | None = None
    annotations: list[Annotation] = Field(default_factory=list)


class Turn(_Shape):
    """One exchange: the user's message and the answer(s), with the turn-level preference slots."""

    id: str
    messages: list[Message]
    annotations: list[Annotation] = Field(default_factory=list)


class Thread(_Shape):
    """The conversation of a task (one per shell)."""

    id: str
    turns: list[Turn]
    annotations: list[Annotation] = Field(default_factory=list)


class Task(_Shape):
    """A task shell: the prompt, several models' answers and empty annotation slots."""

    task_id: str
    project: str
    batch: str
    status: Literal["pending", "completed", "canceled", "error", "deleted"] = "pending"
    created_at: str
    completed_at: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    threads: list[Thread]

    def to_json_dict(self) -> dict[str, Any]:
        """The shell as plain JSON data, optional keys left out where unset."""
        return self.model_dump(mode="json", exclude_none=True)

    def to_json_line(self) -> str:
        """The shell as one line of JSON (UTF-8 text, not ASCII-escaped), the same data as :meth:`to_json_dict`.

        Serialised by pydantic in one pass: about three times faster than ``json.dumps(to_json_dict())``.
        """
        return self.model_dump_json(exclude_none=True)


def final_answers(shell: dict[str, Any]) -> list[dict[str, Any]]:
    """The assistant messages of a (JSON) shell's last turn, in presentation order."""
    return [m for m in shell["threads"][0]["turns"][-1]["messages"] if m["role"] == "assistant"]
