"""The Label Studio labeling config generated from an annotation template: a form built for comparison.

Layout for a task with N answers, top to bottom (what an annotator reads first comes first):

1. the template's title and instructions, then the prompt (the conversation so far) as
   ``<Text name="prompt">``;
2. the answers side by side in one row, one column each (``response_a``, ``response_b`` …; a row wider
   than the screen scrolls sideways, it never stacks answers under each other), each with its own ratings under it: one single-choice ``<Choices>`` per rating,
   category or yes/no dimension (named ``a__<key>``), a ``<TextArea>`` per text dimension and for the
   rewrite. Every choice's ``alias`` is the slot value, so results carry values, not labels;
3. the overall comparison, asked once and only after every answer is on screen: for two answers the
   Likert preference (``likert``; ``selected_model_id`` follows from it at harvest), for more a
   ranking (``rank_1`` …; the best answer follows from rank 1) or, when the template asks for no
   ranking, a selection (``selected``);
4. the justification, last.

Every rating and the comparison are ``required`` (unless the template marks a dimension
``required: false``), so Label Studio refuses a submission that leaves one out; harvest checks the
same rule. Scales show the template's labels, and an unlabelled scale marks its ends as lowest and
highest. Hotkeys: Label Studio binds a key to every choice it finds without one (``1``-``0``, then
letters, until they run out) and prints it beside the option. Only the comparison gets keys, one per
option and meaningful (``1``-``7`` along the Likert scale, the position letter for a selection); every
other choice is given one inert combination (:data:`INERT_HOTKEY`) so that no stray key press changes a
rating, and its mark is hidden.

Source ids and model names never appear in the config or in what annotators see: answers are shown by
position only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from xml.sax.saxutils import quoteattr

from task_builder.ids import position_field, position_label, position_letter
from task_builder.template import AnnotationTemplate, Dimension

# A combination no annotator presses by accident (F19 with three modifiers), shared by every choice that
# should have no hotkey: it keeps Label Studio from binding 1-0 and letters to ratings.
INERT_HOTKEY = "ctrl+alt+shift+f19"

STYLE = """  <Style>
    .rlhf-prompt { background: #f4f6f8; border-radius: 6px; padding: 4px 12px; margin-bottom: 12px; }
    .rlhf-answers { display: flex; flex-wrap: nowrap; overflow-x: auto; gap: 12px; align-items: stretch; }
    .rlhf-answer { flex: 1 1 0; min-width: 230px; border: 1px solid #d9dde3; border-radius: 6px; padding: 4px 12px; }
    .rlhf-answer .rlhf-text { max-height: 480px; overflow-y: auto; white-space: pre-wrap; }
    .rlhf-compare { border-top: 2px solid #d9dde3; margin-top: 16px; padding-top: 4px; }
    .rlhf-quiet .lsf-hint { display: none; }
    .rlhf-answer h4, .rlhf-compare h4 { font-size: 15px !important; margin: 12px 0 2px !important; }
    .rlhf-help h4 { font-size: 13px !important; font-weight: normal !important; color: #5b6370; margin: 0 0 4px !important; }
  </Style>"""


@dataclass
class ControlSpec:
    """What a control may hold, for validating harvested results (Label Studio does not)."""

    name: str
    kind: str  # "choices" or "textarea"
    slot_key: str
    position: int | None  # answer position (or rank for ``rank_k``), None for turn-level controls
    allowed: list[str] = field(default_factory=list)  # for choices: the aliases
    required: bool = False


@dataclass
class LabelingConfig:
    """The XML and the controls it declares."""

    xml: str
    controls: dict[str, ControlSpec]

    @property
    def required(self) -> list[str]:
        """Names of the controls a submission must fill."""
        return [name for name, spec in self.controls.items() if spec.required]


@dataclass(frozen=True)
class Option:
    """One choice: what the annotator reads, the value results carry, and its hotkey."""

    label: str
    alias: str
    hotkey: str = INERT_HOTKEY


def _choices(
    name: str,
    to_name: str,
    title: str,
    options: list[Option],
    hint: str | None,
    required: bool,
    indent: str = "    ",
    where: str = "",
) -> str:
    attrs = f' name="{name}" toName="{to_name}" choice="single-radio" showInline="true"'
    if required:
        attrs += f' required="true" requiredMessage={quoteattr(f"{where}{title}: choose an option.")}'
    lines = [f'{indent}<Header value={quoteattr(title)} size="6"/>']
    if hint:
        lines.append(f'{indent}<View className="rlhf-help"><Header value={quoteattr(hint)} size="6"/></View>')
    lines.append(f"{indent}<Choices{attrs}>")
    lines += [
        f"{indent}  <Choice value={quoteattr(o.label)} alias={quoteattr(o.alias)} hotkey={quoteattr(o.hotkey)}/>"
        for o in options
    ]
    lines.append(f"{indent}</Choices>")
    return "\n".join(lines)


def _textarea(
    name: str, to_name: str, title: str, placeholder: str, required: bool, indent: str = "    ", where: str = ""
) -> str:
    extra = f' required="true" requiredMessage={quoteattr(f"{where}{title}: write an answer.")}' if required else ""
    return (
        f'{indent}<Header value={quoteattr(title)} size="6"/>\n'
        f'{indent}<TextArea name="{name}" toName="{to_name}" maxSubmissions="1" editable="true" rows="4" '
        f"placeholder={quoteattr(placeholder)}{extra}/>"
    )


def scale_options(dim: Dimension) -> list[Option]:
    """A dimension's options: its labels, else its values with the ends of a number scale marked."""
    if dim.type == "boolean":
        return [Option("Yes", "true"), Option("No", "false")]
    values = [str(v) for v in dim.values or []]
    if dim.labels:
        return [Option(label, value) for label, value in zip(dim.labels, values)]
    labels = list(values)
    if dim.type == "integer" and len(labels) >= 2:
        labels[0], labels[-1] = f"{labels[0]} (lowest)", f"{labels[-1]} (highest)"
    return [Option(label, value) for label, value in zip(labels, values)]


def _answer_column(template: AnnotationTemplate, position: int, controls: dict[str, ControlSpec]) -> list[str]:
    key = position_letter(position).lower()
    target = position_field(position)
    parts = [
        '    <View className="rlhf-answer">',
        f'    <Header value="{position_label(position)}" size="5"/>',
        '    <View className="rlhf-text">',
        f'    <Text name="{target}" value="${target}"/>',
        "    </View>",
        '    <View className="rlhf-quiet">',
    ]
    for dim in template.dimensions:
        name = f"{key}__{dim.key}"
        where = f"{position_label(position)}: "
        if dim.type == "text":
            parts.append(_textarea(name, target, dim.title, dim.description or "", dim.is_required, where=where))
            controls[name] = ControlSpec(name, "textarea", dim.key, position, required=dim.is_required)
        else:
            options = scale_options(dim)
            parts.append(_choices(name, target, dim.title, options, dim.description, dim.is_required, where=where))
            controls[name] = ControlSpec(
                name, "choices", dim.key, position, [o.alias for o in options], dim.is_required
            )
    if template.rewrite:
        name = f"{key}__rewrite"
        parts.append(
            _textarea(name, target, "Rewrite (optional)", "Rewrite this response into the ideal answer", False)
        )
        controls[name] = ControlSpec(name, "textarea", "rewrite", position)
    parts += ["    </View>", "    </View>"]
    return parts


def comparison_kind(template: AnnotationTemplate, answers: int) -> str | None:
    """Which overall question the form asks: ``likert``, ``ranking``, ``selected`` or none."""
    turn = template.turn
    if answers == 2 and turn.likert.enabled:
        return "likert"
    if answers >= 2 and turn.ranking:
        return "ranking"
    if answers >= 2 and turn.selected_model_id:
        return "selected"
    return None


def _comparison(template: AnnotationTemplate, answers: int, controls: dict[str, ControlSpec]) -> list[str]:
    kind = comparison_kind(template, answers)
    positions = [(position_label(i), position_letter(i)) for i in range(answers)]
    parts: list[str] = []
    if kind == "likert":
        likert = template.turn.likert
        labels = likert.labels_for(positions[0][0], positions[1][0])
        keys = [str(i + 1) for i in range(len(labels))] if len(labels) <= 9 else [INERT_HOTKEY] * len(labels)
        options = [Option(label, str(v), hotkey) for label, v, hotkey in zip(labels, likert.values, keys)]
        parts.append(_choices("likert", "prompt", likert.title, options, None, True, indent="  "))
        controls["likert"] = ControlSpec("likert", "choices", "likert_value", None, [o.alias for o in options], True)
    elif kind == "ranking":
        parts.append('  <View className="rlhf-quiet">')
        for rank in range(1, answers + 1):
            name = f"rank_{rank}"
            title = "Best response" if rank == 1 else ("Worst response" if rank == answers else f"Rank {rank}")
            options = [Option(label, alias) for label, alias in positions]
            parts.append(_choices(name, "prompt", title, options, None, True, indent="  "))
            controls[name] = ControlSpec(name, "choices", "ranking", rank - 1, [o.alias for o in options], True)
        parts.append("  </View>")
    elif kind == "selected":
        options = [Option(label, alias, alias.lower() if answers <= 26 else INERT_HOTKEY) for label, alias in positions]
        parts.append(_choices("selected", "prompt", "Which response is best?", options, None, True, indent="  "))
        controls["selected"] = ControlSpec(
            "selected", "choices", "selected_model_id", None, [o.alias for o in options], True
        )
    return parts


def build_labeling_config(template: AnnotationTemplate, answers: int) -> LabelingConfig:
    """The labeling config for tasks of exactly ``answers`` answers under ``template``."""
    controls: dict[str, ControlSpec] = {}
    parts = ["<View>", STYLE, f"  <Header value={quoteattr(template.display_title)}/>"]
    if template.description:
        parts.append(f'  <Text name="instructions" value={quoteattr(template.description)}/>')
    parts += [
        '  <View className="rlhf-prompt">',
        '  <Header value="Prompt" size="5"/>',
        '  <Text name="prompt" value="$prompt"/>',
        "  </View>",
        '  <View className="rlhf-answers">',
    ]
    for position in range(answers):
        parts += _answer_column(template, position, controls)
    parts.append("  </View>")
    comparison = _comparison(template, answers, controls)
    if comparison or template.turn.justification:
        parts.append('  <View className="rlhf-compare">')
        parts += comparison
        if template.turn.justification and answers >= 1:
            parts.append(_textarea("justification", "prompt", "Justification", "Explain your judgement", False, "  "))
            controls["justification"] = ControlSpec("justification", "textarea", "justification", None)
        parts.append("  </View>")
    parts.append("</View>")
    return LabelingConfig("\n".join(parts), controls)
