"""How often humans keep a judge's values: agreement between AI pre-annotations and annotators.

Input: annotated tasks (``docs/format.md``: the humans' values in the slots) carrying judges' values in
their metadata::

    metadata.predictions = {<judge>: {<answer source_id>: {<annotation key>: value, "rationale": text},
                                      "turn": {"likert_value": int, "selected_model_id": source_id}}}
    metadata.predictions_shown = true | false    # absent (or not a boolean): unknown, counted as shown

A judge's ``likert_value`` is on the task's own orientation: its first value favours the task's first
answer (Response A), as the human's does.

A **pair** is a human value and a judge value for the same slot of one annotated task: an answer-level
key (``integer``, ``category`` and ``boolean`` slots) of one answer, or the turn's ``likert_value`` or
``selected_model_id``. Only pairs where both values are present count; several annotators of one task
arrive as several tasks and give several pairs. Free text and the ranking are not compared.

Figures per judge and dimension (:class:`Figures`):

- ``n``; ``kept``: the fraction of pairs where the human kept the judge's value exactly;
- ``mean_abs_diff``: mean ``|human - judge|``, for ordinal dimensions (integer slots, ``likert_value``);
- ``kappa``, chance-corrected agreement. Ordinal: Cohen's kappa with quadratic weights, computed on the
  values as ``1 - D_o / D_e`` (``D_o`` the mean squared difference over the pairs, ``D_e`` over all
  ``n²`` human × judge combinations). On an evenly spaced scale this is the textbook matrix form with
  weights ``(i - j)² / (k - 1)²`` (the normalisation cancels); unlike scikit-learn's default (labels
  taken from the data), a scale value nobody used does not shrink the distances around it. Nominal
  (``category``, ``boolean``, ``selected_model_id``): Cohen's kappa ``(p_o - p_e) / (1 - p_e)``.
  Undefined (both sides give one and the same value throughout, or no pairs) is ``None``.

Arithmetic is exact (fractions), so equal inputs give equal figures on every machine.

Validity: each value is checked against the task's own slot with ``value_problem`` (the rule harvest
applies). A human or judge value that does not fit is counted (``invalid_human`` / ``invalid_judge``,
among the slots the judge predicted) and its pair left out. A prediction for an answer or a key the
task does not have, and malformed predictions, are counted in the report's ``invalid_reasons``. A task
without predictions is skipped and counted (``tasks_without_predictions``); a task that is not a task
shell is ``tasks_malformed``.

Groups: ``all`` always; ``shown`` and ``blind`` as well when tasks of both kinds are present.
``honest`` is agreement with humans who did not see the judge (the blind tasks, whether or not shown
tasks exist); ``anchoring`` is shown minus blind for ``kept``, ``mean_abs_diff`` and ``kappa`` (a
positive ``kept`` difference: humans keep more of what they are shown). It estimates the anchoring
effect only when tasks were assigned to the two groups at random.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal

from task_builder.annotated import final_turn, value_problem

GROUPS = ("shown", "blind")
TURN = "turn"
RATIONALE = "rationale"
ROW_COLUMNS = ("judge", "dimension", "group", "n", "kept", "mean_abs_diff", "kappa", "invalid_human", "invalid_judge")
_SCALES: dict[str, Literal["ordinal", "nominal"]] = {"integer": "ordinal", "category": "nominal", "boolean": "nominal"}
_ROW_DIGITS = 3

Scale = Literal["ordinal", "nominal"]
Level = Literal["answer", "turn"]


# --------------------------------------------------------------------------------------------------
# Statistics


def cohen_kappa(pairs: Sequence[tuple[Hashable, Hashable]]) -> float | None:
    """Cohen's (nominal) kappa of ``(human, judge)`` pairs; None when undefined (no pairs, or both sides
    give one and the same value throughout, so chance agreement is certain)."""
    n = len(pairs)
    if n == 0:
        return None
    observed = Fraction(sum(1 for h, j in pairs if h == j), n)
    humans = Counter(h for h, _ in pairs)
    judges = Counter(j for _, j in pairs)
    expected = Fraction(sum(count * judges[value] for value, count in humans.items()), n * n)
    if expected == 1:
        return None
    return float((observed - expected) / (1 - expected))


def quadratic_weighted_kappa(pairs: Sequence[tuple[int, int]]) -> float | None:
    """Cohen's kappa with quadratic weights of integer ``(human, judge)`` pairs, on the values' own
    distances (see the module docstring); None when undefined (no pairs, or every value on both sides
    the same)."""
    n = len(pairs)
    if n == 0:
        return None
    humans = [h for h, _ in pairs]
    judges = [j for _, j in pairs]
    observed = Fraction(sum((h - j) ** 2 for h, j in pairs), n)
    # mean over all n² combinations of (h - j)²: mean(h²) + mean(j²) - 2·mean(h)·mean(j)
    expected = (
        Fraction(sum(h * h for h in humans), n)
        + Fraction(sum(j * j for j in judges), n)
        - 2 * Fraction(sum(humans), n) * Fraction(sum(judges), n)
    )
    if expected == 0:
        return None
    return float(1 - observed / expected)


@dataclass(frozen=True)
class Figures:
    """Agreement of one judge with the humans on one dimension, in one group of tasks."""

    n: int
    kept: float | None
    mean_abs_diff: float | None
    kappa: float | None
    invalid_human: int = 0
    invalid_judge: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {
            "n": self.n,
            "kept": self.kept,
            "mean_abs_diff": self.mean_abs_diff,
            "kappa": self.kappa,
            "invalid_human": self.invalid_human,
            "invalid_judge": self.invalid_judge,
        }


def figures(scale: Scale, pairs: Sequence[tuple[Any, Any]], invalid_human: int = 0, invalid_judge: int = 0) -> Figures:
    """The :class:`Figures` of ``(human, judge)`` pairs on an ``ordinal`` or ``nominal`` scale."""
    n = len(pairs)
    kept = float(Fraction(sum(1 for h, j in pairs if h == j), n)) if n else None
    if scale == "ordinal":
        diff = float(Fraction(sum(abs(h - j) for h, j in pairs), n)) if n else None
        kappa = quadratic_weighted_kappa(pairs)
    else:
        diff, kappa = None, cohen_kappa(pairs)
    return Figures(n, kept, diff, kappa, invalid_human, invalid_judge)


def _difference(shown: float | None, blind: float | None) -> float | None:
    return None if shown is None or blind is None else shown - blind


def anchoring(shown: Figures, blind: Figures) -> dict[str, float | None]:
    """Shown minus blind, per figure (None where either side has none)."""
    return {
        "kept": _difference(shown.kept, blind.kept),
        "mean_abs_diff": _difference(shown.mean_abs_diff, blind.mean_abs_diff),
        "kappa": _difference(shown.kappa, blind.kappa),
    }


# --------------------------------------------------------------------------------------------------
# Report


@dataclass(frozen=True)
class DimensionAgreement:
    """One judge on one dimension: figures per group, the honest (blind) figures and the anchoring."""

    judge: str
    dimension: str
    level: Level
    scale: Scale
    groups: dict[str, Figures]
    honest: Figures | None
    anchoring: dict[str, float | None] | None

    @property
    def kappa_kind(self) -> str:
        """``quadratic_weighted`` (ordinal) or ``cohen`` (nominal)."""
        return "quadratic_weighted" if self.scale == "ordinal" else "cohen"

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {
            "judge": self.judge,
            "dimension": self.dimension,
            "level": self.level,
            "scale": self.scale,
            "kappa_kind": self.kappa_kind,
            "groups": {name: figs.to_dict() for name, figs in self.groups.items()},
            "honest": self.honest.to_dict() if self.honest else None,
            "anchoring": self.anchoring,
        }


@dataclass(frozen=True)
class AgreementReport:
    """Agreement of every judge with the humans, per dimension, plus what was read and left out."""

    tasks_read: int
    tasks_with_predictions: int
    tasks_without_predictions: int
    tasks_malformed: int
    tasks_by_group: dict[str, int]
    tasks_shown_unknown: int
    invalid_reasons: dict[str, int]
    dimensions: list[DimensionAgreement]

    def find(self, judge: str, dimension: str) -> DimensionAgreement | None:
        """The entry of ``judge`` on ``dimension``, if any pair or invalid value was seen."""
        return next((d for d in self.dimensions if d.judge == judge and d.dimension == dimension), None)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON (no NaN: undefined figures are null)."""
        return {
            "tasks_read": self.tasks_read,
            "tasks_with_predictions": self.tasks_with_predictions,
            "tasks_without_predictions": self.tasks_without_predictions,
            "tasks_malformed": self.tasks_malformed,
            "tasks_by_group": dict(self.tasks_by_group),
            "tasks_shown_unknown": self.tasks_shown_unknown,
            "invalid_reasons": dict(sorted(self.invalid_reasons.items())),
            "dimensions": [d.to_dict() for d in self.dimensions],
        }

    def to_rows(self) -> list[dict[str, Any]]:
        """One row per judge, dimension and group (``ROW_COLUMNS``), fractions rounded to 3 digits."""
        rows = []
        for entry in self.dimensions:
            for group, figs in entry.groups.items():
                row = {"judge": entry.judge, "dimension": entry.dimension, "group": group, **figs.to_dict()}
                rows.append({column: _rounded(row[column]) for column in ROW_COLUMNS})
        return rows


def _rounded(value: Any) -> Any:
    return round(value, _ROW_DIGITS) if isinstance(value, float) else value


# --------------------------------------------------------------------------------------------------
# Collecting pairs


@dataclass
class _Bucket:
    """The pairs of one judge on one dimension in one group, and the values left out."""

    pairs: list[tuple[Any, Any]] = field(default_factory=list)
    invalid_human: int = 0
    invalid_judge: int = 0


@dataclass
class _Dimension:
    level: Level
    scale: Scale
    slot_type: str
    order: int
    buckets: dict[str, _Bucket] = field(default_factory=lambda: {g: _Bucket() for g in GROUPS})


@dataclass
class _Collector:
    tasks_read: int = 0
    tasks_with_predictions: int = 0
    tasks_without_predictions: int = 0
    tasks_malformed: int = 0
    tasks_shown_unknown: int = 0
    tasks_by_group: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    dimensions: dict[tuple[str, str], _Dimension] = field(default_factory=dict)

    def compare(self, judge: str, key: str, level: Level, slot: Mapping[str, Any], judged: Any, group: str) -> None:
        """Count one judge value against the human value of ``slot``."""
        slot_type = str(slot.get("type"))
        scale = _SCALES.get(slot_type)
        if scale is None or judged is None:  # free text, a ranking: not compared; no judge value: no pair
            return
        entry = self.dimensions.setdefault((judge, key), _Dimension(level, scale, slot_type, len(self.dimensions)))
        if entry.slot_type != slot_type:
            self.reasons[f"slot {key!r} has another type than in earlier tasks"] += 1
            return
        bucket = entry.buckets[group]
        human = slot.get("value")
        judge_bad = value_problem(dict(slot), judged) is not None
        human_bad = human is not None and value_problem(dict(slot), human) is not None
        bucket.invalid_judge += int(judge_bad)
        bucket.invalid_human += int(human_bad)
        if human is not None and not judge_bad and not human_bad:
            bucket.pairs.append((human, judged))


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _slots_by_key(annotations: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(annotations, list):
        return {}
    return {s["key"]: s for s in annotations if isinstance(s, dict) and isinstance(s.get("key"), str)}


def _answer_slots(turn: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """Each answer's slots by key, by the answer's source id."""
    return {
        m["source_id"]: _slots_by_key(m.get("annotations"))
        for m in turn["messages"]
        if isinstance(m, dict) and m.get("role") == "assistant" and isinstance(m.get("source_id"), str)
    }


def _group(metadata: dict[str, Any], collector: _Collector) -> str:
    shown = metadata.get("predictions_shown")
    if not isinstance(shown, bool):
        collector.tasks_shown_unknown += 1
    return "blind" if shown is False else "shown"


def _judge_task(collector: _Collector, judge: str, predicted: dict[str, Any], turn: dict[str, Any], group: str) -> None:
    answers = _answer_slots(turn)
    for source_id, values in predicted.items():
        level: Level = "turn" if source_id == TURN else "answer"
        if not isinstance(values, dict):
            collector.reasons[f"{level} predictions are not an object"] += 1
            continue
        if level == "answer" and source_id not in answers:
            collector.reasons["prediction for an answer the task does not have"] += 1
            continue
        slots = _slots_by_key(turn.get("annotations")) if level == "turn" else answers[source_id]
        for key, judged in values.items():
            if key == RATIONALE:
                continue
            if key not in slots:
                collector.reasons[f"prediction for a key the {level} has no slot for"] += 1
                continue
            collector.compare(judge, key, level, slots[key], judged, group)


def _read_task(collector: _Collector, task: Any) -> None:
    collector.tasks_read += 1
    if not isinstance(task, dict):
        collector.tasks_malformed += 1
        return
    metadata = _mapping(task.get("metadata"))
    predictions = metadata.get("predictions")
    if not isinstance(predictions, dict) or not predictions:
        collector.tasks_without_predictions += 1
        return
    turn = final_turn(task)
    if turn is None:
        collector.tasks_malformed += 1
        return
    collector.tasks_with_predictions += 1
    group = _group(metadata, collector)
    collector.tasks_by_group[group] += 1
    for judge, predicted in predictions.items():
        if isinstance(predicted, dict):
            _judge_task(collector, str(judge), predicted, turn, group)
        else:
            collector.reasons["predictions of a judge are not an object"] += 1


# --------------------------------------------------------------------------------------------------
# Entry point


def _entry(judge: str, key: str, dim: _Dimension, both: bool, blind_present: bool) -> DimensionAgreement:
    per_group = {g: figures(dim.scale, b.pairs, b.invalid_human, b.invalid_judge) for g, b in dim.buckets.items()}
    shown, blind = dim.buckets["shown"], dim.buckets["blind"]
    everything = figures(
        dim.scale,
        shown.pairs + blind.pairs,
        shown.invalid_human + blind.invalid_human,
        shown.invalid_judge + blind.invalid_judge,
    )
    groups = {"all": everything, **(per_group if both else {})}
    return DimensionAgreement(
        judge=judge,
        dimension=key,
        level=dim.level,
        scale=dim.scale,
        groups=groups,
        honest=per_group["blind"] if blind_present else None,
        anchoring=anchoring(per_group["shown"], per_group["blind"]) if both else None,
    )


def agreement(tasks: Iterable[Any]) -> AgreementReport:
    """How often humans kept each judge's values, per judge and dimension (see the module docstring)."""
    collector = _Collector()
    for task in tasks:
        _read_task(collector, task)
    by_group = {g: collector.tasks_by_group[g] for g in GROUPS}
    both = all(by_group.values())
    ordered = sorted(
        collector.dimensions.items(), key=lambda item: (item[0][0], item[1].level != "answer", item[1].order)
    )
    return AgreementReport(
        tasks_read=collector.tasks_read,
        tasks_with_predictions=collector.tasks_with_predictions,
        tasks_without_predictions=collector.tasks_without_predictions,
        tasks_malformed=collector.tasks_malformed,
        tasks_by_group=by_group,
        tasks_shown_unknown=collector.tasks_shown_unknown,
        invalid_reasons=dict(collector.reasons),
        dimensions=[_entry(judge, key, dim, both, by_group["blind"] > 0) for (judge, key), dim in ordered],
    )
