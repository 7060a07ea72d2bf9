"""Everything checked before a single call is made: config, keys, templates, the whole prompt file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from flows.config import RunConfig, load_config
from flows.errors import InputError, InputProblem
from flows.prompt_reader import scan_prompts
from task_builder.template import AnnotationTemplate, resolve_template


@dataclass(frozen=True)
class PreparedRun:
    """A validated run: its config, annotation template, how many prompts it has and what was rejected."""

    config_path: str
    config: RunConfig
    template: AnnotationTemplate
    prompt_count: int
    rejected: list[InputProblem] = field(default_factory=list)


def prepare_run(config_path: str | Path, *, require_keys: bool = True, skip_invalid: bool = False) -> PreparedRun:
    """Validate the config and read the prompt file once.

    Raises :class:`InputError` listing every problem; with ``skip_invalid`` the bad prompt records are
    returned as ``rejected`` instead (a missing file or template, or a file with no valid prompt at
    all, is still an error).
    """
    config = load_config(config_path, require_keys=require_keys)
    template = resolve_template(config.annotation.template)
    report = scan_prompts(config.prompts)
    if report.problems and (not skip_invalid or report.valid == 0 or any(p.line is None for p in report.problems)):
        raise InputError(report.problems)
    return PreparedRun(
        config_path=str(config_path),
        config=config,
        template=template,
        prompt_count=report.valid,
        rejected=report.problems,
    )
