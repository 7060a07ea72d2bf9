"""Reading an answer's parts from a provider's JSON without trusting them.

The parsers of each kind (``openai_provider.completion_answer``, ``anthropic_provider.message_answer``)
use :class:`AnswerReading` for every value they take from a response body, so that whatever a server
sends becomes a value every store, file and JSON encoder accepts:

- token counts are non-negative integers below :data:`MAX_TOKEN_COUNT`; anything else (negative, a
  float such as ``1e308``, ``2**63``, a string, a usage that is a list) is recorded as unknown (None),
  and the answer is flagged ``usage_invalid``;
- text has no lone surrogates (``"\\ud800"``, which JSON can carry and UTF-8 cannot): each becomes
  U+FFFD and the answer is flagged ``text_repaired``;
- a ``model`` (or any other text field) that is not a string is kept as its JSON text, flagged
  ``model_not_text`` for the model.

Finish reasons are normalised across kinds by :func:`normal_finish_reason`.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_TOKEN_COUNT = 1_000_000_000
"""Token counts at or above this (a billion) are not real counts: recorded as unknown."""

USAGE_INVALID = "usage_invalid"
TEXT_REPAIRED = "text_repaired"
MODEL_NOT_TEXT = "model_not_text"

# The vendors' finish (stop) reasons and the common name of each; one not listed keeps its own name.
_FINISH_REASONS = {
    "stop": "stop",
    "end_turn": "stop",
    "stop_sequence": "stop",
    "length": "length",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "content_filter": "content_filter",
    "refusal": "refusal",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "tool_use": "tool_calls",
}
_SURROGATE = re.compile("[\ud800-\udfff]")


def normal_finish_reason(vendor: str | None) -> str | None:
    """The common name of a vendor's finish reason (``end_turn`` -> ``stop``, ``max_tokens`` -> ``length``,
    ``tool_use`` -> ``tool_calls``, ...); an unknown one as it is."""
    if vendor is None:
        return None
    return _FINISH_REASONS.get(vendor, vendor)


def valid_text(value: str) -> tuple[str, bool]:
    """``value`` with every lone surrogate replaced by U+FFFD, and whether any was."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", value), True
    return value, False


class AnswerReading:
    """Reads values out of one response body, collecting the flags of what it had to repair."""

    __slots__ = ("flags",)

    def __init__(self) -> None:
        self.flags: list[str] = []

    def _flag(self, flag: str) -> None:
        if flag not in self.flags:
            self.flags.append(flag)

    def text(self, value: Any) -> str | None:
        """A text field: None stays None, a string is repaired if needed, anything else becomes its JSON."""
        if value is None:
            return None
        if not isinstance(value, str):
            value = json.dumps(value, ensure_ascii=False, default=str)
        text, repaired = valid_text(value)
        if repaired:
            self._flag(TEXT_REPAIRED)
        return text

    def model(self, value: Any) -> str | None:
        """The ``model`` field: text, or the JSON of whatever else it is (flagged ``model_not_text``)."""
        if value is not None and not isinstance(value, str):
            self._flag(MODEL_NOT_TEXT)
        return self.text(value)

    def count(self, value: Any) -> int | None:
        """A token count: a non-negative integer below :data:`MAX_TOKEN_COUNT` (an integral float is taken),
        else None and the answer is flagged ``usage_invalid``. A missing count (None) is just unknown."""
        if value is None:
            return None
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < MAX_TOKEN_COUNT:
            return value
        self._flag(USAGE_INVALID)
        return None

    def mapping(self, value: Any) -> dict[str, Any]:
        """A usage object (or a part of one): a dict, else empty (flagged ``usage_invalid`` if present)."""
        if isinstance(value, dict):
            return value
        if value is not None:
            self._flag(USAGE_INVALID)
        return {}
