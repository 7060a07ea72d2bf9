"""The values humans gave, read out of annotated tasks: one :class:`Copy` per (task, annotator).

Several annotators of one task arrive as several annotated tasks with the same ``task_id``
(``docs/format.md``); each is a copy. A copy's **labels** are its filled slots that can be compared
between annotators:

- per answer, every ``integer`` (a scale: ``interval``), ``category`` and ``boolean`` (``nominal``) slot;
  its unit is ``(task_id, source_id)``;
- per turn, ``likert_value`` (``interval``) and ``selected_model_id`` (``nominal``): the preference; its
  unit is ``(task_id, "turn")``.

Free text and rankings are not labels (nothing to agree on value by value). A copy that is not
``status: "completed"`` or not shaped like a task shell is skipped and counted by the caller.

Who annotated: ``metadata.annotation.annotator``; a copy without one gets ``anonymous-<n>`` (its own
annotator, never merged with another). Time: ``metadata.annotation.lead_time_s`` (Label Studio's
``lead_time``: seconds the annotator spent on the task) when it is a non-negative number.
Gold: a task whose ``metadata.gold`` is an object holds the known values in the shape of a judge's
predictions (``{"<answer source_id>": {key: value}, "turn": {"likert_value": v, "selected_model_id": s}}``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from task_builder.annotated import final_turn

Scale = Literal["interval", "nominal"]
TURN = "turn"
_SCALES: dict[str, Scale] = {"integer": "interval", "category": "nominal", "boolean": "nominal"}
_TURN_KEYS = ("likert_value", "selected_model_id")


@dataclass(frozen=True)
class Dimension:
    """One comparable question: its key, where it sits, its scale and its possible values."""

    key: str
    level: Literal["answer", "turn"]
    scale: Scale
    domain: tuple[Any, ...]


@dataclass
class Copy:
    """One annotator's annotation of one task."""

    task_id: str
    annotator: str
    order: list[str]
    lead_time_s: float | None
    gold: dict[str, Any] | None
    category: str | None
    # (dimension key, unit source id or "turn") -> value
    values: dict[tuple[str, str], Any] = field(default_factory=dict)
    likert_scale: list[int] | None = None
    task: dict[str, Any] = field(default_factory=dict)


def _final_turn(task: dict[str, Any]) -> dict[str, Any] | None:
    turn = final_turn(task)
    return turn if turn is not None and isinstance(turn.get("annotations"), list) else None


def _domain(slot: dict[str, Any]) -> tuple[Any, ...]:
    if slot.get("type") == "boolean":
        return (False, True)
    values = slot.get("possible_values")
    return tuple(values) if isinstance(values, list) else ()


def _fits(slot: dict[str, Any], value: Any) -> bool:
    kind = slot.get("type")
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer" and (isinstance(value, bool) or not isinstance(value, int)):
        return False
    return value in _domain(slot)


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value or value < 0:
        return None
    return float(value)


def read_copies(tasks: Iterable[Any]) -> tuple[list[Copy], dict[str, Dimension], dict[str, int]]:
    """Every completed annotated task as a :class:`Copy`, the dimensions seen (first definition wins) and
    counts of what was skipped, by reason (values outside their slot are skipped one by one)."""
    copies: list[Copy] = []
    dimensions: dict[str, Dimension] = {}
    skipped: dict[str, int] = {}

    def skip(reason: str) -> None:
        skipped[reason] = skipped.get(reason, 0) + 1

    anonymous = 0
    for task in tasks:
        if not isinstance(task, dict) or not isinstance(task.get("task_id"), str):
            skip("not an annotated task")
            continue
        if task.get("status") != "completed":
            skip("not completed")
            continue
        turn = _final_turn(task)
        if turn is None:
            skip("not shaped like a task shell")
            continue
        metadata = _mapping(task.get("metadata"))
        annotation = _mapping(metadata.get("annotation"))
        annotator = annotation.get("annotator")
        if not isinstance(annotator, str) or not annotator:
            anonymous += 1
            annotator = f"anonymous-{anonymous}"
        category = _mapping(metadata.get("prompt_metadata")).get("category")
        answers = [m for m in turn["messages"] if isinstance(m, dict) and m.get("role") == "assistant"]
        copy = Copy(
            task_id=task["task_id"],
            annotator=annotator,
            order=[str(m.get("source_id")) for m in answers],
            lead_time_s=_number(annotation.get("lead_time_s")),
            gold=_mapping(metadata.get("gold")) or None,
            category=category if isinstance(category, str) and category else None,
            task=task,
        )
        located: list[tuple[str, str, dict[str, Any]]] = [
            (str(m.get("source_id")), "answer", s) for m in answers for s in m.get("annotations") or []
        ]
        located += [(TURN, "turn", s) for s in turn["annotations"] if s.get("key") in _TURN_KEYS]
        for unit, level, slot in located:
            if not isinstance(slot, dict):
                continue
            key, scale = slot.get("key"), _SCALES.get(str(slot.get("type")))
            if not isinstance(key, str) or scale is None:
                continue
            if key == "likert_value" and isinstance(slot.get("possible_values"), list):
                copy.likert_scale = list(slot["possible_values"])
            dimension = dimensions.setdefault(key, Dimension(key, level, scale, _domain(slot)))  # type: ignore[arg-type]
            extra = [v for v in _domain(slot) if v not in dimension.domain]
            if extra and dimension.scale == "nominal":  # another subset of answers: the choices grow
                dimension = dimensions[key] = Dimension(
                    key, dimension.level, "nominal", dimension.domain + tuple(extra)
                )
            value = slot.get("value")
            if value is None:
                continue
            if dimension.level != level or not _fits(slot, value) or value not in dimension.domain:
                skip(f"{key}: value outside its slot or another slot shape than earlier tasks")
                continue
            copy.values[(key, unit)] = value
        copies.append(copy)
    return copies, dimensions, skipped
