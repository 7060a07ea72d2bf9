"""What annotators get of each shape an answer can come in (README "What counts as an answer").

Every answer a provider billed for is stored (``providers.result``); this module decides, per task, how
each is presented:

| shape        | what it is                                                        | default   |
|--------------|-------------------------------------------------------------------|-----------|
| ``text``     | an answer that ended normally                                     | shown     |
| ``cut_off``  | text stopped at the length limit (finish reason ``length``)       | shown, labelled "Cut off at the length limit" |
| ``refusal``  | the model declined (``refusal`` finish reason or refusal text)    | shown, labelled "Refused" |
| ``filtered`` | the provider's content filter stopped it                          | left out  |
| ``tool_calls`` | only tool calls, no text                                        | left out  |
| ``empty``    | no visible text (whitespace only, or thinking that used the budget) | left out |
| ``too_long`` | over ``max_answer_chars``                                         | left out (always) |

Judging a refusal or a cut-off answer is preference data in its own right, so they are shown by default;
the others leave nothing to judge. ``annotation.answers`` in the run config chooses per shape. A left-out
answer keeps its place in the store and in ``metadata.left_out`` of the prompt's task (or its
``incomplete.jsonl`` record) with the reason.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from task_builder.answers import AnswerResult

Presentation = Literal["show", "leave_out"]

LABELS = {
    "cut_off": "Cut off at the length limit",
    "refusal": "Refused",
    "filtered": "Stopped by the provider's content filter",
    "tool_calls": "Tool calls only, no text",
    "empty": "No text",
    "too_long": "Too long to show",
}
"""The label annotators see next to an answer of each shape (none for ``text``)."""

REFUSAL_PLACEHOLDER = "(The model declined to answer and gave no text.)"
DEFAULT_MAX_ANSWER_CHARS = 200_000
"""About 50,000 tokens of English: longer than real answers to annotation prompts, far below what would
make a task file or an annotator's browser suffer."""


class AnswerPolicy(BaseModel):
    """``annotation.answers`` in the run config: which answer shapes annotators are shown."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    refusal: Presentation = "show"
    cut_off: Presentation = "show"
    filtered: Presentation = "leave_out"
    tool_calls: Presentation = "leave_out"
    empty: Presentation = "leave_out"
    max_answer_chars: int = Field(default=DEFAULT_MAX_ANSWER_CHARS, ge=1)

    def shape(self, result: AnswerResult) -> str:
        """The shape of an answer (``ok`` result): one of the keys of :data:`LABELS`, or ``text``."""
        finish = result.finish_reason
        text = result.text or ""
        if finish == "refusal" or result.refusal:
            return "refusal"
        if finish == "content_filter":
            return "filtered"
        if len(text) > self.max_answer_chars:
            return "too_long"
        if not text.strip():
            return "tool_calls" if result.tool_calls else "empty"
        if finish == "length":
            return "cut_off"
        return "text"

    def left_out(self, result: AnswerResult) -> str | None:
        """Why this answer is not shown to annotators (its shape's label and the rule), or None if it is."""
        shape = self.shape(result)
        if shape == "text" or (shape != "too_long" and getattr(self, shape) == "show"):
            return None
        if shape == "too_long":
            return f"{LABELS[shape]}: {len(result.text or '')} characters, max_answer_chars is {self.max_answer_chars}"
        return f"{LABELS[shape]} (annotation.answers.{shape}: leave_out)"


def shown_text(result: AnswerResult) -> str:
    """The text annotators read for an answer: its text, else its refusal text, else a placeholder for a
    refusal without words. Reasoning is never part of it."""
    text = result.text or ""
    if text.strip():
        return text
    if result.refusal:
        return result.refusal
    return REFUSAL_PLACEHOLDER if result.finish_reason == "refusal" else text
