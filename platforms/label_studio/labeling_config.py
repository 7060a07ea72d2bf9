"""The Label Studio labeling config generated from an annotation template.

Layout for a task with N answers (N = the most answers any task of the delivery has):

- the prompt (the conversation so far) as ``<Text name="prompt">``;
- per answer position (Response A, B, …): its text as ``<Text name="response_a">``, one single-choice
  ``<Choices>`` per rating/category/boolean dimension (named ``a__<key>``; every choice's ``alias`` is the
  slot value, so results carry values, not labels), a ``<TextArea>`` per text dimension and for the
  rewrite;
- turn level: the selected answer (``selected``, aliases A, B, …), the Likert scale for two answers
  (``likert``), a ranking (``ranking``: one ``<Choices>`` per rank, ``rank_1`` …) and the justification.

Source ids never appear in the config or in what annotators see: answers are shown by position only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from xml.sax.saxutils import quoteattr

from task_builder.ids import position_label
from task_builder.template import AnnotationTemplate, Dimension


def letter(position: int) -> str:
    """``0`` -> ``a``: the lower-case position letter used in names (``response_a``, ``a__overall``)."""
    return position_label(position).removeprefix("Response ").lower()


@dataclass
class ControlSpec:
    """What a control may hold, for validating harvested results (Label Studio does not)."""

    name: str
    kind: str  # "choices" or "textarea"
    slot_key: str
    position: int | None  # answer position, None for turn-level controls
    allowed: list[str] = field(default_factory=list)  # for choices: the aliases


@dataclass
class LabelingConfig:
    """The XML and the controls it declares."""

    xml: str
    controls: dict[str, ControlSpec]


def _choices(name: str, to_name: str, title: str, options: list[tuple[str, str]], description: str | None) -> str:
    hint = f' hint={quoteattr(description)}' if description else ""
    lines = [f'  <Header value={quoteattr(title)} size="6"/>']
    lines.append(f'  <Choices name="{name}" toName="{to_name}" choice="single-radio" showInline="true"{hint}>')
    lines += [f"    <Choice value={quoteattr(label)} alias={quoteattr(alias)}/>" for label, alias in options]
    lines.append("  </Choices>")
    return "\n".join(lines)


def _textarea(name: str, to_name: str, title: str, placeholder: str) -> str:
    return (
        f'  <Header value={quoteattr(title)} size="6"/>\n'
        f'  <TextArea name="{name}" toName="{to_name}" maxSubmissions="1" editable="true" rows="4" '
        f"placeholder={quoteattr(placeholder)}/>"
    )


def _dimension_options(dim: Dimension) -> list[tuple[str, str]]:
    if dim.type == "boolean":
        return [("Yes", "true"), ("No", "false")]
    values = [str(v) for v in dim.values or []]
    labels = dim.labels or values
    return list(zip(labels, values))


def build_labeling_config(template: AnnotationTemplate, answers: int) -> LabelingConfig:
    """The labeling config for tasks of up to ``answers`` answers under ``template``."""
    controls: dict[str, ControlSpec] = {}
    parts = ['<View>', f'  <Header value={quoteattr(template.display_title)}/>']
    if template.description:
        parts.append(f"  <Text name=\"instructions\" value={quoteattr(template.description)}/>")
    parts.append('  <Header value="Prompt" size="5"/>')
    parts.append('  <Text name="prompt" value="$prompt"/>')
    for position in range(answers):
        key = letter(position)
        target = f"response_{key}"
        parts.append(f'  <Header value="{position_label(position)}" size="5"/>')
        parts.append(f'  <Text name="{target}" value="${target}"/>')
        for dim in template.dimensions:
            name = f"{key}__{dim.key}"
            if dim.type == "text":
                parts.append(_textarea(name, target, dim.title, dim.description or ""))
                controls[name] = ControlSpec(name, "textarea", dim.key, position)
            else:
                options = _dimension_options(dim)
                parts.append(_choices(name, target, dim.title, options, dim.description))
                controls[name] = ControlSpec(name, "choices", dim.key, position, [alias for _, alias in options])
        if template.rewrite:
            name = f"{key}__rewrite"
            parts.append(_textarea(name, target, "Rewrite", "Rewrite this response into the ideal answer"))
            controls[name] = ControlSpec(name, "textarea", "rewrite", position)
    labels = [(position_label(i), letter(i).upper()) for i in range(answers)]
    turn = template.turn
    if answers >= 2 and turn.selected_model_id:
        parts.append(_choices("selected", "prompt", "Which response is best?", labels, None))
        controls["selected"] = ControlSpec("selected", "choices", "selected_model_id", None, [a for _, a in labels])
    if answers == 2 and turn.likert.enabled:
        scale = [(label, str(v)) for label, v in zip(turn.likert.labels_for("Response A", "Response B"), turn.likert.values)]
        parts.append(_choices("likert", "prompt", turn.likert.title, scale, None))
        controls["likert"] = ControlSpec("likert", "choices", "likert_value", None, [a for _, a in scale])
    if answers >= 2 and turn.ranking:
        for rank in range(1, answers + 1):
            name = f"rank_{rank}"
            parts.append(_choices(name, "prompt", f"Rank {rank}", labels, "Which response is at this rank?"))
            controls[name] = ControlSpec(name, "choices", "ranking", rank - 1, [a for _, a in labels])
    if turn.justification:
        parts.append(_textarea("justification", "prompt", "Justification", "Explain your judgement"))
        controls["justification"] = ControlSpec("justification", "textarea", "justification", None)
    parts.append("</View>")
    return LabelingConfig("\n".join(parts), controls)
