"""Judges' values as a task's ``metadata.predictions``: kept apart from the annotation slots humans fill.

A judge's work on one prompt (:class:`Judgement`) holds its values for each answer it rated and, for
each pair of answers it compared, the Likert value oriented on the pair as asked (first answer = A).
A task shows some of the prompt's answers in its own order; :func:`task_predictions` picks the
judges' values for those answers and orients a pair's preference on the task's order::

    "predictions": {
      "<judge source_id>": {
        "<answer source_id>": {"<annotation key>": value, ..., "rationale": "..."},
        "turn": {"likert_value": 3, "selected_model_id": "<answer source_id>" | null, "rationale": "...",
                 "position_bias": {"rule": "same", "a_first": 3, "b_first_mirrored": 3}},
        "errors": {"<answer source_id>" | "turn": "why there is no prediction"}
      }
    }

``turn`` is there only for a task with exactly two answers whose template has the Likert preference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from task_builder.preference import likert_winner
from task_builder.template import AnnotationTemplate


@dataclass(slots=True)
class PairJudgement:
    """A judge's preference between two answers, asked in both orders and combined (``judging.swap_combination``).

    ``likert_value`` is on the pair's own orientation (its first answer = A); None when the two orders
    disagreed on an even scale (no prediction is made then).
    """

    likert_value: int | None
    rationale: str
    rule: str
    first: int
    swapped_mirrored: int


@dataclass(slots=True)
class Judgement:
    """One judge's work on one prompt: values per answer id, preferences per (first, second) pair, failures."""

    answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    pairs: dict[tuple[str, str], PairJudgement] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def mirrored(values: Sequence[int], value: int) -> int:
    """``value`` on the scale ``values`` read from the other end (A and B swapped)."""
    return values[len(values) - 1 - list(values).index(value)]


def _turn(template: AnnotationTemplate, order: Sequence[str], judgement: Judgement) -> dict[str, Any] | None:
    pair, flipped = judgement.pairs.get((order[0], order[1])), False
    if pair is None:
        pair, flipped = judgement.pairs.get((order[1], order[0])), True
    if pair is None or pair.likert_value is None:
        return None
    values = template.turn.likert.values
    value = mirrored(values, pair.likert_value) if flipped else pair.likert_value
    a_first, b_first = (pair.swapped_mirrored, pair.first) if flipped else (pair.first, pair.swapped_mirrored)
    if flipped:  # both readings onto the task's orientation
        a_first, b_first = mirrored(values, a_first), mirrored(values, b_first)
    turn: dict[str, Any] = {"likert_value": value}
    if template.turn.selected_model_id:
        winner = likert_winner(values, value)
        turn["selected_model_id"] = None if winner is None else order[winner[0]]
    turn["rationale"] = pair.rationale
    turn["position_bias"] = {"rule": pair.rule, "a_first": a_first, "b_first_mirrored": b_first}
    return turn


def task_predictions(
    template: AnnotationTemplate, order: Sequence[str], judgements: Mapping[str, Judgement]
) -> dict[str, Any]:
    """``metadata.predictions`` of a task showing the answers ``order`` (see the module docstring)."""
    predictions: dict[str, Any] = {}
    for judge, judgement in judgements.items():
        entry: dict[str, Any] = {aid: dict(judgement.answers[aid]) for aid in order if aid in judgement.answers}
        errors = {aid: judgement.errors[aid] for aid in order if aid in judgement.errors}
        if len(order) == 2 and template.turn.likert.enabled:
            turn = _turn(template, order, judgement)
            pair_key = "|".join(sorted(order))
            if turn is not None:
                entry["turn"] = turn
            elif pair_key in judgement.errors:
                errors["turn"] = judgement.errors[pair_key]
            elif (order[0], order[1]) in judgement.pairs or (order[1], order[0]) in judgement.pairs:
                errors["turn"] = "the judge's answers in the two orders disagreed and the scale has no middle"
        if errors:
            entry["errors"] = errors
        if entry:
            predictions[judge] = entry
    return predictions
