"""Blind copies of task shells for file deliveries, and the way back after annotation.

A blind shell is the shell an annotation vendor receives: the answers of the final turn carry their
position (``response_a``, ``response_b`` …) as ``source_id`` instead of the provider's, no
``model_parameters``, the turn's ``selected_model_id`` choices are those positions, and ``metadata``
keeps only the prompt id and the hash of each answer's text by position (``text_sha256``,
``task_builder.answer_hash``: it names nothing the annotator does not read, and harvest checks with it
that the annotation was made on the run's text). Slot ids are unchanged (they derive from the task id,
the position and the key, never from the source), so :func:`unblind` writes the values a vendor returns into the run's own
shell slot by slot and maps positions back to source ids. The mapping never leaves the run directory.
"""

from __future__ import annotations

import copy
from typing import Any

from task_builder.answer_hash import HASH_FIELD, answer_hashes
from task_builder.ids import position_field
from task_builder.shell import final_answers


def blind(shell: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``shell`` that names no model or source (see the module docstring)."""
    blinded = copy.deepcopy(shell)
    answers = final_answers(blinded)
    to_position = {answer["source_id"]: position_field(i) for i, answer in enumerate(answers)}
    for answer in answers:
        answer["source_id"] = to_position[answer["source_id"]]
        answer.pop("model_parameters", None)
    for slot in blinded["threads"][0]["turns"][-1]["annotations"]:
        if slot["key"] == "selected_model_id" and slot.get("possible_values"):
            slot["possible_values"] = [to_position.get(v, v) for v in slot["possible_values"]]
    prompt_id = (shell.get("metadata") or {}).get("prompt_id")
    blinded["metadata"] = {"prompt_id": prompt_id} if prompt_id is not None else {}
    blinded["metadata"][HASH_FIELD] = answer_hashes(shell)
    return blinded


def is_blind(shell: dict[str, Any]) -> bool:
    """Whether the final turn's answers carry positions instead of source ids."""
    answers = final_answers(shell)
    return bool(answers) and all(a.get("source_id") == position_field(i) for i, a in enumerate(answers))


def _slots(shell: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for thread in shell["threads"]:
        for turn in thread["turns"]:
            for slot in turn["annotations"]:
                found[slot["id"]] = slot
            for message in turn["messages"]:
                for slot in message["annotations"]:
                    found[slot["id"]] = slot
    return found


def unblind(annotated: dict[str, Any], original: dict[str, Any]) -> dict[str, Any]:
    """The run's shell with the values of an annotated shell written in, positions mapped back.

    Used for blind and non-blind shells alike: the text, sources and provenance always come from the
    run's ``original`` (the caller has checked the annotated answers are its answers), never from what
    came back.

    A slot the original does not have is carried over as it is, so the annotated-shell checks reject it
    (``unknown_slot_key``) as they would for any shell; ``status``, ``completed_at`` and the vendor's
    ``metadata.annotation`` are kept.
    """
    result = copy.deepcopy(original)
    to_source = {position_field(i): answer["source_id"] for i, answer in enumerate(final_answers(original))}
    targets = _slots(result)
    for slot_id, slot in _slots(annotated).items():
        value = slot.get("value")
        if slot["key"] == "selected_model_id" and isinstance(value, str):
            value = to_source.get(value, value)
        elif slot["key"] == "ranking" and isinstance(value, list):
            value = [to_source.get(v, v) if isinstance(v, str) else v for v in value]
        if slot_id in targets:
            targets[slot_id]["value"] = value
        else:
            result["threads"][0]["annotations"].append({**slot, "value": value})
    for key in ("status", "completed_at"):
        if key in annotated:
            result[key] = annotated[key]
    annotation = (annotated.get("metadata") or {}).get("annotation")
    if annotation is not None:
        result["metadata"]["annotation"] = annotation
    return result
