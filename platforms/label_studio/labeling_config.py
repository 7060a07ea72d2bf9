"""The Label Studio labeling config generated from an annotation template: a form built for comparison.

Layout for a task with N answers, top to bottom (what an annotator reads first comes first):

1. the template's title and instructions, a line on the keyboard, then the prompt (the conversation so
   far) as ``<HyperText name="prompt">``: the sanitised HTML rendered at delivery (``task_builder.render``);
   under it, when the form is built with ``images``, the prompt's images side by side (an ``<Image>`` per
   entry of the task's ``prompt_images``, in a ``<Repeater>``: Label Studio's HyperText drops ``data:``
   image sources, its ``<Image>`` shows them);
2. the answers side by side in one row, one column each (``response_a``, ``response_b`` …, HyperText too;
   a row wider than the screen scrolls sideways, it never stacks answers under each other), each with
   its own ratings under it: one compact row per rating, category or yes/no dimension (a single-choice
   ``<Choices>`` named ``a__<key>``: number scales show their numbers, the labels are hover hints; the
   options stay on one line), a ``<TextArea>`` per text dimension and for the rewrite. Every choice's
   ``alias`` is the slot value, so results carry values, not labels;
3. the overall comparison, asked once and only after every answer is on screen: for two answers the
   Likert preference (``likert``; ``selected_model_id`` follows from it at harvest), for more a
   ranking (``rank_1`` …; the best answer follows from rank 1) or, when the template asks for no
   ranking, a selection (``selected``);
4. the justification, last.

Every rating and the comparison are ``required`` (unless the template marks a dimension
``required: false``), so Label Studio refuses a submission that leaves one out; harvest checks the
same rule. In the pairwise layout (``carried``) only the comparison is required in the form: a pair
rates some of its answers only, and harvest checks the ratings per task. An unlabelled number scale
marks its ends as lowest and highest.

Hotkeys: every question gets its own run of keys along one keyboard row, one key per option left to
right (:func:`plan_hotkeys`; the comparison first, on the digits), written after its title; Ctrl+Enter
submits. Label Studio's own ``[key]`` marks beside options are hidden (the title says it once).
Label Studio's side panels, which this form does not use, are hidden by its CSS.

Source ids and model names never appear in the config or in what annotators see: answers are shown by
position only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from xml.sax.saxutils import quoteattr

from task_builder.ids import position_field, position_label, position_letter
from task_builder.render import stylesheet
from task_builder.template import AnnotationTemplate, Dimension

# A combination no annotator presses by accident (F19 with three modifiers), shared by every choice that
# should have no hotkey: it keeps Label Studio from binding 1-0 and letters to ratings.
INERT_HOTKEY = "ctrl+alt+shift+f19"

# Hotkeys: every question gets a run of keys along one keyboard row, left to right for its options in
# order, in these layers (modifiers) and rows; the first question (the comparison) gets the digits.
KEY_LAYERS = ("", "shift+", "ctrl+alt+", "ctrl+alt+shift+", "alt+shift+", "ctrl+shift+")
KEY_ROWS = ("1234567890-=", "qwertyuiop[]", "asdfghjkl;'", "zxcvbnm,./")
# Never given out: Label Studio's own hotkeys (1.23: "u" unselects; shift+1/2, shift+r, ctrl+shift+a/z act on
# regions and history) and combinations browsers keep for themselves (Chrome's ctrl+shift+ and alt+shift+ ones).
RESERVED_KEYS = frozenset(
    {"u", "shift+1", "shift+2", "shift+r", "ctrl+shift+a", "ctrl+shift+z"}
    | {f"ctrl+shift+{k}" for k in "qwertyuiop[]asdfghjkl;'zxcvbnm,./"}
    | {f"alt+shift+{k}" for k in "ait"}
)
_LAYER_MARK = {"": "", "shift+": "Shift+", "ctrl+alt+": "Ctrl+Alt+", "ctrl+alt+shift+": "Ctrl+Alt+Shift+",
               "alt+shift+": "Alt+Shift+", "ctrl+shift+": "Ctrl+Shift+"}  # fmt: skip


def plan_hotkeys(questions: list[tuple[str, int]]) -> dict[str, list[str]]:
    """Keys for each ``(control name, option count)`` in order: a run of consecutive keys on one row of one
    layer, none of them in :data:`RESERVED_KEYS`, in the first row (layers and rows in order) with room for
    it after the runs already given. A question left without keys (none left) is not in the result."""
    slots = [(layer, row) for layer in KEY_LAYERS for row in KEY_ROWS]
    used = [0] * len(slots)
    plan: dict[str, list[str]] = {}
    for name, count in questions:
        for index, (layer, row) in enumerate(slots):
            found = next(
                (
                    start
                    for start in range(used[index], len(row) - count + 1)
                    if not RESERVED_KEYS & {f"{layer}{key}" for key in row[start : start + count]}
                ),
                None,
            )
            if found is not None:
                plan[name] = [f"{layer}{key}" for key in row[found : found + count]]
                used[index] = found + count
                break
    return plan


def keys_label(keys: list[str]) -> str:
    """How a question's keys are written beside its title: ``1–7``, ``Shift+Q–U``, ``Ctrl+Alt+A–D``."""
    layer = next(prefix for prefix in sorted(_LAYER_MARK, key=len, reverse=True) if keys[0].startswith(prefix))
    first, last = keys[0][len(layer) :].upper(), keys[-1][len(layer) :].upper()
    return f"{_LAYER_MARK[layer]}{first}" if len(keys) == 1 else f"{_LAYER_MARK[layer]}{first}–{last}"


FORM_CSS = """
    .rlhf-prompt { background: #f4f6f8; border-radius: 6px; padding: 4px 12px; margin-bottom: 10px; }
    .rlhf-images div[class=''] div[class=''] { display: inline-block; vertical-align: top; width: 260px;
      margin: 0 10px 8px 0; background: #fff; border: 1px solid #d9dde3; border-radius: 4px; }
    .rlhf-images .lsf-toolbar { display: none; }
    .rlhf-answers { display: flex; flex-wrap: nowrap; overflow-x: auto; gap: 10px; align-items: stretch; }
    .rlhf-answer { flex: 1 1 0; min-width: 300px; border: 1px solid #d9dde3; border-radius: 6px; padding: 2px 10px; }
    .rlhf-answer .rlhf-text { max-height: 460px; overflow-y: auto; }
    .rlhf-compare { border-top: 2px solid #d9dde3; margin-top: 12px; padding-top: 4px; }
    .rlhf-quiet .lsf-hint, .rlhf-compact .lsf-hint { display: none; }
    .rlhf-answer h4, .rlhf-compare h4 { font-size: 15px !important; margin: 8px 0 2px !important; }
    .rlhf-help h4 { font-size: 13px !important; font-weight: normal !important; color: #5b6370; margin: 0 0 4px !important; }
    .rlhf-keys h4 { font-size: 12px !important; font-weight: normal !important; color: #3b4350; margin: 0 0 6px !important; }
    .rlhf-guide h4 { font-size: 12px !important; font-weight: normal !important; margin: 0 0 2px !important; }
    .rlhf-row { display: block; margin: 0 0 2px; }
    .rlhf-row h4 { margin: 2px 0 0 !important; font-size: 12px !important; line-height: 16px !important;
      font-weight: 600 !important; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
    .rlhf-row .lsf-choices { display: flex; flex-wrap: nowrap; margin: 0 !important; white-space: nowrap; }
    .rlhf-row .lsf-choice__item { flex-wrap: nowrap; white-space: nowrap; }
    .rlhf-row .lsf-choice { margin-right: 0 !important; white-space: nowrap; }
    .rlhf-row .lsf-choice__item, .rlhf-row .ant-radio-wrapper { margin-right: 2px !important; white-space: nowrap; }
    .rlhf-row span.ant-radio + * { padding: 0 3px !important; }
    .lsf-sidepanels__wrapper { display: none !important; }
    .rlhf-answer:has(.rlhf-rated-elsewhere) .rlhf-compact { display: none; }
    .lsf-sidepanels { padding-right: 0 !important; padding-left: 0 !important; }
    .rlhf-md ul { list-style: disc; } .rlhf-md ol { list-style: decimal; }
"""


def _style() -> str:
    """The form's CSS and the rendered text's (``task_builder.render.stylesheet``) in one ``<Style>``."""
    return "  <Style>" + FORM_CSS + stylesheet() + "\n  </Style>"


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
    hint: str | None = None  # the full label, as a tooltip, when ``label`` is its short form


def _choices(
    name: str,
    to_name: str,
    title: str,
    options: list[Option],
    hint: str | None,
    required: bool,
    indent: str = "    ",
    where: str = "",
    keys: str = "",
) -> str:
    attrs = f' name="{name}" toName="{to_name}" choice="single-radio" showInline="true"'
    if required:
        attrs += f' required="true" requiredMessage={quoteattr(f"{where}{title}: choose an option.")}'
    header = f"{title} · {keys}" if keys else title
    lines = [f'{indent}<Header value={quoteattr(header)} size="6"/>']
    if hint:
        lines.append(f'{indent}<View className="rlhf-help"><Header value={quoteattr(hint)} size="6"/></View>')
    lines.append(f"{indent}<Choices{attrs}>")
    lines += [_choice(o, indent) for o in options]
    lines.append(f"{indent}</Choices>")
    return "\n".join(lines)


def _choice(option: Option, indent: str) -> str:
    hint = f" hint={quoteattr(option.hint)}" if option.hint else ""
    return (
        f"{indent}  <Choice value={quoteattr(option.label)} alias={quoteattr(option.alias)} "
        f"hotkey={quoteattr(option.hotkey)}{hint}/>"
    )


def _rating_row(
    name: str, to_name: str, title: str, options: list[Option], required: bool, where: str, keys: str = ""
) -> str:
    """One rating as one row: its title (and its keys), then its options side by side on one line (short
    labels, full ones as hints)."""
    attrs = f' name="{name}" toName="{to_name}" choice="single-radio" showInline="true"'
    if required:
        attrs += f' required="true" requiredMessage={quoteattr(f"{where}{title}: choose an option.")}'
    title = f"{title} · {keys}" if keys else title
    lines = [
        '    <View className="rlhf-row">',
        f'      <Header value={quoteattr(title)} size="6"/>',
        f"      <Choices{attrs}>",
        *[_choice(o, "      ") for o in options],
        "      </Choices>",
        "    </View>",
    ]
    return "\n".join(lines)


def short_options(dim: Dimension) -> list[Option]:
    """A dimension's options for a compact row: a number scale shows its numbers (the labels become hints
    and go to the rating guide), other scales their labels."""
    options = scale_options(dim)
    if dim.type != "integer":
        return options
    return [Option(o.alias, o.alias, o.hotkey, o.label if o.label != o.alias else None) for o in options]


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


Keys = dict[str, list[str]]  # control name -> one hotkey per option


def _keyed(name: str, options: list[Option], keys: Keys) -> tuple[str, list[Option]]:
    """How the question's keys are written (:func:`keys_label`, "" without keys), and the options with their
    hotkeys."""
    run = keys.get(name)
    if not run:
        return "", options
    return keys_label(run), [Option(o.label, o.alias, key, o.hint) for o, key in zip(options, run)]


def _answer_column(
    template: AnnotationTemplate, position: int, controls: dict[str, ControlSpec], keys: Keys, carried: bool
) -> list[str]:
    key = position_letter(position).lower()
    target = position_field(position)
    parts = [
        '    <View className="rlhf-answer">',
        f'    <Header value="{position_label(position)}" size="5"/>',
        '    <View className="rlhf-text">',
        f"    {_hypertext(target)}",
        "    </View>",
        '    <View className="rlhf-compact">',
    ]
    for dim in template.dimensions:
        name = f"{key}__{dim.key}"
        where = f"{position_label(position)}: "
        if dim.type == "text":
            in_form = dim.is_required and not carried
            parts.append(_textarea(name, target, dim.title, dim.description or "", in_form, where=where))
            controls[name] = ControlSpec(name, "textarea", dim.key, position, required=dim.is_required)
        else:
            options = short_options(dim)
            label, keyed = _keyed(name, options, keys)
            in_form = dim.is_required and not carried
            parts.append(_rating_row(name, target, dim.title, keyed, in_form, where, label))
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


def _hypertext(name: str) -> str:
    """The HTML a delivery rendered (``task_builder.render``), shown inline (our CSS applies), links
    clickable (they open in a new tab), no text selection (this form labels no spans)."""
    return f'<HyperText name="{name}" value="${name}" inline="true" clickableLinks="true" selectionEnabled="false"/>'


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


def _comparison(template: AnnotationTemplate, answers: int, controls: dict[str, ControlSpec], keys: Keys) -> list[str]:
    kind = comparison_kind(template, answers)
    positions = [(position_label(i), position_letter(i)) for i in range(answers)]
    parts: list[str] = []
    if kind == "likert":
        likert = template.turn.likert
        labels = likert.labels_for(positions[0][0], positions[1][0])
        label, options = _keyed("likert", [Option(la, str(v)) for la, v in zip(labels, likert.values)], keys)
        parts.append(_choices("likert", "prompt", likert.title, options, None, True, indent="  ", keys=label))
        controls["likert"] = ControlSpec("likert", "choices", "likert_value", None, [o.alias for o in options], True)
    elif kind == "ranking":
        parts.append('  <View className="rlhf-quiet">')
        for rank in range(1, answers + 1):
            name = f"rank_{rank}"
            title = "Best response" if rank == 1 else ("Worst response" if rank == answers else f"Rank {rank}")
            keyed, options = _keyed(name, [Option(label, alias) for label, alias in positions], keys)
            parts.append(_choices(name, "prompt", title, options, None, True, indent="  ", keys=keyed))
            controls[name] = ControlSpec(name, "choices", "ranking", rank - 1, [o.alias for o in options], True)
        parts.append("  </View>")
    elif kind == "selected":
        keyed, options = _keyed("selected", [Option(label, alias) for label, alias in positions], keys)
        title = "Which response is best?"
        parts.append(_choices("selected", "prompt", title, options, None, True, indent="  ", keys=keyed))
        controls["selected"] = ControlSpec(
            "selected", "choices", "selected_model_id", None, [o.alias for o in options], True
        )
    return parts


KEYS_HELP = (
    "Keyboard: each question's keys follow its title; along the row they choose its options left to right "
    "(Shift+Q–U: hold Shift, Q is the first option). Ctrl+Enter submits. Hover an option for its full label."
)


def build_labeling_config(
    template: AnnotationTemplate, answers: int, carried: bool = False, images: bool = False
) -> LabelingConfig:
    """The labeling config for tasks of exactly ``answers`` answers under ``template``.

    ``images``: the prompt's images are shown under it, one Label Studio ``<Image>`` per entry of the task's
    ``prompt_images`` list (a ``<Repeater>``; every task of such a form carries the list, empty for a prompt
    without images). Without it the form is the text-only one.

    ``carried`` (the pairwise layout, where each answer is rated in one pair and its ratings carried into
    the others: ``task_builder.carried_ratings``): a pair shows the rating rows of the answers it rates
    only (the others' are hidden by CSS when the answer's HTML says it is rated elsewhere), so the form
    cannot make the ratings required; harvest checks them per task instead (their ``ControlSpec`` stays
    required). The comparison stays required in the form.

    Hotkeys (:func:`plan_hotkeys`): the comparison first (the digits), then every question of every answer in
    form order; each question's keys are written after its title, and a line under the title says how.
    """
    draft = _build(template, answers, {}, carried, images)
    questions = [(name, len(spec.allowed)) for name, spec in draft.controls.items() if spec.kind == "choices"]
    questions.sort(key=lambda item: 0 if "__" not in item[0] else 1)  # the comparison first: stable sort
    return _build(template, answers, plan_hotkeys(questions), carried, images)


PROMPT_IMAGES = "prompt_images"
"""The task data field listing the prompt's images (``[{"url": …}]``) for a form built with ``images``."""


def _build(template: AnnotationTemplate, answers: int, keys: Keys, carried: bool, images: bool) -> LabelingConfig:
    controls: dict[str, ControlSpec] = {}
    parts = ["<View>", _style(), f"  <Header value={quoteattr(template.display_title)}/>"]
    if template.description:
        parts.append(f'  <Text name="instructions" value={quoteattr(template.description)}/>')
    if keys:
        parts.append(f'  <View className="rlhf-keys"><Header value={quoteattr(KEYS_HELP)} size="6"/></View>')
    parts += [
        '  <View className="rlhf-prompt">',
        '  <Header value="Prompt" size="5"/>',
        f"  {_hypertext('prompt')}",
    ]
    if images:
        parts += [
            f'  <View className="rlhf-images"><Repeater on="${PROMPT_IMAGES}" indexFlag="{{{{idx}}}}">',
            f'    <Image name="prompt_image_{{{{idx}}}}" value="${PROMPT_IMAGES}[{{{{idx}}}}].url" zoom="false"'
            ' zoomControl="false" rotateControl="false" maxWidth="260px"/>',
            "  </Repeater></View>",
        ]
    parts += [
        "  </View>",
        '  <View className="rlhf-answers">',
    ]
    for position in range(answers):
        parts += _answer_column(template, position, controls, keys, carried)
    parts.append("  </View>")
    comparison = _comparison(template, answers, controls, keys)
    if comparison or template.turn.justification:
        parts.append('  <View className="rlhf-compare">')
        parts += comparison
        if template.turn.justification and answers >= 1:
            parts.append(_textarea("justification", "prompt", "Justification", "Explain your judgement", False, "  "))
            controls["justification"] = ControlSpec("justification", "textarea", "justification", None)
        parts.append("  </View>")
    parts.append("</View>")
    return LabelingConfig("\n".join(parts), controls)
