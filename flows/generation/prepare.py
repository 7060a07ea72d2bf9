"""Everything checked before a single call is made: config, keys, templates, the whole prompt file."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TypeVar

from common.errors import InputError, InputProblem, referred_from
from flows.config import RunConfig, adaptive_pair_weights, load_config
from prompts.reader import load_template, scan_prompts
from task_builder.judging import has_preference, judgeable_dimensions
from task_builder.template import AnnotationTemplate, resolve_template

_Spec = TypeVar("_Spec")
_Loaded = TypeVar("_Loaded")


@dataclass(frozen=True)
class PreparedRun:
    """A validated run: its config, annotation template, how many prompts it has and what was rejected."""

    config_path: str
    config: RunConfig
    template: AnnotationTemplate
    prompt_count: int
    rejected: list[InputProblem] = field(default_factory=list)
    # ``annotation.pairs: adaptive``: each pair of sources' weight from the leaderboard (task_builder/adaptive.py).
    pair_weights: dict[tuple[str, str], float] | None = None


def prepare_run(config_path: str | Path, *, require_keys: bool = True, skip_invalid: bool = False) -> PreparedRun:
    """Validate the config and read the prompt file once.

    Raises :class:`InputError` listing every problem; with ``skip_invalid`` the bad prompt records are
    returned as ``rejected`` instead (a missing file or template, or a file with no valid prompt at
    all, is still an error). A problem in a file the config names also says where the config names it
    (``p.jsonl:3: prompt: ... (from run.yaml:4: prompts.path)``).
    """
    config = load_config(config_path, require_keys=require_keys)
    # Paths the config names are relative to its directory (config.base_dir).
    template = _named_by(
        config, "annotation.template", partial(resolve_template, base_dir=config.base_dir), config.annotation.template
    )
    _named_by(config, "prompts.template", partial(load_template, base_dir=config.base_dir), config.prompts.template)
    if config.judges and not (judgeable_dimensions(template) or has_preference(template)):
        raise InputError(
            [
                InputProblem(
                    config_path if isinstance(config_path, str) else str(config_path),
                    None,
                    f"judges: the annotation template '{template.name}' has no rating a judge can give (an integer,"
                    " category or yes/no dimension) and no Likert preference",
                    "judges",
                )
            ]
        )
    try:
        weights = adaptive_pair_weights(config)
    except ValueError as exc:  # the leaderboard changed since load_config read it
        raise InputError(
            [
                InputProblem(
                    config_path if isinstance(config_path, str) else str(config_path),
                    None,
                    str(exc),
                    "annotation.leaderboard",
                )
            ]
        ) from None
    report = scan_prompts(config.prompts)
    problems = referred_from(report.problems, config.where("prompts.path"))
    if problems and (not skip_invalid or report.valid == 0 or any(p.line is None for p in problems)):
        raise InputError(problems, _skip_invalid_hint(config_path, report.valid, problems))
    return PreparedRun(
        config_path=str(config_path),
        config=config,
        template=template,
        prompt_count=report.valid,
        rejected=problems,
        pair_weights=weights,
    )


def _skip_invalid_hint(config_path: str | Path, valid: int, problems: list[InputProblem]) -> str | None:
    """How to run the valid prompts anyway, when only prompt records are bad and some are valid (what
    ``--skip-invalid`` can skip; it is never given here: with it, such problems are not raised)."""
    if valid == 0 or any(p.line is None for p in problems):
        return None
    bad = len({(p.file, p.line) for p in problems})
    return (
        f"{bad} prompt record(s) are invalid and {valid} valid: fix them, or run the valid ones with "
        f"`rlhf run {config_path} --skip-invalid` (the invalid records go to rejected.jsonl)"
    )


def _named_by(config: RunConfig, field: str, load: Callable[[_Spec], _Loaded], spec: _Spec) -> _Loaded:
    """``load(spec)`` for the file the config's ``field`` names; its problems say where it is named."""
    try:
        return load(spec)
    except InputError as exc:
        raise InputError(referred_from(exc.problems, config.where(field))) from None
