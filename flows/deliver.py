"""Deliver a run's task shells to annotation platforms and harvest the annotations back.

Plain functions (used by the ``rlhf`` command) and the Prefect flows ``deliver_tasks`` and
``harvest_annotations`` around them (for deployments: deliver a fresh batch, harvest nightly). Tokens
are read from environment variables named by the caller; they are never flow parameters.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prefect import flow
from pydantic import SecretStr

from flows.atomic import atomic_open
from flows.config import RunConfig, load_config
from flows.manifest import read_manifest, working_dir
from platforms.label_studio.client import LabelStudioClient
from platforms.label_studio.labeling_config import build_labeling_config
from platforms.label_studio.tasks import HarvestOutcome, answers_of, harvest_task, to_label_studio
from task_builder.annotated import REJECT_KINDS, annotation_problems, reject_kind
from task_builder.template import AnnotationTemplate, resolve_template


def token_from_env(variable: str) -> SecretStr:
    """The platform token from ``variable``; a clear error naming the variable if it is unset."""
    value = os.environ.get(variable)
    if not value:
        raise KeyError(f"environment variable {variable} is not set (the annotation platform's token)")
    return SecretStr(value)


def load_run(run_dir: str | Path) -> tuple[RunConfig, AnnotationTemplate, Path]:
    """The config, annotation template and tasks file of a run directory (via its ``run.json``)."""
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    with working_dir(Path(manifest["cwd"])):
        config = load_config(manifest["config"], require_keys=False)
        template = resolve_template(config.annotation.template, base_dir=config.base_dir)
    tasks = run_dir / "tasks.jsonl"
    if not tasks.is_file():
        raise FileNotFoundError(f"{tasks}: no tasks file (the run has not finished)")
    return config, template, tasks


def numbered_lines(path: str | Path) -> Iterator[tuple[int, bytes]]:
    """The non-blank lines of a file as ``(line number, bytes)``; numbers count blank lines too (1-based)."""
    with Path(path).open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield number, line


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """The objects of a JSONL file, one per non-blank line."""
    for _, line in numbered_lines(path):
        yield json.loads(line)


def deliver_label_studio(run_dir: str | Path, url: str, token: SecretStr, project_title: str | None = None) -> dict[str, Any]:
    """Create (or reuse, by title) the project and import the run's tasks not already in it."""
    config, template, tasks_path = load_run(run_dir)
    positions = max((len(answers_of(shell)) for shell in read_jsonl(tasks_path)), default=1)
    labeling = build_labeling_config(template, positions)
    title = project_title or f"{config.project} / {config.batch}"
    description = f"{template.display_title}. Delivered by rlhf-orchestrator from batch {config.batch}."
    with LabelStudioClient(url, token) as client:
        project, created = client.ensure_project(title, labeling.xml, description)
        existing = client.task_ids(project["id"])
        total = 0
        new: list[dict[str, Any]] = []
        for shell in read_jsonl(tasks_path):
            total += 1
            if shell["task_id"] not in existing:
                new.append(to_label_studio(shell, positions))
        imported = client.import_tasks(project["id"], new) if new else 0
    return {
        "platform": "label-studio",
        "project_id": project["id"],
        "project_title": title,
        "project_created": created,
        "tasks_in_run": total,
        "already_delivered": total - len(new),
        "imported": imported,
    }


def deliver_files(run_dir: str | Path, target: str, out: str | Path) -> dict[str, Any]:
    """File deliveries: ``scale`` (the task JSONL as Scale-style tooling takes it) or ``argilla``."""
    _, template, tasks_path = load_run(run_dir)
    out = Path(out)
    if target == "scale":
        destination = out if out.suffix == ".jsonl" else out / "tasks.jsonl"
        destination.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(destination) as handle, tasks_path.open(encoding="utf-8") as source:
            shutil.copyfileobj(source, handle)
        return {"platform": "scale", "tasks": sum(1 for _ in read_jsonl(destination)), "file": str(destination)}
    from task_builder.argilla_export import write_argilla

    written = write_argilla(out, template, read_jsonl(tasks_path))
    return {"platform": "argilla", **{name: str(path) for name, path in written.items()}}


def _write_outcome(outcome: HarvestOutcome, out: Path, rejects: Path) -> dict[str, Any]:
    with atomic_open(out) as handle:
        for shell in outcome.annotated:
            handle.write(json.dumps(shell, ensure_ascii=False) + "\n")
    with atomic_open(rejects) as handle:
        for reject in outcome.rejected:
            handle.write(json.dumps(reject, ensure_ascii=False) + "\n")
    return {
        "annotated": len(outcome.annotated),
        "rejected": len(outcome.rejected),
        "out": str(out),
        "rejects": str(rejects),
    }


def default_rejects_path(out: Path) -> Path:
    """``annotated.jsonl`` -> ``annotated.rejects.jsonl``."""
    return out.with_name(out.stem + ".rejects.jsonl")


def harvest_label_studio(url: str, token: SecretStr, project_id: int, out: str | Path, rejects: str | Path | None = None) -> dict[str, Any]:
    """Export the project's annotations, validate each against its shell, write annotated tasks and rejects."""
    out = Path(out)
    outcome = HarvestOutcome()
    with LabelStudioClient(url, token) as client:
        users = client.users()
        meta = {"platform": "label-studio", "project_id": project_id}
        for ls_task in client.export(project_id):
            one = harvest_task(ls_task, meta, users)
            outcome.annotated += one.annotated
            outcome.rejected += one.rejected
    return {"platform": "label-studio", "project_id": project_id,
            **_write_outcome(outcome, out, Path(rejects) if rejects else default_rejects_path(out))}


def harvest_file(source: str | Path, out: str | Path, rejects: str | Path | None = None) -> dict[str, Any]:
    """Read annotated tasks already in the shell shape, keep the valid ones, reject the rest with reasons.

    Every non-blank line is read on its own: a line that is not JSON, not a JSON object, not a valid
    annotated shell (``task_builder.annotated``: shape, unknown slot keys, values) or not annotated at
    all is one reject, with the file, its line number (blank lines counted) and the reason (its kind)
    and details; the other lines are kept. Blank (whitespace-only) lines are skipped silently and not
    counted as read: editors and concatenated exports leave them, and they hold no annotation to lose.
    The report counts the lines read, annotated (accepted) and rejected, and the rejects by reason.
    """
    out = Path(out)
    outcome = HarvestOutcome()
    read = 0
    for number, line in numbered_lines(source):
        read += 1
        try:
            shell: Any = json.loads(line)
        except ValueError as exc:  # JSONDecodeError, or bytes that are not UTF-8
            shell, problems = None, [("invalid_json", str(exc))]
        else:
            problems = annotation_problems(shell)
        if not problems:
            outcome.annotated.append(shell)
            continue
        task_id = shell.get("task_id") if isinstance(shell, dict) else None
        outcome.rejected.append({"file": str(source), "line": number, "task_id": task_id, "reason": reject_kind(problems),
                                 "reasons": [message for _, message in problems]})
    by_reason = Counter(reject["reason"] for reject in outcome.rejected)
    return {"platform": "file", "file": str(source), "read": read,
            **_write_outcome(outcome, out, Path(rejects) if rejects else default_rejects_path(out)),
            "rejected_by_reason": {kind: by_reason[kind] for kind in REJECT_KINDS if by_reason[kind]}}


@flow(name="deliver_tasks")
def deliver_tasks(run_dir: str, url: str, token_env: str = "LABEL_STUDIO_TOKEN", project_title: str | None = None) -> dict[str, Any]:
    """Deliver a finished run's tasks to Label Studio (idempotent: tasks already there are skipped)."""
    return deliver_label_studio(run_dir, url, token_from_env(token_env), project_title)


@flow(name="harvest_annotations")
def harvest_annotations(url: str, project_id: int, out: str, token_env: str = "LABEL_STUDIO_TOKEN") -> dict[str, Any]:
    """Harvest a Label Studio project's annotations into annotated task shells (and rejects)."""
    return harvest_label_studio(url, token_from_env(token_env), project_id, out)
