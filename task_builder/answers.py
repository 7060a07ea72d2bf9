"""What assembly reads of an answer slot and of a call's result: structural types, so that the task
builder needs nothing from the providers layer (``providers.slots.AnswerSlot`` and
``providers.result.CallResult`` fit them)."""

from __future__ import annotations

from typing import Any, Protocol


class AnswerProvider(Protocol):
    """The provider behind an answer, as a task shell records it."""

    @property
    def source_id(self) -> str: ...

    @property
    def system_prompt(self) -> str | None: ...

    def shell_model_parameters(self) -> dict[str, Any]:
        """The answer's ``model_parameters`` (only the keys the shell format allows)."""
        ...


class AnswerSlot(Protocol):
    """One answer a prompt asks for: its id in the task, its provider and its sample index (0-based)."""

    @property
    def answer_id(self) -> str: ...

    @property
    def provider(self) -> AnswerProvider: ...

    @property
    def sample(self) -> int: ...


class AnswerResult(Protocol):
    """An answer (``ok``) or the final error of a call, with what provenance records of it."""

    @property
    def ok(self) -> bool: ...
    @property
    def text(self) -> str | None: ...
    @property
    def model(self) -> str | None: ...
    @property
    def finish_reason(self) -> str | None: ...
    @property
    def input_tokens(self) -> int | None: ...
    @property
    def output_tokens(self) -> int | None: ...
    @property
    def request_id(self) -> str | None: ...
    @property
    def latency_ms(self) -> float: ...
    @property
    def attempts(self) -> int: ...
    @property
    def error_type(self) -> str | None: ...
    @property
    def error(self) -> str | None: ...
    @property
    def status_code(self) -> int | None: ...
    @property
    def created_at(self) -> str: ...
