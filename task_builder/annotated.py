"""Checks on annotated task shells (values filled by humans) read from files."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import ValidationError

from task_builder.shell import Task

_TYPES: dict[str, tuple[type, ...]] = {"integer": (int,), "category": (str,), "text": (str,), "boolean": (bool,)}


def _slots(shell: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for thread in shell.get("threads", []):
        for t, turn in enumerate(thread.get("turns", [])):
            for slot in turn.get("annotations", []):
                yield f"turns[{t}].{slot.get('key')}", slot
            for m, message in enumerate(turn.get("messages", [])):
                for slot in message.get("annotations", []):
                    yield f"turns[{t}].messages[{m}].{slot.get('key')}", slot


def annotation_problems(shell: dict[str, Any]) -> list[str]:
    """Why an annotated shell is unusable (empty list when it is fine): shape, types and allowed values."""
    try:
        Task.model_validate(shell)
    except ValidationError as exc:
        return [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5]]
    problems = []
    answer_ids = {
        m["source_id"] for thread in shell["threads"] for turn in thread["turns"][-1:] for m in turn["messages"]
        if m["role"] == "assistant"
    }
    for where, slot in _slots(shell):
        value = slot.get("value")
        if value is None:
            continue
        kind = slot.get("type")
        if kind == "ranked_choices":
            if not isinstance(value, list) or sorted(value) != sorted(answer_ids):
                problems.append(f"{where}: a ranking must list every response's source_id once")
            continue
        expected = _TYPES.get(str(kind))
        if expected is None or not isinstance(value, expected) or (kind == "integer" and isinstance(value, bool)):
            problems.append(f"{where}: {value!r} is not a valid {kind} value")
            continue
        allowed = slot.get("possible_values")
        if allowed and kind in ("integer", "category") and value not in allowed:
            problems.append(f"{where}: {value!r} is outside the allowed values {allowed}")
    return problems
