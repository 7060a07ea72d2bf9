"""Quality flags on an answer, recorded in the task's metadata for reviewers and filters."""

from __future__ import annotations

from providers.result import CallResult

TRUNCATED_REASONS = frozenset({"length", "max_tokens"})


def answer_flags(result: CallResult) -> list[str]:
    """``empty`` for whitespace-only text, ``truncated`` when the length limit cut the answer off."""
    flags = []
    if not (result.text or "").strip():
        flags.append("empty")
    if result.finish_reason in TRUNCATED_REASONS:
        flags.append("truncated")
    return flags
