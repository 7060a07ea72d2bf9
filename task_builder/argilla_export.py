"""Export task shells as files an Argilla 2.x server can load (no Argilla dependency, no server).

``write_argilla(out_dir, template, shells)`` writes two files, each atomically:

- ``settings.json``: the dataset settings in the exact shape ``rg.Settings.serialize()`` /
  ``Settings.to_json()`` produce (checked against the argilla 2.8.0 SDK), so
  ``rg.Settings.from_json("settings.json")`` loads it;
- ``records.jsonl``: one record per shell in the shape ``rg.Record.to_dict()`` produces
  (``id``, ``fields``, ``metadata``, ``suggestions``, ``responses``, ``vectors``, ``status``).

Loading, with a running server::

    settings = rg.Settings.from_json("settings.json")
    dataset = rg.Dataset(name="helpfulness-q4", settings=settings).create()
    dataset.records.log([rg.Record.from_dict(json.loads(line)) for line in open("records.jsonl")])

Mapping (decisions):

- Fields, in display order: ``context`` (a ``ChatField``, only when some shell has a system prompt or
  earlier turns; optional), ``prompt`` (``TextField``: the final user message, required),
  ``response_a``, ``response_b``, … (``TextField``, markdown, in presentation order; only
  ``response_a`` is required, so tasks with fewer answers than the widest one still load).
- Per-answer questions are named ``<key>_response_a`` … (titled "Response A: <title>"), grouped by
  response, then the turn-level questions keep the shell's slot keys: ``selected_model_id``,
  ``likert_value``, ``ranking``, ``justification``. Option values of answer choices are the field
  names (``response_a`` …); the record id is the task id, and the run's ``tasks.jsonl`` maps positions
  back to source ids.
- ``integer`` dimensions become a ``RatingQuestion`` when the scale fits what the Argilla server
  accepts (2–11 values, each 0–10); the template's value labels then go into the description, since a
  rating has no per-value labels. Wider or out-of-range scales become a ``LabelQuestion`` with the
  values as strings. ``category`` → ``LabelQuestion``; ``boolean`` → ``LabelQuestion`` with
  ``true``/``false`` (Yes/No); ``text`` and ``rewrite`` → ``TextQuestion`` (rewrite with markdown).
- The Likert scale is always a ``LabelQuestion`` (values as strings, the template's direction labels
  as texts): a bare 1–7 rating would hide which end favours which response. It is included only when
  ``max_answers == 2``, as in the shells (a Likert slot exists only for exactly two answers).
- ``selected_model_id`` → ``LabelQuestion`` over the responses; ``ranking`` → ``RankingQuestion``.
- Required: non-text questions on Response A and the turn-level non-text questions (the server
  refuses a dataset without a required question; if a template has only text questions, the first is
  required). Everything about Response B onwards is optional, for tasks with fewer answers.
- Metadata properties: ``prompt_id`` only (terms, visible). Which source wrote which response is not in
  the dataset at all: Argilla hides a metadata property from annotators in its UI but still returns it
  through its API, so a hidden property is not blind. ``allow_extra_metadata`` is false.
- Server limits checked here: names match ``^[a-z0-9_-]+$`` (template keys already do), descriptions
  are cut to 1,000 characters, option texts to 500, a ranking has at most 50 responses. Not checked:
  the server's default limit of 20,000 characters per chat message (``ARGILLA_MAX_MESSAGE_LENGTH``) in
  ``context``; a longer system prompt or earlier turn needs that server setting raised.

Checked offline (the server cannot run here), for every shipped template with 1–3 answers, with and
without context: ``rg.Settings.from_json`` of ``settings.json`` re-serialises to the identical dict and
passes ``Settings.validate()``; every line of ``records.jsonl`` loads with ``rg.Record.from_dict``
(argilla 2.8.0); fields, questions, metadata properties and records validate against the
argilla-server 2.8.0 create schemas (``FieldCreate``, ``QuestionCreate``, ``MetadataPropertyCreate``,
``RecordCreate``) and its record checks (required, extra and typed fields, declared metadata).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from common.atomic import atomic_open, write_json
from task_builder.ids import position_field, position_label
from task_builder.template import AnnotationTemplate, Dimension, resolve_template

RATING_MIN, RATING_MAX, RATING_MAX_OPTIONS = 0, 10, 11
RANKING_MAX_OPTIONS = 50
DESCRIPTION_MAX = 1000
OPTION_TEXT_MAX = 500
LABEL_MIN_VISIBLE = 3


def _cut(text: str | None, limit: int) -> str | None:
    if not text:
        return None
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _question(
    name: str, title: str, description: str | None, required: bool, settings: dict[str, Any]
) -> dict[str, Any]:
    return {
        "id": None,
        "inserted_at": None,
        "updated_at": None,
        "name": name,
        "settings": settings,
        "title": _cut(title, 500),
        "description": _cut(description, DESCRIPTION_MAX),
        "required": required,
        "dataset_id": None,
        "type": settings["type"],
    }


def _field(name: str, title: str, required: bool, kind: str = "text", description: str | None = None) -> dict[str, Any]:
    return {
        "id": None,
        "inserted_at": None,
        "updated_at": None,
        "name": name,
        "settings": {"type": kind, "use_markdown": True},
        "title": title,
        "required": required,
        "description": description,
        "dataset_id": None,
        "type": kind,
    }


def _terms(name: str, title: str, visible: bool) -> dict[str, Any]:
    return {
        "id": None,
        "inserted_at": None,
        "updated_at": None,
        "name": name,
        "settings": {"visible_for_annotators": visible, "type": "terms", "values": None},
        "title": title,
        "visible_for_annotators": visible,
        "dataset_id": None,
    }


def _labels(options: list[tuple[str, str]]) -> dict[str, Any]:
    if len(options) < 2:
        raise ValueError("a label question needs at least two options")
    return {
        "type": "label_selection",
        "options": [{"value": value, "text": _cut(text, OPTION_TEXT_MAX) or value} for value, text in options],
        "visible_options": len(options) if len(options) >= LABEL_MIN_VISIBLE else None,
    }


def _fits_rating(values: list[int]) -> bool:
    return 2 <= len(values) <= RATING_MAX_OPTIONS and all(RATING_MIN <= v <= RATING_MAX for v in values)


def _dimension_settings(dim: Dimension) -> tuple[dict[str, Any], str | None]:
    """The question settings of a dimension, and the description (with a scale legend if needed)."""
    description = dim.description
    values = list(dim.values or [])
    labels = dim.labels or [str(v) for v in values]
    if dim.type == "integer":
        if _fits_rating(values):  # type: ignore[arg-type]
            legend = "; ".join(f"{v} = {label}" for v, label in zip(values, labels) if label != str(v))
            if legend:
                description = f"{description} Scale: {legend}." if description else f"Scale: {legend}."
            return {"type": "rating", "options": [{"value": v} for v in values]}, description
        return _labels([(str(v), label) for v, label in zip(values, labels)]), description
    if dim.type == "category":
        return _labels([(str(v), label) for v, label in zip(values, labels)]), description
    if dim.type == "boolean":
        return _labels([("true", "Yes"), ("false", "No")]), description
    return {"type": "text", "use_markdown": False}, description


def argilla_dataset(template: AnnotationTemplate | str, max_answers: int, context: bool = False) -> dict[str, Any]:
    """Argilla 2.x dataset settings (``rg.Settings`` serialised) for tasks of ``template``.

    ``max_answers`` is the most answers a task has (one response field each); ``context`` adds the
    optional chat field for system prompts and earlier turns.
    """
    template = resolve_template(template)
    if max_answers < 1:
        raise ValueError("max_answers must be at least 1")
    positions = [(position_field(i), position_label(i)) for i in range(max_answers)]

    fields: list[dict[str, Any]] = []
    if context:
        fields.append(
            _field(
                "context",
                "Conversation so far",
                False,
                kind="chat",
                description="The system prompt and earlier turns, if any.",
            )
        )
    fields.append(_field("prompt", "Prompt", True))
    fields.extend(_field(name, label, index == 0) for index, (name, label) in enumerate(positions))

    questions: list[dict[str, Any]] = []
    for index, (name, label) in enumerate(positions):
        for dim in template.dimensions:
            settings, description = _dimension_settings(dim)
            required = index == 0 and settings["type"] != "text"
            questions.append(_question(f"{dim.key}_{name}", f"{label}: {dim.title}", description, required, settings))
        if template.rewrite:
            questions.append(
                _question(
                    f"rewrite_{name}",
                    f"{label}: Rewrite",
                    "Rewrite this response into the ideal answer (leave empty if it needs no change).",
                    False,
                    {"type": "text", "use_markdown": True},
                )
            )
    turn = template.turn
    answer_options = [(name, label) for name, label in positions]
    if turn.selected_model_id and max_answers >= 2:
        questions.append(_question("selected_model_id", "Which response is best?", None, True, _labels(answer_options)))
    if turn.likert.enabled and max_answers == 2:
        texts = turn.likert.labels_for(positions[0][1], positions[1][1])
        questions.append(
            _question(
                "likert_value",
                turn.likert.title,
                f"{texts[0]} … {texts[-1]}.",
                True,
                _labels([(str(v), text) for v, text in zip(turn.likert.values, texts)]),
            )
        )
    if turn.ranking and max_answers >= 2:
        if max_answers > RANKING_MAX_OPTIONS:
            raise ValueError(f"Argilla ranks at most {RANKING_MAX_OPTIONS} responses, tasks have {max_answers}")
        questions.append(
            _question(
                "ranking",
                "Rank the responses from best to worst",
                None,
                True,
                {"type": "ranking", "options": [{"value": n, "text": t} for n, t in answer_options]},
            )
        )
    if turn.justification:
        questions.append(
            _question(
                "justification",
                "Justification",
                "Explain your judgement.",
                False,
                {"type": "text", "use_markdown": False},
            )
        )
    if not questions:
        raise ValueError(f"template {template.name!r} asks no question for {max_answers} answer(s)")
    if not any(q["required"] for q in questions):
        questions[0]["required"] = True

    metadata = [_terms("prompt_id", "Prompt id", True)]

    guidelines = template.description or template.display_title
    guidelines += "\n\nThe responses are shown in a random order and without model names; judge each on its own merits."
    return {
        "guidelines": guidelines,
        "questions": questions,
        "fields": fields,
        "vectors": [],
        "metadata": metadata,
        "allow_extra_metadata": False,
        "distribution": {"strategy": "overlap", "min_submitted": 1},
        "mapping": None,
    }


def _split(shell: dict[str, Any]) -> tuple[list[dict[str, str]], str, list[dict[str, Any]]]:
    """(context messages, final user prompt, answers) of a shell."""
    turns = shell["threads"][0]["turns"]
    context: list[dict[str, str]] = []
    for turn in turns[:-1]:
        context.extend({"role": m["role"], "content": m["content"]["text"]} for m in turn["messages"])
    final = turns[-1]["messages"]
    answers = [m for m in final if m["role"] == "assistant"]
    before = [m for m in final if m["role"] != "assistant"]
    if not before or before[-1]["role"] != "user":
        raise ValueError(f"task {shell.get('task_id')}: the last turn does not start with a user message")
    context.extend({"role": m["role"], "content": m["content"]["text"]} for m in before[:-1])
    return context, before[-1]["content"]["text"], answers


def argilla_records(shells: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """One Argilla record (``rg.Record.to_dict()`` shape) per shell, answers in presentation order."""
    for shell in shells:
        context, prompt, answers = _split(shell)
        fields: dict[str, Any] = {}
        if context:
            fields["context"] = context
        fields["prompt"] = prompt
        metadata: dict[str, Any] = {}
        prompt_id = shell.get("metadata", {}).get("prompt_id")
        if prompt_id is not None:
            metadata["prompt_id"] = prompt_id
        for index, answer in enumerate(answers):
            fields[position_field(index)] = answer["content"]["text"]
        yield {
            "id": shell["task_id"],
            "fields": fields,
            "metadata": metadata,
            "suggestions": {},
            "responses": {},
            "vectors": {},
            "status": "pending",
        }


def write_argilla(
    out_dir: str | Path,
    template: AnnotationTemplate | str,
    shells: Iterable[dict[str, Any]],
    max_answers: int | None = None,
) -> dict[str, Path]:
    """Write ``settings.json`` and ``records.jsonl`` for Argilla; returns name → path.

    Records stream; the settings follow from the widest task seen (or ``max_answers``, which must be at
    least that). Neither file appears unless both are complete.
    """
    out = Path(out_dir)
    records_path, settings_path = out / "records.jsonl", out / "settings.json"
    widest, has_context = 0, False
    with atomic_open(records_path) as handle:
        for record in argilla_records(shells):
            answers = sum(1 for key in record["fields"] if key.startswith("response_"))
            widest = max(widest, answers)
            has_context = has_context or "context" in record["fields"]
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        if max_answers is not None and max_answers < widest:
            raise ValueError(f"max_answers={max_answers}, but a task has {widest} answers")
        size = max_answers if max_answers is not None else widest
        if size < 1:
            raise ValueError("no tasks to export (and no max_answers given)")
        write_json(settings_path, argilla_dataset(template, size, context=has_context))
    return {"settings": settings_path, "records": records_path}
