"""Annotation templates: which slots a task shell carries. A template is data (YAML), not code."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    Tag,
    ValidationError,
    model_serializer,
    model_validator,
)

from common.config_types import ConfigInt
from common.errors import InputError, InputProblem
from common.yaml_locations import (
    read_yaml,
    resolve_path,
    surrogate_problems,
    validation_problems,
    where_searched,
)
from task_builder.attachments import DEFAULT_INLINE_MAX_BYTES

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "prompts" / "templates"


class Dimension(BaseModel):
    """A per-answer slot: a rating scale, a single choice, a yes/no or free text."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    title: str
    description: str | None = None
    type: Literal["integer", "category", "boolean", "text"] = "integer"
    # Whole numbers, or labels when every value is text (tagged, so an error names values[i], not a union member).
    values: (
        Annotated[
            Annotated[list[ConfigInt], Tag("<numbers>")] | Annotated[list[str], Tag("<labels>")],
            Discriminator(
                lambda v: (
                    "<labels>" if isinstance(v, list) and v and all(isinstance(x, str) for x in v) else "<numbers>"
                )
            ),
        ]
        | None
    ) = None
    labels: list[str] | None = None
    # Whether an annotator must answer it; by default every rating, choice and yes/no is required and
    # free text is not.
    required: bool | None = None

    @property
    def is_required(self) -> bool:
        """Whether a submission must fill this dimension (``required``, else: every non-text type)."""
        return self.required if self.required is not None else self.type != "text"

    @model_validator(mode="after")
    def _check_values(self) -> Dimension:
        if self.type in ("integer", "category") and not self.values:
            article = "an" if self.type == "integer" else "a"
            raise ValueError(f"{article} {self.type} dimension needs 'values'")
        if self.type == "integer" and not all(isinstance(v, int) for v in self.values or []):
            raise ValueError("integer values must be whole numbers")
        if self.type in ("boolean", "text") and self.values:
            raise ValueError(f"a {self.type} dimension takes no 'values'")
        if self.labels is not None and len(self.labels) != len(self.values or []):
            raise ValueError("'labels' must have one label per value")
        return self


class LikertSlot(BaseModel):
    """The pairwise preference scale (used when a turn has exactly two answers)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    title: str = "Which response is better?"
    values: list[ConfigInt] = Field(default_factory=lambda: [1, 2, 3, 4, 5, 6, 7], min_length=2)
    labels: list[str] | None = None

    def labels_for(self, first: str, second: str) -> list[str]:
        """One label per value; the ends say which answer (by position letter) they favour."""
        if self.labels is not None:
            return self.labels
        n = len(self.values)
        out = []
        for index in range(n):
            if index == 0:
                out.append(f"{first} much better")
            elif index == n - 1:
                out.append(f"{second} much better")
            elif n % 2 == 1 and index == n // 2:
                out.append("About the same")
            elif index < n / 2:
                out.append(f"{first} better" if index == 1 else f"{first} slightly better")
            else:
                out.append(f"{second} better" if index == n - 2 else f"{second} slightly better")
        return out


class TurnSlots(BaseModel):
    """Turn-level (preference) slots."""

    model_config = ConfigDict(extra="forbid")

    selected_model_id: bool = True
    likert: LikertSlot = Field(default_factory=LikertSlot)
    justification: bool = True
    ranking: bool = False


class TaskFilters(BaseModel):
    """Tasks not worth a human's time, dropped to ``filtered.jsonl`` with the reason."""

    model_config = ConfigDict(extra="forbid")

    drop_all_identical: bool = False
    drop_all_flagged: bool = False


class DisplayOptions(BaseModel):
    """How answers are shown (``task_builder.render``): the model's reasoning, remote images."""

    model_config = ConfigDict(extra="forbid")

    show_reasoning: bool = False  # the model's thinking, in a collapsed block above its answer
    remote_images: bool = False  # markdown images fetched by the annotator's browser (else shown as links)
    # A prompt's images from the run directory are inlined in the task up to this size each; a larger one
    # stops the delivery, naming it (task_builder.attachments; README "Prompts with images").
    inline_image_max_bytes: int = Field(default=DEFAULT_INLINE_MAX_BYTES, ge=0)


class AnnotationTemplate(BaseModel):
    """A whole template: per-answer dimensions, turn-level slots, whether a rewrite is asked for, filters.

    ``extends: NAME`` starts from another template and replaces only the keys given here.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    title: str | None = None
    description: str | None = None
    extends: str | None = None
    dimensions: list[Dimension] = Field(default_factory=list)
    rewrite: bool = False
    turn: TurnSlots = Field(default_factory=TurnSlots)
    filters: TaskFilters = Field(default_factory=TaskFilters)
    display: DisplayOptions = Field(default_factory=DisplayOptions)

    @property
    def display_title(self) -> str:
        """The title shown to annotators (the name when no title is given)."""
        return self.title or self.name

    @model_serializer(mode="wrap")
    def _given_keys_of_an_extension(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> Any:
        """A template that ``extends`` another dumps only the keys it was given: validated again, the keys it
        left out still come from its base (a dumped default would count as given and replace the base's
        value: ``dimensions: []``). With the context ``{"every_field": True}`` every field is dumped (the
        form :meth:`flows.config.RunConfig.config_hash` has always hashed)."""
        data = handler(self)
        if self.extends is None or not isinstance(data, dict) or (info.context or {}).get("every_field"):
            return data
        return {key: value for key, value in data.items() if key in self.model_fields_set}

    @model_validator(mode="after")
    def _unique_keys(self) -> AnnotationTemplate:
        keys = [d.key for d in self.dimensions]
        duplicates = sorted({k for k in keys if keys.count(k) > 1})
        if duplicates:
            raise ValueError(f"duplicate dimension key(s): {', '.join(duplicates)}")
        reserved = {"rewrite", "selected_model_id", "likert_value", "justification", "ranking"} & set(keys)
        if reserved:
            raise ValueError(f"reserved slot key(s) used as dimensions: {', '.join(sorted(reserved))}")
        return self


DEFAULT_TEMPLATE = "pref_ranking"
MAX_EXTENDS_DEPTH = 8


def shipped_templates() -> list[str]:
    """Names of the annotation templates in ``prompts/templates/``."""
    return sorted(p.stem for p in TEMPLATE_DIR.glob("*.yaml"))


def resolve_template(
    spec: str | AnnotationTemplate, _depth: int = 0, *, base_dir: Path | None = None
) -> AnnotationTemplate:
    """A usable template from a name, a path or an inline template, with ``extends`` applied.

    A path is relative to ``base_dir`` (the directory of the file naming it: the run config's for
    ``annotation.template``; default: the working directory). An ``extends`` path in a template file is
    relative to that file's directory.
    """
    if isinstance(spec, str):
        template, base_dir = _load(spec, base_dir)
    else:
        template = spec
    if template.extends is None:
        return template
    if _depth >= MAX_EXTENDS_DEPTH:
        raise InputError(
            [
                InputProblem(
                    template.name, None, f"'extends' chain deeper than {MAX_EXTENDS_DEPTH} (a cycle?)", "extends"
                )
            ]
        )
    base = resolve_template(template.extends, _depth + 1, base_dir=base_dir)
    given = {key: getattr(template, key) for key in template.model_fields_set if key != "extends"}
    return base.model_copy(update={**given, "extends": None})


def load_annotation_template(name_or_path: str, base_dir: Path | None = None) -> AnnotationTemplate:
    """A template by file path (relative to ``base_dir``; default: the working directory), or by name from
    ``prompts/templates/<name>.yaml`` (``default``: Pref Ranking)."""
    return _load(name_or_path, base_dir)[0]


def _load(name_or_path: str, base_dir: Path | None) -> tuple[AnnotationTemplate, Path]:
    """The template and the directory of its file (where its own relative paths start)."""
    if name_or_path == "default":
        name_or_path = DEFAULT_TEMPLATE
    base_dir = base_dir if base_dir is not None else Path(".")
    path = resolve_path(base_dir, name_or_path)
    if not path.is_file():
        path = TEMPLATE_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        available = ", ".join(shipped_templates())
        raise InputError(
            [
                InputProblem(
                    name_or_path,
                    None,
                    f"annotation template not found (shipped: {available}; "
                    f"as a path: {where_searched(base_dir, name_or_path)})",
                )
            ]
        )
    root, data = read_yaml(path)
    surrogates = surrogate_problems(str(path), root, data)
    if surrogates:
        raise InputError(surrogates)
    try:
        return AnnotationTemplate.model_validate(data), path.parent
    except ValidationError as exc:
        raise InputError(validation_problems(str(path), root, exc, AnnotationTemplate)) from None
