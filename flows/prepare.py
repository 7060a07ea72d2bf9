"""Everything checked before a single call is made: config, keys, templates, the whole prompt file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flows.config import RunConfig, load_config
from flows.errors import InputError
from flows.prompt_reader import scan_prompts
from task_builder.template import AnnotationTemplate, load_annotation_template


@dataclass(frozen=True)
class PreparedRun:
    """A validated run: its config, annotation template and how many prompts it has."""

    config: RunConfig
    template: AnnotationTemplate
    prompt_count: int


def prepare_run(config_path: str | Path, *, require_keys: bool = True) -> PreparedRun:
    """Validate the config and read the prompt file once; raise :class:`InputError` listing every problem."""
    config = load_config(config_path, require_keys=require_keys)
    template = load_annotation_template(config.annotation.template)
    report = scan_prompts(config.prompts)
    if report.problems:
        raise InputError(report.problems)
    return PreparedRun(config=config, template=template, prompt_count=report.valid)
