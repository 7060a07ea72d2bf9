"""Checks on annotated task shells (values filled by humans) read from files.

A problem is a ``(kind, message)`` pair. The kinds, most fundamental first (``REJECT_KINDS``; a line
with problems of several kinds is counted under the first):

- ``invalid_json`` / ``not_an_object``: the line is not a JSON object (found by the reader);
- ``invalid_shell``: not the task shell shape (``task_builder/shell.py``);
- ``unknown_task``: harvested against a run (``--run-dir``), a task that run did not make;
- ``answer_changed``: the answers annotated are not the run's (``task_builder.answer_hash``): the text
  that came back, or the hashes delivered with it, differ from the run's shell (and from every version
  of it kept when delivered), or a position holds another source;
- ``unknown_slot_key``: a slot the task was not built with. A slot's id derives from the task id, the
  turn, where the slot sits (the message's index, or ``turn``) and its key (``assemble._slot``), so a
  renamed key, an added slot or a slot moved to another answer no longer matches its id;
- ``invalid_value``: a value of the wrong type, outside the slot's values, or a ranking that is not a
  permutation of the answers;
- ``no_annotation``: every slot is still ``null``: nothing was annotated.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Any

from pydantic import ValidationError

from task_builder.ids import stable_id
from task_builder.shell import Task

REJECT_KINDS = (
    "invalid_json",
    "not_an_object",
    "invalid_shell",
    "unknown_task",
    "answer_changed",
    "unknown_slot_key",
    "invalid_value",
    "no_annotation",
)
Problem = tuple[str, str]

_TYPES: dict[str, tuple[type, ...]] = {"integer": (int,), "category": (str,), "text": (str,), "boolean": (bool,)}


def _slots(shell: dict[str, Any]) -> Iterator[tuple[str, str | None, dict[str, Any]]]:
    """Every slot as ``(where, the id it must have, slot)``; thread-level slots are never built (id None)."""
    task_id = shell["task_id"]
    for thread in shell["threads"]:
        for slot in thread["annotations"]:
            yield f"threads.{slot['key']}", None, slot
        for t, turn in enumerate(thread["turns"]):
            for slot in turn["annotations"]:
                yield f"turns[{t}].{slot['key']}", stable_id("ann", task_id, t, "turn", slot["key"]), slot
            for m, message in enumerate(turn["messages"]):
                for slot in message["annotations"]:
                    yield f"turns[{t}].messages[{m}].{slot['key']}", stable_id("ann", task_id, t, m, slot["key"]), slot


def final_turn(task: dict[str, Any]) -> dict[str, Any] | None:
    """The last turn of the task's thread, or None when the task is not shaped like a shell."""
    threads = task.get("threads")
    if not isinstance(threads, list) or not threads or not isinstance(threads[0], dict):
        return None
    turns = threads[0].get("turns")
    if not isinstance(turns, list) or not turns or not isinstance(turns[-1], dict):
        return None
    if not isinstance(turns[-1].get("messages"), list):
        return None
    return turns[-1]


def value_problem(slot: dict[str, Any], value: Any, answer_ids: Collection[str] | None = None) -> str | None:
    """Why ``value`` cannot fill ``slot`` (its type, its ``possible_values``; for a ranking, a permutation
    of ``answer_ids`` when given), or None. The one rule for harvest, the exports and the platforms."""
    kind = str(slot.get("type"))
    if kind == "ranked_choices":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return "a ranking must list every response's source_id once"
        if answer_ids is not None and sorted(value) != sorted(answer_ids):
            return "a ranking must list every response's source_id once"
        return None
    expected = _TYPES.get(kind)
    if expected is None:  # a slot type of the format we do not fill (no rule to apply)
        return None
    if not isinstance(value, expected) or (kind == "integer" and isinstance(value, bool)):
        return f"{value!r} is not a valid {kind} value"
    allowed = slot.get("possible_values")
    if allowed and kind in ("integer", "category") and value not in allowed:
        return f"{value!r} is outside the allowed values {allowed}"
    return None


def annotation_problems(shell: Any) -> list[Problem]:
    """Why an annotated shell is unusable, as ``(kind, message)`` pairs (empty when it is fine)."""
    if not isinstance(shell, dict):
        return [("not_an_object", f"expected a JSON object (a task shell), got {type(shell).__name__}")]
    try:
        shell = Task.model_validate(shell).model_dump(mode="json")  # every optional key present from here on
    except ValidationError as exc:
        return [("invalid_shell", f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}") for e in exc.errors()[:5]]
    answer_ids = {
        m["source_id"]
        for thread in shell["threads"]
        for turn in thread["turns"][-1:]
        for m in turn["messages"]
        if m["role"] == "assistant"
    }
    problems: list[Problem] = []
    filled = False
    for where, expected_id, slot in _slots(shell):
        if slot["id"] != expected_id:
            problems.append(
                ("unknown_slot_key", f"{where}: unknown slot key {slot['key']!r} (not a slot this task was built with)")
            )
        elif slot["value"] is not None:
            filled = True
            problem = value_problem(slot, slot["value"], answer_ids)
            if problem:
                problems.append(("invalid_value", f"{where}: {problem}"))
    if not problems and not filled:
        problems.append(("no_annotation", "no slot has a value: nothing was annotated"))
    return problems


def reject_kind(problems: list[Problem]) -> str:
    """The kind a rejected line is counted under: the most fundamental of its problems."""
    return min((kind for kind, _ in problems), key=REJECT_KINDS.index)
