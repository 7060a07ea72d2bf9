"""Gold tasks: tasks whose answers are known, mixed into a delivery to score annotators.

A **gold file** is JSONL of annotated tasks (``docs/format.md``, e.g. an expert's harvested file): each
line a completed task whose filled values are the known truth, the preference (``likert_value``,
``selected_model_id`` or ``ranking``) and, optionally, ratings. :func:`gold_shell` makes a pending task
from one: every value emptied, a task id of the batch's own form (``task_<hex>``, derived from the batch
and the gold task's id, so annotators cannot tell it from the others), slot ids derived again from it,
judges' predictions and the earlier annotation removed, and the known values kept in
``metadata.gold`` (``{"<answer source_id>" | "turn": {key: value}}``: what ``task_builder.reliability``
scores annotators against). Free text is not a known value.

:func:`mix_count` is how many gold tasks make ``rate`` of a delivery of ``real`` tasks; :func:`mix`
spreads them among the real tasks at seeded positions.
"""

from __future__ import annotations

import copy
import math
import random
from typing import Any

from task_builder.ids import stable_id

_KNOWN_TYPES = ("integer", "category", "boolean", "ranked_choices")


class GoldProblem(ValueError):
    """A gold task that cannot be used, with why."""


def known_values(task: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The filled (non-text) values of an annotated task, by answer source id or ``turn``, then key."""
    turn = task["threads"][0]["turns"][-1]
    known: dict[str, dict[str, Any]] = {}
    for slot in turn.get("annotations") or []:
        if slot.get("type") in _KNOWN_TYPES and slot.get("value") is not None:
            known.setdefault("turn", {})[slot["key"]] = slot["value"]
    for message in turn.get("messages") or []:
        for slot in message.get("annotations") or []:
            if slot.get("type") in _KNOWN_TYPES and slot.get("value") is not None:
                known.setdefault(str(message.get("source_id")), {})[slot["key"]] = slot["value"]
    return known


def gold_shell(task: Any, batch: str) -> dict[str, Any]:
    """A pending task shell made from an annotated gold task (see the module docstring)."""
    if not isinstance(task, dict) or task.get("status") != "completed" or not isinstance(task.get("task_id"), str):
        raise GoldProblem("not a completed annotated task")
    try:
        known = known_values(task)
    except (KeyError, IndexError, TypeError, AttributeError):
        raise GoldProblem("not shaped like a task shell") from None
    if not any(key in known.get("turn", {}) for key in ("likert_value", "selected_model_id", "ranking")):
        raise GoldProblem("no known preference (likert_value, selected_model_id or ranking)")
    shell = copy.deepcopy(task)
    new_id = stable_id("task", batch, "gold", task["task_id"])
    shell["task_id"] = new_id
    shell["batch"] = batch
    shell["status"] = "pending"
    shell.pop("completed_at", None)
    for t, turn in enumerate(shell["threads"][0]["turns"]):
        for slot in turn.get("annotations") or []:
            slot["value"] = None
            slot["id"] = stable_id("ann", new_id, t, "turn", slot["key"])
        for m, message in enumerate(turn.get("messages") or []):
            for slot in message.get("annotations") or []:
                slot["value"] = None
                slot["id"] = stable_id("ann", new_id, t, m, slot["key"])
    metadata = shell.setdefault("metadata", {})
    for key in ("annotation", "predictions", "predictions_shown"):
        metadata.pop(key, None)
    metadata["gold"] = known
    return shell


def mix_count(real: int, rate: float, available: int) -> int:
    """How many gold tasks make ``rate`` (0 ≤ rate < 1) of a delivery with ``real`` other tasks (rounded
    up when any gold is asked for), at most ``available``."""
    if not 0 <= rate < 1:
        raise ValueError(f"the gold rate must be at least 0 and below 1, not {rate}")
    if rate == 0 or real == 0:
        return 0
    return min(available, max(1, math.ceil(rate * real / (1 - rate) - 1e-9)))


def mix(real: list[Any], gold: list[Any], seed: str) -> list[Any]:
    """``real`` in its order with ``gold`` inserted at seeded random positions."""
    rng = random.Random(seed)
    mixed = list(real)
    for item in gold:
        mixed.insert(rng.randint(0, len(mixed)), item)
    return mixed
