"""Judges' values as Label Studio predictions: pre-annotations an annotator starts from and may change.

A shell's ``metadata.predictions`` holds each judge's values (``docs/format.md``)::

    {<judge source_id>: {<answer source_id>: {<answer-level key>: value, ..., "rationale": text},
                         "turn": {"likert_value": int, "selected_model_id": source_id | null, ...},
                         "errors": {...}}}

:func:`prediction_results` turns one judge's values into Label Studio result items for the form
:func:`~platforms.label_studio.labeling_config.build_labeling_config` makes for the task's answer count:
one ``choices`` item per answer-level rating, category or yes/no the judge gave (``a__<key>`` on
``response_a`` …), the Likert comparison from ``turn.likert_value`` when the form asks it (two answers),
and the selection from ``turn.selected_model_id`` when the form asks ``selected``. Every value is the
alias the form's choice carries (``"3"``, ``"just_right"``, ``"true"``, a position letter), the value a
human's click produces, so :func:`~platforms.label_studio.tasks.harvest_task` reads a prediction that
nobody changed back to the judge's own values.

Left out, on purpose:

- what the form has no control for (a key the template does not rate, a ranking, a turn value for a
  form without that comparison), an answer the task does not have, ``errors``, and any value its slot
  would refuse (``value_problem``, the rule harvest applies to humans): nothing is coerced or guessed;
- free text. The judge's ``rationale`` has no place in the form: its only text boxes (the rewrite, the
  justification, text dimensions) are the human's own words, and a rationale pre-filled there would be
  harvested as the annotator's justification unless they erased it. So no rationale reaches Label
  Studio.

Blinding: a prediction refers to answers by position only (control names and position letters). The
judge's source id goes in ``model_version`` (Label Studio's name for who predicted; the labeling view
shows it on the prediction's tab), nothing else of the shell does: no answer source id, no model name,
no position map.

What annotators see (Label Studio 1.23, checked in a browser): with the project's
``show_collab_predictions`` on and its ``model_version`` set to the judge, opening a task that carries
the judge's prediction (from the Data Manager or in the "Label All Tasks" stream) starts a new
annotation with the judge's choices already selected; the annotator changes what they disagree with and
submits (the annotation records ``parent_prediction``). A task without a prediction opens empty.
Label Studio pre-fills from one model version per project and lets annotators open every prediction of
a task, so a delivery sends one judge's values (:func:`choose_judge`).

Control group: :func:`shows_predictions` splits tasks by a salted hash of their ``task_id`` into a group
delivered with the judges' values and a blind group delivered without any, so the two can be compared
(``task_builder.agreement``). The assignment depends on nothing but the task id and the mode: every
delivery and every harvest computes the same groups.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from platforms.label_studio.labeling_config import ControlSpec, LabelingConfig, build_labeling_config
from platforms.label_studio.tasks import to_label_studio
from task_builder.annotated import value_problem
from task_builder.ids import position_field, position_letter
from task_builder.shell import final_answers
from task_builder.template import AnnotationTemplate

PREDICTION_MODES = ("none", "all", "half")
DEFAULT_MODE = "all"
TURN = "turn"
TURN_KEYS = {"likert": "likert_value", "selected": "selected_model_id"}
_SPLIT_SALT = "rlhf-orchestrator/predictions-split/v1"


def shows_predictions(task_id: str, mode: str) -> bool:
    """Whether the task is delivered with the judges' predictions under ``mode``.

    ``none``: never; ``all``: always; ``half``: when the first 64 bits of SHA-256 over a fixed salt and
    the task id are even: deterministic, about one task in two, and independent of anything else in
    the task (its prompt, its answers, its order in the run).
    """
    if mode == "none":
        return False
    if mode == "all":
        return True
    if mode == "half":
        digest = hashlib.sha256(f"{_SPLIT_SALT}\0{task_id}".encode()).digest()
        return int.from_bytes(digest[:8], "big") % 2 == 0
    raise ValueError(f"unknown predictions mode {mode!r}: choose {', '.join(PREDICTION_MODES)}")


def judges_of(shell: Mapping[str, Any]) -> list[str]:
    """The judges with values in the shell's ``metadata.predictions``, in the order they are stored."""
    predictions = (shell.get("metadata") or {}).get("predictions")
    if not isinstance(predictions, dict):
        return []
    return [str(judge) for judge, values in predictions.items() if isinstance(values, dict)]


def _slot(annotations: Sequence[dict[str, Any]], key: str) -> dict[str, Any] | None:
    return next((slot for slot in annotations if slot.get("key") == key), None)


def _alias(spec: ControlSpec, slot: dict[str, Any] | None, value: Any) -> str | None:
    """The form's choice value for ``value`` in ``slot``, or None when the slot would refuse it."""
    if slot is None or value is None or value_problem(slot, value) is not None:
        return None
    if isinstance(value, bool):
        alias = "true" if value else "false"
    elif isinstance(value, int | str):
        alias = str(value)
    else:
        return None
    return alias if alias in spec.allowed else None


def _choice(name: str, to_name: str, alias: str) -> dict[str, Any]:
    return {"from_name": name, "to_name": to_name, "type": "choices", "value": {"choices": [alias]}}


def prediction_results(
    shell: dict[str, Any],
    template: AnnotationTemplate,
    judge_prediction: Mapping[str, Any],
    labeling: LabelingConfig | None = None,
) -> list[dict[str, Any]]:
    """Label Studio result items for one judge's values (see the module docstring), in form order.

    ``labeling`` is the form for this task's answer count (built from ``template`` when not given).
    """
    answers = final_answers(shell)
    labeling = labeling or build_labeling_config(template, len(answers))
    turn = shell["threads"][0]["turns"][-1]
    per_answer = [judge_prediction.get(answer["source_id"]) for answer in answers]
    turn_values = judge_prediction.get(TURN)
    letters = {answer["source_id"]: position_letter(i) for i, answer in enumerate(answers)}
    results: list[dict[str, Any]] = []
    for name, spec in labeling.controls.items():
        if spec.kind != "choices":  # free text stays the human's own (module docstring)
            continue
        if "__" in name and spec.position is not None:  # per answer: <position letter>__<slot key>
            values = per_answer[spec.position]
            if not isinstance(values, Mapping):
                continue
            slot = _slot(answers[spec.position]["annotations"], spec.slot_key)
            alias = _alias(spec, slot, values.get(spec.slot_key))
            if alias is not None:
                results.append(_choice(name, position_field(spec.position), alias))
        elif name in TURN_KEYS and isinstance(turn_values, Mapping):
            slot = _slot(turn["annotations"], TURN_KEYS[name])
            value = turn_values.get(TURN_KEYS[name])
            if name == "selected":  # a source id, shown to annotators as its position letter
                if slot is None or value is None or value_problem(slot, value) is not None or value not in letters:
                    continue
                alias = letters[value] if letters[value] in spec.allowed else None
            else:
                alias = _alias(spec, slot, value)
            if alias is not None:
                results.append(_choice(name, "prompt", alias))
    return results


def label_studio_predictions(
    shell: dict[str, Any],
    template: AnnotationTemplate,
    judges: Sequence[str] | None = None,
    labeling: LabelingConfig | None = None,
) -> list[dict[str, Any]]:
    """``[{"model_version": <judge>, "result": [...]}]`` for each judge (``judges``, in that order; default:
    every judge in the shell) with at least one value the form can show; judges without are left out."""
    predictions = (shell.get("metadata") or {}).get("predictions")
    if not isinstance(predictions, dict):
        return []
    answers = len(final_answers(shell))
    labeling = labeling or build_labeling_config(template, answers)
    out = []
    for judge in judges_of(shell) if judges is None else judges:
        values = predictions.get(judge)
        if not isinstance(values, Mapping):
            continue
        result = prediction_results(shell, template, values, labeling)
        if result:
            out.append({"model_version": judge, "result": result})
    return out


def to_label_studio_with_predictions(
    shell: dict[str, Any],
    template: AnnotationTemplate,
    judges: Sequence[str] | None = None,
    labeling: LabelingConfig | None = None,
    images: Sequence[str] = (),
) -> dict[str, Any]:
    """The blind Label Studio task (:func:`~platforms.label_studio.tasks.to_label_studio`) with the
    judges' predictions (:func:`label_studio_predictions`) when there are any. The caller decides with
    :func:`shows_predictions` whether a task gets them."""
    task = to_label_studio(shell, template, images)
    predictions = label_studio_predictions(shell, template, judges, labeling)
    if predictions:
        task["predictions"] = predictions
    return task


def choose_judge(shells: Iterable[Mapping[str, Any]], preferred: str | None = None) -> str | None:
    """The one judge whose values a delivery pre-fills: ``preferred``, else the judge with values for the
    most shells (ties: the first by name); None when no shell has any.

    One judge, because Label Studio pre-fills from one model version per project (its ``model_version``)
    and lets annotators open every prediction a task carries: predictions of several judges would show
    an annotator judges nobody meant to show, and ``predictions_shown`` would no longer say whose values
    they saw. The other judges' values stay in the run's shells (``task_builder.agreement`` compares
    each judge with the humans). ``preferred`` must be a judge of the shells when any shell has judges.
    """
    counts: dict[str, int] = {}
    for shell in shells:
        for judge in judges_of(shell):
            counts[judge] = counts.get(judge, 0) + 1
    if preferred is not None:
        if counts and preferred not in counts:
            raise ValueError(f"judge {preferred!r} has no values in these tasks (judges: {', '.join(sorted(counts))})")
        return preferred
    if not counts:
        return None
    return min(counts, key=lambda judge: (-counts[judge], judge))


def predictions_shown(
    shell: dict[str, Any],
    template: AnnotationTemplate,
    mode: str,
    prefill: str | None,
    labeling: LabelingConfig | None = None,
) -> bool | None:
    """Whether the annotator of a task started from a judge's values, or None when the shell has none
    (nothing to compare, so nothing to say).

    True when the task is in the shown group of ``mode`` (:func:`shows_predictions`) and the judge the
    project pre-fills (``prefill``, Label Studio's project ``model_version``) has values the form shows
    for it (:func:`label_studio_predictions`); Label Studio pre-fills nothing for a task without a
    prediction of that judge, even when other judges predicted it.
    """
    if not judges_of(shell):
        return None
    if prefill is None or not shows_predictions(shell["task_id"], mode):
        return False
    return bool(label_studio_predictions(shell, template, [prefill], labeling))
