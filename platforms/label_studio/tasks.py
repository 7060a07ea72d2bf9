"""Task shells to Label Studio tasks, and Label Studio annotations back to annotated shells.

Blinding: a delivered task's data holds only what the labeling form shows — our ``task_id`` (an opaque
hash), the prompt and the answers by position (``response_a`` …) — and the hash of each answer's text
by position (``text_sha256``, ``task_builder.answer_hash``), which names nothing the annotator does not
read. No source id, model name or the position → source mapping reaches Label Studio, where every data
field is a Data Manager column any annotator can read. Harvest joins each Label Studio task to its shell
in the run directory by ``task_id`` (``shells``), and only there: the run's shells are the only source of
text. What the task says was shown (``text_sha256``; for tasks delivered before it, the answers in
``data.shell`` or the ``response_*`` fields) must be the text of that shell, or of a version of it kept
when delivered; otherwise every annotation of the task is rejected (``answer_changed``).

Every result is checked against the slot it fills (Label Studio itself does not validate results
against the config): an unknown control, a value outside the slot's ``possible_values``, a ranking that
is not a permutation, or a required question left blank is rejected with the reason instead of
reaching a dataset. The preference the form asks once fills the slots that follow from it:
``selected_model_id`` from the Likert value (none on a tie) or from rank 1.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from platforms.label_studio.labeling_config import PROMPT_IMAGES, LabelingConfig, build_labeling_config
from task_builder.annotated import value_problem
from task_builder.answer_hash import HASH_FIELD, Hashes, answer_hashes, declared_hashes, hashes_of, pick_version
from task_builder.attachments import ImageNotShowable, prompt_attachments, shown_images
from task_builder.carried_ratings import rated_here
from task_builder.ids import position_field, position_letter
from task_builder.preference import likert_winner
from task_builder.render import RenderOptions, render_answer, render_conversation
from task_builder.shell import Task, final_answers
from task_builder.template import AnnotationTemplate, DisplayOptions

TURN_CONTROLS = {"selected": "selected_model_id", "likert": "likert_value", "justification": "justification"}


def prompt_turns(shell: dict[str, Any]) -> list[tuple[str, str]]:
    """The conversation up to the final user message as ``(role label, text)`` pairs."""
    turns = shell["threads"][0]["turns"]
    earlier = [m for t in turns[:-1] for m in t["messages"]]
    final_context = [m for m in turns[-1]["messages"] if m["role"] != "assistant"]
    who = {"system": "System", "user": "User", "assistant": "Assistant"}
    return [(who[m["role"]], str(m["content"]["text"])) for m in earlier + final_context]


def prompt_text(shell: dict[str, Any]) -> str:
    """The conversation up to the final user message, as plain text."""
    messages = prompt_turns(shell)
    if len(messages) == 1:
        return messages[0][1]
    return "\n\n".join(f"{who}: {text}" for who, text in messages)


_SHOWN_IMAGE_URL = re.compile(r"data:image/(?:png|jpeg|gif|webp);base64,[A-Za-z0-9+/]+={0,2}|https?://\S+")


def _image_url(task_id: str, index: int, url: str) -> str:
    """``url`` if it is a ``data:image/(png|jpeg|gif|webp);base64`` or ``http(s)`` URL, else a ValueError:
    only the run's own images reach the form's ``<Image>`` tags (text never does: ``task_builder.render``)."""
    if not _SHOWN_IMAGE_URL.fullmatch(url):
        raise ValueError(
            f"task {task_id}: prompt image {index}: {url[:40]!r} is not a data:image/(png|jpeg|gif|webp) or http(s) URL"
        )
    return url


def prompt_images(shell: dict[str, Any], run_dir: Path, template: AnnotationTemplate | None = None) -> list[str]:
    """The shell's prompt images as URLs an annotator's browser loads (``task_builder.attachments``): web
    URLs as they are, the run directory's copies inlined as ``data:`` URLs up to the template's
    ``display.inline_image_max_bytes``. A copy that is missing or larger stops the delivery with a
    :class:`ValueError` naming the task, the image and the setting to raise (Label Studio, as it comes,
    has nothing to serve the run directory from)."""
    limit = (template.display if template is not None else DisplayOptions()).inline_image_max_bytes
    try:
        return shown_images(shell, run_dir, inline_max_bytes=limit)
    except ImageNotShowable as exc:
        names = ", ".join(str(a.get("name") or a["url"]) for a in prompt_attachments(shell))
        raise ValueError(
            f"task {shell['task_id']}: cannot show its prompt's image(s) ({names}) to annotators: {exc}. "
            f"Raise the annotation template's display.inline_image_max_bytes (now {limit:,}) or make the "
            "image smaller; nothing was delivered"
        ) from exc


def to_label_studio(
    shell: dict[str, Any], template: AnnotationTemplate | None = None, images: Sequence[str] = ()
) -> dict[str, Any]:
    """The Label Studio task for a shell: its id, the prompt (with its images) and the answers by
    position, nothing else.

    Prompt and answers are sanitised HTML rendered from their markdown (``task_builder.render``; the form
    shows them with ``HyperText``), each with its raw text in a collapsed block. An answer of a labelled
    shape (a refusal, a cut-off: ``metadata.responses[<id>].label``) carries its label above the text, a
    cut-off a mark where it stops; the model's reasoning is added, collapsed, when ``template.display``
    asks for it. In the pairwise layout an answer rated in another pair of its prompt says so (its ratings
    are hidden here and carried at harvest: ``task_builder.carried_ratings``). ``text_sha256`` is the hash of each answer's text (not of the HTML), the binding harvest
    checks. ``images``: the prompt's images as browser-loadable URLs (:func:`prompt_images`), listed in
    ``prompt_images`` for the form's ``<Image>`` tags under the prompt (``build_labeling_config(images=True)``).
    """
    display = template.display if template is not None else DisplayOptions()
    options = RenderOptions(remote_images=display.remote_images)
    data: dict[str, Any] = {"task_id": shell["task_id"], "prompt": render_conversation(prompt_turns(shell), options)}
    if images:
        data[PROMPT_IMAGES] = [
            {"url": _image_url(shell["task_id"], index, url)} for index, url in enumerate(images, start=1)
        ]
    responses = (shell.get("metadata") or {}).get("responses") or {}
    rates = rated_here(shell)
    for position, answer in enumerate(final_answers(shell)):
        meta = responses.get(answer.get("source_id")) or {}
        reasoning = [str(block["content"]) for block in answer["content"].get("reasoning") or []]
        data[position_field(position)] = render_answer(
            answer["content"]["text"],
            label=meta.get("label"),
            shape=meta.get("shape"),
            reasoning=reasoning if display.show_reasoning else (),
            options=options,
            rated_elsewhere=rates is not None and answer.get("source_id") not in rates,
        )
    data[HASH_FIELD] = answer_hashes(shell)  # the text annotated, checked at harvest (task_builder.answer_hash)
    return {"data": data}


@dataclass
class HarvestOutcome:
    """Annotated shells made from one Label Studio task, and the annotations rejected with reasons."""

    annotated: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)


def _find_slot(slots: list[dict[str, Any]], key: str) -> dict[str, Any] | None:
    return next((slot for slot in slots if slot["key"] == key), None)


def _fill_choice(slot: dict[str, Any], raw: str) -> tuple[Any, str | None]:
    if slot["type"] == "boolean":
        if raw not in ("true", "false"):
            return None, f"'{raw}' is not a yes/no value"
        return raw == "true", None
    value: Any = raw
    if slot["type"] == "integer":
        try:
            value = int(raw)
        except ValueError:
            return None, f"'{raw}' is not a whole number"
    problem = value_problem(slot, value)
    return (None, problem) if problem else (value, None)


def _single(item: dict[str, Any]) -> tuple[str | None, str | None]:
    kind = item.get("type")
    value = item.get("value") or {}
    if kind == "choices":
        choices = value.get("choices") or []
        if len(choices) != 1:
            return None, f"expected one choice, got {len(choices)}"
        return str(choices[0]), None
    if kind == "textarea":
        texts = value.get("text") or []
        return "\n".join(str(t) for t in texts), None
    return None, f"unsupported result type '{kind}'"


def shown_hashes(data: Mapping[str, Any]) -> dict[str, Hashes]:
    """What a Label Studio task's data says about the text its annotators read, as hashes by position
    named by where they come from (the claims of :func:`task_builder.answer_hash.pick_version`).

    ``text_sha256`` when the delivery put it there; for tasks delivered before it, the answers of the
    whole shell they carried (``data.shell``), else the ``response_a`` … fields (shown then as they were).
    """
    declared = declared_hashes(data.get(HASH_FIELD))
    if declared is not None:
        return {f"the delivered {HASH_FIELD}": declared}
    if isinstance(data.get("shell"), dict):
        try:
            return {"the task's delivered shell": answer_hashes(data["shell"])}
        except (KeyError, IndexError, TypeError):
            return {"the task's delivered shell": {}}
    texts: list[str] = []
    while isinstance(data.get(position_field(len(texts))), str):
        texts.append(data[position_field(len(texts))])
    return {"the task's data": hashes_of(texts)} if texts else {}


def _run_shell(
    task_id: str, found: dict[str, Any] | Sequence[dict[str, Any]] | None, data: Mapping[str, Any]
) -> tuple[dict[str, Any] | None, list[str]]:
    """The run's version of a task that its annotators read, or None (not the run's task), and why none
    of the run's versions is the text they read (``answer_changed``)."""
    versions = [found] if isinstance(found, dict) else list(found or [])
    if not versions:
        return None, []
    return pick_version(task_id, versions, shown_hashes(data))


def harvest_task(
    ls_task: dict[str, Any],
    platform_meta: dict[str, Any],
    users: dict[int, str] | None = None,
    shells: Mapping[str, dict[str, Any] | Sequence[dict[str, Any]]] | None = None,
    template: AnnotationTemplate | None = None,
) -> HarvestOutcome:
    """Every finished annotation of a Label Studio task, validated and written into a copy of its shell.

    ``shells`` maps our task ids to the run's shells (from the run directory): one, or its versions, the
    current one first and then those kept when delivered (``flows.delivery.delivered``); the version whose
    answers are the text the task showed is used (:func:`shown_hashes`), and when none is, every
    annotation of the task is rejected as ``answer_changed``. Text is never taken from the Label Studio
    task. ``template`` says which questions are required (without it, none is checked). ``users`` maps
    Label Studio user ids to names (e-mails) for ``metadata.annotation.annotator``.
    """
    outcome = HarvestOutcome()
    data = ls_task.get("data") or {}
    task_id = str(data.get("task_id"))
    shell, changed = _run_shell(task_id, (shells or {}).get(task_id), data)
    # The form's required questions for this task's answer count: built once per task, not per annotation.
    required = (
        _required(build_labeling_config(template, len(final_answers(shell))), shell)
        if template is not None and isinstance(shell, dict)
        else []
    )
    for annotation in ls_task.get("annotations") or []:
        if annotation.get("was_cancelled"):
            continue
        annotator = _annotator(annotation, users or {})
        base = {"label_studio_task": ls_task.get("id"), "annotation_id": annotation.get("id"), "annotator": annotator}
        if not isinstance(shell, dict):
            reason = f"task {data.get('task_id')!r} is not in the run's tasks (delivered from another run?)"
            outcome.rejected.append({**base, "task_id": data.get("task_id"), "reasons": [reason]})
            continue
        if changed:
            outcome.rejected.append({**base, "task_id": task_id, "reason": "answer_changed", "reasons": changed})
            continue
        annotated, reasons = _apply(copy.deepcopy(shell), annotation.get("result") or [], required)
        if reasons:
            outcome.rejected.append({**base, "task_id": shell.get("task_id"), "reasons": reasons})
            continue
        annotated["status"] = "completed"
        annotated["completed_at"] = annotation.get("updated_at") or annotation.get("created_at")
        annotated["metadata"]["annotation"] = {
            **platform_meta,
            **base,
            "annotated_at": annotation.get("created_at"),
            "updated_at": annotation.get("updated_at"),
            "lead_time_s": annotation.get("lead_time"),
        }
        Task.model_validate(annotated)  # our own contract still holds with the values filled
        outcome.annotated.append(annotated)
    return outcome


def _required(form: LabelingConfig, shell: dict[str, Any]) -> list[str]:
    """The questions an annotation of this task must answer: the form's required ones, less the ratings of
    answers the pairwise layout rates in another pair (carried there at harvest)."""
    rates = rated_here(shell)
    if rates is None:
        return form.required
    answers = final_answers(shell)
    return [
        name
        for name in form.required
        if (position := form.controls[name].position) is None
        or "__" not in name
        or answers[position]["source_id"] in rates
    ]


def _annotator(annotation: dict[str, Any], users: dict[int, str]) -> str:
    who = annotation.get("completed_by")
    if isinstance(who, dict):
        return str(who.get("email") or who.get("id"))
    return users.get(who, str(who)) if isinstance(who, int) else str(who)


def _apply(
    shell: dict[str, Any], results: list[dict[str, Any]], required: list[str]
) -> tuple[dict[str, Any], list[str]]:
    reasons: list[str] = []
    answers = final_answers(shell)
    turn = shell["threads"][0]["turns"][-1]
    order = [m["source_id"] for m in answers]
    letters = {position_letter(i): source for i, source in enumerate(order)}
    ranks: dict[int, str] = {}
    answered: set[str] = set()
    for item in results:
        name = str(item.get("from_name", ""))
        raw, problem = _single(item)
        if problem:
            reasons.append(f"{name}: {problem}")
            continue
        assert raw is not None
        if raw.strip():
            answered.add(name)
        if name.startswith("rank_") and name[5:].isdigit():
            if raw not in letters:
                reasons.append(f"{name}: '{raw}' is not a response of this task")
            else:
                ranks[int(name[5:])] = letters[raw]
            continue
        if "__" in name:  # per-answer control: <position letter>__<slot key>
            prefix, key = name.split("__", 1)
            position = next((i for i in range(len(answers)) if position_letter(i).lower() == prefix), None)
            slot = _find_slot(answers[position]["annotations"], key) if position is not None else None
        elif name in TURN_CONTROLS:
            slot = _find_slot(turn["annotations"], TURN_CONTROLS[name])
            if name == "selected" and slot is not None:
                if raw not in letters:
                    reasons.append(f"{name}: '{raw}' is not a response of this task")
                    continue
                raw = letters[raw]  # a position letter names the answer's source id
        else:
            reasons.append(f"{name}: unknown control")
            continue
        if slot is None:
            reasons.append(f"{name}: no such slot in this task")
        elif slot["type"] == "text":
            slot["value"] = raw
        else:
            slot["value"], problem = _fill_choice(slot, raw)
            if problem:
                reasons.append(f"{name}: {problem}")
    if ranks:
        slot = _find_slot(turn["annotations"], "ranking")
        ranking = [ranks[r] for r in sorted(ranks)]
        if slot is None:
            reasons.append("ranking: no such slot in this task")
        elif sorted(ranks) != list(range(1, len(order) + 1)) or sorted(ranking) != sorted(order):
            reasons.append(f"ranking: ranks must place every response exactly once (got {ranking})")
        else:
            slot["value"] = ranking
    missing = [name for name in required if name not in answered]
    if missing:
        reasons.append(f"required question(s) left blank: {', '.join(missing)}")
    if not reasons:
        _derive_selection(turn, order)
    return shell, reasons


def _derive_selection(turn: dict[str, Any], order: list[str]) -> None:
    """Fill ``selected_model_id`` from the Likert value or rank 1 when the form did not ask it directly."""
    selected = _find_slot(turn["annotations"], "selected_model_id")
    if selected is None or selected.get("value") is not None:
        return
    likert = _find_slot(turn["annotations"], "likert_value")
    ranking = _find_slot(turn["annotations"], "ranking")
    if likert is not None and likert.get("value") is not None and len(order) == 2:
        outcome = likert_winner(likert["possible_values"], likert["value"])
        selected["value"] = order[outcome[0]] if outcome else None  # a tie selects none
    elif ranking is not None and ranking.get("value"):
        selected["value"] = ranking["value"][0]
