"""Deliver a run's task shells to annotation platforms and harvest the annotations back.

Plain functions (used by the ``rlhf`` command) and the Prefect flows ``deliver_tasks`` and
``harvest_annotations`` around them (for deployments: deliver a fresh batch, harvest nightly). Tokens
are read from environment variables named by the caller; they are never flow parameters.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow
from pydantic import SecretStr

from common import bounded_json
from common.atomic import atomic_open
from flows.config import RunConfig
from flows.delivery.delivered import KeptVersions, keeping_delivered, run_versions
from flows.generation.manifest import MANIFEST, read_manifest, run_config, working_dir
from platforms.label_studio.client import LabelStudioClient
from platforms.label_studio.labeling_config import PROMPT_IMAGES, LabelingConfig, build_labeling_config
from platforms.label_studio.predictions import (
    DEFAULT_MODE,
    PREDICTION_MODES,
    choose_judge,
    predictions_shown,
    shows_predictions,
    to_label_studio_with_predictions,
)
from platforms.label_studio.tasks import (
    HarvestOutcome,
    harvest_task,
    prompt_images,
    to_label_studio,
)
from task_builder.annotated import REJECT_KINDS, Problem, annotation_problems, reject_kind
from task_builder.answer_hash import HASH_FIELD, answer_hashes, pick_version, returned_claims, returned_text_problems
from task_builder.blinding import blind, is_blind, unblind
from task_builder.carried_ratings import carry_ratings
from task_builder.gold import gold_shell, mix, mix_count
from task_builder.shell import final_answers
from task_builder.template import AnnotationTemplate, resolve_template


def token_from_env(variable: str) -> SecretStr:
    """The platform token from ``variable``; a clear error naming the variable if it is unset."""
    value = os.environ.get(variable)
    if not value:
        raise KeyError(f"environment variable {variable} is not set (the annotation platform's token)")
    return SecretStr(value)


def load_run(run_dir: str | Path) -> tuple[RunConfig, AnnotationTemplate, Path]:
    """The config, annotation template and tasks file of a run directory, as its ``run.json`` recorded them:
    no provider is resolved again, so none of the providers' variables need be set."""
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    with working_dir(Path(manifest["cwd"])):
        config = run_config(manifest, providers=False, where=str(run_dir / MANIFEST))
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


DELIVERIES = "deliveries.jsonl"


def _answer_word(count: int) -> str:
    return "1 answer" if count == 1 else f"{count} answers"


def deliver_label_studio(
    run_dir: str | Path,
    url: str,
    token: SecretStr,
    project_title: str | None = None,
    predictions: str = DEFAULT_MODE,
    judge: str | None = None,
    annotators_per_task: int | None = None,
    gold: list[dict[str, Any]] | None = None,
    gold_rate: float = 0.0,
) -> dict[str, Any]:
    """Create (or reuse, by title) the projects and import the run's tasks not already in them.

    ``annotators_per_task`` (k): every project asks Label Studio for k annotations of each task, by
    different annotators (:meth:`LabelStudioClient.set_overlap`); harvest keeps every annotation with
    its annotator. None leaves the project's setting as it is (Label Studio's default is 1).

    ``gold`` (annotated tasks with known values, ``task_builder.gold``) mixed in at ``gold_rate`` of each
    project's tasks (gold tasks with that project's answer count, chosen and placed by a seed from the
    batch): they look like any other task to annotators (a task id of the same form, no judge's values),
    their shells are kept with the delivered versions so harvest joins their annotations, and the known
    values travel in ``metadata.gold`` for ``rlhf quality``; exports leave them out.

    A form requires a rating of every answer it shows, so tasks go to one project per answer count:
    the widest tasks to ``project_title`` (default ``<project> / <batch>``), tasks that lost answers
    (a provider failed for that prompt) to ``<title> (k answers)``. Tasks without answers are not
    delivered. Each delivery is recorded in the run directory's ``deliveries.jsonl``, which
    ``rlhf harvest`` reads to find the projects and join annotations back to the shells. A task already
    in one of the run's projects of that title (``<title>`` or ``<title> (k answers)``, as recorded in
    ``deliveries.jsonl``) is not imported again, whichever of them it went to (a run that delivered as
    it went chose the project by the layout's answer count, chunk by chunk).

    Judges' values (``metadata.predictions``) go with the tasks as Label Studio predictions that
    annotators start from and may change (``platforms.label_studio.predictions``): with
    ``predictions="all"`` (the default) every task that has them, with ``"half"`` only the tasks
    :func:`shows_predictions` puts in the shown group (the others go blind, a control group), with
    ``"none"`` no task. One judge's: ``judge``, else the judge with values for the most tasks
    (:func:`choose_judge`); the project is set to pre-fill its values (``show_collab_predictions``,
    ``model_version``). The mode and the judge are recorded with the delivery. A project keeps the mode
    and the judge it was first delivered with: new tasks for it under others are refused.

    Deliveries of one run directory take turns (:func:`delivering`): a run delivering as it goes and an
    ``rlhf deliver`` of the same run never both import a task.
    """
    if predictions not in PREDICTION_MODES:
        raise ValueError(f"unknown --predictions mode {predictions!r}: choose {', '.join(PREDICTION_MODES)}")
    run_dir = Path(run_dir)
    config, template, tasks_path = load_run(run_dir)
    title = project_title or f"{config.project} / {config.batch}"
    carried = config.annotation.layout == "pairwise"  # ratings asked once per answer (task_builder.carried_ratings)
    target = LabelStudioTarget(
        url, title, predictions, judge, carried, annotators_per_task, tuple(gold or ()), gold_rate
    )
    with delivering(run_dir), LabelStudioClient(url, token) as client:
        return deliver_shells(client, run_dir, target, template, config.batch, lambda: read_jsonl(tasks_path))


@dataclass(frozen=True, slots=True)
class LabelStudioTarget:
    """Where and how tasks go: the server, the projects' base title, the predictions mode and judge."""

    url: str
    title: str
    predictions: str = DEFAULT_MODE
    judge: str | None = None
    carried: bool = False  # pairwise: each answer rated in one pair, its ratings carried into the others
    annotators_per_task: int | None = None  # Label Studio's overlap (None: the project's setting)
    gold: tuple[dict[str, Any], ...] = ()  # gold tasks mixed in at gold_rate (task_builder.gold)
    gold_rate: float = 0.0


def deliver_shells(
    client: LabelStudioClient,
    run_dir: Path,
    target: LabelStudioTarget,
    template: AnnotationTemplate,
    batch: str,
    shells: Callable[[], Iterable[dict[str, Any]]],
    widest: int | None = None,
    known: dict[int, set[str]] | None = None,
    kept: KeptVersions | None = None,
) -> dict[str, Any]:
    """Import the shells ``shells()`` yields that are not yet in the target's projects (the body of
    :func:`deliver_label_studio`, also called chunk by chunk by a run that delivers as it goes,
    ``flows.delivery.stream``). Call it holding :func:`delivering`.

    ``widest``: the answer count whose tasks go to the base title (default: the most any shell has).
    ``known``: task ids already listed per project (kept up to date here), so a caller delivering many
    times lists each project once; None lists every project each time. ``kept``: the same for the kept
    versions (:class:`~flows.delivery.delivered.KeptVersions`).
    """
    url, predictions, judge, carried = target.url, target.predictions, target.judge, target.carried
    annotators_per_task = target.annotators_per_task
    chosen = choose_judge(shells(), judge) if predictions != "none" else None
    by_count: dict[int, list[dict[str, Any]]] = {}
    forms: dict[int, LabelingConfig] = {}
    for shell in shells():  # every task is built (its images read) before anything is imported
        count = len(final_answers(shell))
        images = prompt_images(shell, run_dir, template) if count else []
        if count and chosen is not None and shows_predictions(shell["task_id"], predictions):
            form = forms.get(count) or forms.setdefault(count, build_labeling_config(template, count, carried))
            task = to_label_studio_with_predictions(shell, template, [chosen], form, images)
        else:
            task = to_label_studio(shell, template, images)
        by_count.setdefault(count, []).append(task)
    tasks_in_run = sum(len(tasks) for tasks in by_count.values())
    gold_ids = _mix_gold(by_count, target.gold, target.gold_rate, batch, template, run_dir)
    base = target.title
    widest = max(by_count, default=0) if widest is None else widest
    description = f"{template.display_title}. Delivered by rlhf-orchestrator from batch {batch}."
    recorded = delivery_records(run_dir, url)
    known = {} if known is None else known
    projects: list[dict[str, Any]] = []
    planned = []
    family = _title_family(run_dir, url, base)
    for count in sorted((c for c in by_count if c > 0), reverse=True):
        title = base if count == widest else f"{base} ({_answer_word(count)})"
        if _shows_images(client, title, by_count[count]):  # every task of an image form carries the list
            labeling = build_labeling_config(template, count, carried, images=True)
            for task in by_count[count]:
                task["data"].setdefault(PROMPT_IMAGES, [])
        else:
            labeling = forms.get(count) or build_labeling_config(template, count, carried)
        project, created = client.ensure_project(title, labeling.xml, description)
        family.add(int(project["id"]))
        existing: set[str] = set()
        for project_id in sorted(family):
            if project_id not in known:
                known[project_id] = set(client.task_ids(project_id))
            existing |= known[project_id]
        new = [task for task in by_count[count] if task["data"]["task_id"] not in existing]
        _check_same_as_before(title, project["id"], new, predictions, recorded.get(int(project["id"])))
        planned.append((count, title, project, created, new))
    _keep_delivered(run_dir, shells, [task for *_, new in planned for task in new], kept, gold_ids)
    for count, title, project, created, new in planned:  # every project checked before any import
        imported = client.import_tasks(project["id"], new) if new else 0
        known[int(project["id"])].update(task["data"]["task_id"] for task in new)
        if annotators_per_task is not None:
            client.set_overlap(project["id"], annotators_per_task)
        with_predictions = sum(1 for task in new if task.get("predictions"))
        if with_predictions:  # annotators start from the judge's values (Label Studio pre-fills one)
            client.request(
                "PATCH",
                f"/api/projects/{project['id']}",
                json={"show_collab_predictions": True, "model_version": chosen},
            )
        projects.append(
            {
                "project_id": project["id"],
                "project_title": title,
                "project_url": project_url(url, project["id"]),
                "project_created": created,
                "answers": count,
                "tasks": len(by_count[count]),
                "already_delivered": len(by_count[count]) - len(new),
                "imported": imported,
                "predictions": predictions,
                "imported_with_predictions": with_predictions,
                "prefill_judge": chosen if with_predictions else None,
                "annotators_per_task": annotators_per_task,
                "gold_imported": sum(1 for task in new if task["data"]["task_id"] in gold_ids),
            }
        )
    _record_delivery(run_dir, url, projects)
    main = projects[0] if projects else {"project_id": None, "project_title": base, "project_created": False}
    return {
        "platform": "label-studio",
        "url": url,
        "run_dir": str(run_dir),
        "project_id": main["project_id"],
        "project_title": main["project_title"],
        "project_url": projects[0]["project_url"] if projects else None,
        "project_created": main["project_created"],
        "tasks_in_run": tasks_in_run,
        "gold_imported": sum(p["gold_imported"] for p in projects),
        "annotators_per_task": annotators_per_task,
        "already_delivered": sum(p["already_delivered"] for p in projects),
        "imported": sum(p["imported"] for p in projects),
        "predictions": predictions,
        "judge": chosen,
        "imported_with_predictions": sum(p["imported_with_predictions"] for p in projects),
        "not_delivered_no_answers": len(by_count.get(0, [])),
        "projects": projects,
    }


def _shows_images(client: LabelStudioClient, title: str, tasks: list[dict[str, Any]]) -> bool:
    """Whether the project ``title`` gets the form showing prompt images: some of ``tasks`` have images,
    or the project already shows them (a later chunk without images keeps the earlier tasks' images)."""
    if any(task["data"].get(PROMPT_IMAGES) for task in tasks):
        return True
    project = client.find_project(title)
    return project is not None and f"${PROMPT_IMAGES}" in str(project.get("label_config") or "")


def _title_family(run_dir: Path, url: str, base: str) -> set[int]:
    """The run's Label Studio projects on ``url`` titled ``base`` or ``base (k answers)`` (its deliveries)."""
    path = run_dir / DELIVERIES
    if not path.is_file():
        return set()
    return {
        int(record["project_id"])
        for record in read_jsonl(path)
        if record.get("platform") == "label-studio"
        and record.get("url") == url.rstrip("/")
        and (record.get("project_title") == base or str(record.get("project_title", "")).startswith(f"{base} ("))
    }


@contextmanager
def delivering(run_dir: str | Path) -> Iterator[None]:
    """Hold the run directory's delivery lock (``flock`` on ``<run_dir>/delivery.lock``) for the block,
    waiting for another delivery of the run (``rlhf deliver``, or the run delivering as it goes) to finish
    first: what one imports, the other then finds in the project and leaves alone. The kernel releases the
    lock when its holder ends in any way."""
    path = Path(run_dir) / "delivery.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def project_url(url: str, project_id: int) -> str:
    """Where annotators open a Label Studio project (its Data Manager)."""
    return f"{url.rstrip('/')}/projects/{project_id}/"


def _mix_gold(
    by_count: dict[int, list[dict[str, Any]]],
    gold: tuple[dict[str, Any], ...],
    rate: float,
    batch: str,
    template: AnnotationTemplate,
    run_dir: Path,
) -> dict[str, dict[str, Any]]:
    """Mix gold tasks into each answer count's Label Studio tasks (in place); their shells by task id.
    A gold task's run-directory images are looked up in ``run_dir`` (the run being delivered)."""
    if not gold or rate <= 0:
        return {}
    shells = [gold_shell(task, batch) for task in gold]
    random.Random(f"{batch}:gold").shuffle(shells)
    chosen: dict[str, dict[str, Any]] = {}
    for count, tasks in by_count.items():
        fitting = [shell for shell in shells if len(final_answers(shell)) == count]
        picked = fitting[: mix_count(len(tasks), rate, len(fitting))] if count else []
        by_count[count] = mix(
            tasks,
            [to_label_studio(shell, template, prompt_images(shell, run_dir, template)) for shell in picked],
            f"{batch}:{count}",
        )
        chosen.update((shell["task_id"], shell) for shell in picked)
    return chosen


def _keep_delivered(
    run_dir: Path,
    shells: Callable[[], Iterable[dict[str, Any]]],
    tasks: list[dict[str, Any]],
    kept: KeptVersions | None = None,
    gold: dict[str, dict[str, Any]] | None = None,
) -> None:
    """Keep the run's version of each Label Studio task about to be imported (``flows.delivery.delivered``).

    The shells are read again from ``shells()`` (not held while the tasks are built); one whose text is
    no longer what the task shows (a rerun in between) is not kept, and harvest will say so.
    """
    shown = {task["data"]["task_id"]: task["data"][HASH_FIELD] for task in tasks}
    if not shown:
        return
    with keeping_delivered(run_dir, kept) as keep:
        for task_id, shell in (gold or {}).items():  # gold is no task of the run: its shell is kept as delivered
            if task_id in shown:
                keep(shell)
        for shell in shells():
            if shell["task_id"] in shown and answer_hashes(shell) == shown[shell["task_id"]]:
                keep(shell)


def _check_same_as_before(
    title: str, project_id: int, new: list[dict[str, Any]], mode: str, earlier: dict[str, Any] | None
) -> None:
    """Refuse new tasks for a project delivered before under another predictions mode or judge: the
    harvest reads one mode and one judge per project."""
    if not new or earlier is None:
        return
    if earlier["predictions"] != mode:
        raise ValueError(
            f"project '{title}' (id {project_id}) was delivered with --predictions {earlier['predictions']}; "
            f"its {len(new)} remaining task(s) must go the same way: deliver with --predictions "
            f"{earlier['predictions']}, or to another --project-title"
        )
    judges = {p["model_version"] for task in new for p in task.get("predictions") or []}
    if earlier["prefill_judge"] is not None and judges - {earlier["prefill_judge"]}:
        raise ValueError(
            f"project '{title}' (id {project_id}) pre-fills judge {earlier['prefill_judge']!r}; deliver its "
            f"{len(new)} remaining task(s) with --judge {earlier['prefill_judge']}, or to another --project-title"
        )


def _record_delivery(run_dir: Path, url: str, projects: list[dict[str, Any]]) -> None:
    """Append one line per project to the run's ``deliveries.jsonl`` (the harvest's map back to the run).

    With the predictions mode of the delivery, how many tasks it imported (and how many of them with
    predictions) and the judge annotators start from (``prefill_judge``, None when it set none).
    """
    at = datetime.now(UTC).isoformat(timespec="seconds")
    with (run_dir / DELIVERIES).open("a", encoding="utf-8") as handle:
        for project in projects:
            record = {
                "platform": "label-studio",
                "url": url.rstrip("/"),
                "project_id": project["project_id"],
                "project_title": project["project_title"],
                "answers": project["answers"],
                "delivered_at": at,
                "imported": project["imported"],
                "predictions": project["predictions"],
                "imported_with_predictions": project["imported_with_predictions"],
                "prefill_judge": project["prefill_judge"],
            }
            handle.write(json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def delivery_records(run_dir: str | Path, url: str) -> dict[int, dict[str, Any]]:
    """What the run's deliveries to ``url`` say about each Label Studio project (by id).

    ``predictions``: the mode of the project's first delivery (a later delivery cannot import tasks
    under another mode; deliveries recorded before predictions existed sent none: ``none``).
    ``prefill_judge``: the last judge a delivery set the project to start annotators from, or None.
    """
    path = Path(run_dir) / DELIVERIES
    found: dict[int, dict[str, Any]] = {}
    if not path.is_file():
        return found
    for record in read_jsonl(path):
        if record.get("platform") != "label-studio" or record.get("url") != url.rstrip("/"):
            continue
        project = found.setdefault(
            int(record["project_id"]), {"predictions": record.get("predictions", "none"), "prefill_judge": None}
        )
        if record.get("prefill_judge"):
            project["prefill_judge"] = record["prefill_judge"]
    return found


def delivered_projects(run_dir: str | Path, url: str) -> list[int]:
    """The Label Studio projects (on ``url``) this run was delivered to, in delivery order."""
    path = Path(run_dir) / DELIVERIES
    if not path.is_file():
        return []
    found: list[int] = []
    for record in read_jsonl(path):
        if (
            record.get("platform") == "label-studio"
            and record.get("url") == url.rstrip("/")
            and record["project_id"] not in found
        ):
            found.append(int(record["project_id"]))
    return found


def deliver_files(run_dir: str | Path, target: str, out: str | Path) -> dict[str, Any]:
    """File deliveries: ``scale`` (blind task shells, ``task_builder.blinding``) or ``argilla``.

    Neither names a model or a source: positions stand in for source ids, and the mapping back stays in
    the run directory (``rlhf harvest --from file --run-dir`` joins on the task id). Every shell delivered
    is kept in the run directory as it was (``flows.delivery.delivered``), so a rerun that changes its
    text cannot change what its annotations are joined to.
    """
    _, template, tasks_path = load_run(run_dir)
    out = Path(out)
    if target == "scale":
        destination = out if out.suffix == ".jsonl" else out / "tasks.jsonl"
        destination.parent.mkdir(parents=True, exist_ok=True)
        count = 0
        with atomic_open(destination) as handle, keeping_delivered(run_dir) as keep:
            for shell in read_jsonl(tasks_path):
                keep(shell)
                handle.write(json.dumps(blind(shell), ensure_ascii=False, separators=(",", ":")) + "\n")
                count += 1
        return {"platform": "scale", "tasks": count, "file": str(destination), "blind": True}
    from task_builder.argilla_export import write_argilla

    with keeping_delivered(run_dir) as keep:
        written = write_argilla(out, template, _kept(read_jsonl(tasks_path), keep))
    return {"platform": "argilla", **{name: str(path) for name, path in written.items()}}


def _kept(shells: Iterator[dict[str, Any]], keep: Callable[[dict[str, Any]], None]) -> Iterator[dict[str, Any]]:
    """``shells``, each kept (``keep``) as it passes."""
    for shell in shells:
        keep(shell)
        yield shell


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


def harvest_label_studio(
    url: str,
    token: SecretStr,
    run_dir: str | Path,
    out: str | Path,
    rejects: str | Path | None = None,
    project_ids: list[int] | None = None,
) -> dict[str, Any]:
    """Export the projects' annotations, join each to its shell in ``run_dir``, validate, write results.

    ``project_ids`` default to the projects the run was delivered to on this server (its
    ``deliveries.jsonl``). Required questions (per the run's annotation template) left blank, values
    outside a slot and tasks that are not the run's are rejected with the reason. Each task is joined to
    the run's version of it whose text the task showed (``tasks.jsonl``, else a version kept when
    delivered); a task that showed other text is rejected as ``answer_changed``.

    A harvested task with judges' values gets ``metadata.predictions_shown`` (``_mark_predictions_shown``);
    the report counts the annotated tasks per group (``predictions_shown``: ``shown``, ``blind``), and
    leaves the count out when no annotated task had judges' values.
    """
    out = Path(out)
    _, template, tasks_path = load_run(run_dir)
    projects = project_ids or delivered_projects(run_dir, url)
    if not projects:
        raise ValueError(f"{Path(run_dir) / DELIVERIES}: no Label Studio delivery to {url} recorded; pass --project")
    outcome = HarvestOutcome()
    with LabelStudioClient(url, token) as client:
        users = client.users()
        exported = {project_id: client.export(project_id) for project_id in projects}
    wanted = {
        str((task.get("data") or {}).get("task_id"))
        for tasks in exported.values()
        for task in tasks
        if task.get("annotations")
    }
    shells = run_versions(tasks_path, wanted)
    records = delivery_records(run_dir, url)
    for project_id, tasks in exported.items():
        meta = {"platform": "label-studio", "project_id": project_id}
        for ls_task in tasks:
            one = harvest_task(ls_task, meta, users, shells, template)
            for annotated in one.annotated:
                _mark_predictions_shown(annotated, ls_task, template, records.get(project_id))
            outcome.annotated += one.annotated
            outcome.rejected += one.rejected
    outcome.annotated, waiting = carry_ratings(outcome.annotated)  # pairwise: ratings asked in another pair
    outcome.rejected += waiting
    groups = Counter(task["metadata"].get("predictions_shown") for task in outcome.annotated)
    report = {
        "platform": "label-studio",
        "url": url,
        "project_ids": projects,
        "project_urls": [project_url(url, project_id) for project_id in projects],
        **_write_outcome(outcome, out, Path(rejects) if rejects else default_rejects_path(out)),
    }
    if groups[True] or groups[False]:  # only when some task had judges' values (none: no judges, nothing to say)
        report["predictions_shown"] = {"shown": groups[True], "blind": groups[False]}
    return report


def _mark_predictions_shown(
    annotated: dict[str, Any],
    ls_task: dict[str, Any],
    template: AnnotationTemplate,
    record: dict[str, Any] | None,
) -> None:
    """Set ``metadata.predictions_shown`` of a harvested task that has judges' values (``task_builder.
    agreement`` compares the shown and the blind group), and ``metadata.annotation.prefilled_from``
    when shown.

    From the project's delivery record (its predictions mode and pre-filled judge) and the split
    (:func:`predictions_shown`); a task Label Studio holds no prediction for was not shown one, whatever
    the record says (judges' values added to the shell after delivery). A project the run has no
    delivery record of (``--project``) leaves the field out: unknown.
    """
    if record is None:
        return
    shown = predictions_shown(annotated, template, record["predictions"], record["prefill_judge"])
    if shown is None:
        return
    if "predictions" in ls_task and not ls_task["predictions"]:
        shown = False
    annotated["metadata"]["predictions_shown"] = shown
    if shown:
        annotated["metadata"]["annotation"]["prefilled_from"] = record["prefill_judge"]


def _run_shells(run_dir: str | Path, source: str | Path) -> dict[str, list[dict[str, Any]]]:
    """The run's versions of the tasks ``source`` mentions (``run_versions``: its ``tasks.jsonl`` first,
    then the versions kept when delivered; read in two passes: memory for those only)."""
    wanted: set[str] = set()
    for _, line in numbered_lines(source):
        try:
            task = bounded_json.loads(line)
        except ValueError:
            continue
        if isinstance(task, dict) and isinstance(task.get("task_id"), str):
            wanted.add(task["task_id"])
    _, _, tasks_path = load_run(run_dir)
    return run_versions(tasks_path, wanted)


def _joined(
    shell: dict[str, Any], originals: dict[str, list[dict[str, Any]]], run_dir: str | Path, problems: list[Problem]
) -> tuple[Any, list[Problem]]:
    """An annotated shell's values written into the run's own shell (blind positions mapped back), or the
    reasons it cannot be.

    The run's shell is the version of the task whose answers are the ones that came back (their text, the
    hashes delivered with a blind shell, and a non-blind shell's sources by position: ``pick_version``);
    when none is, ``answer_changed``. Text, sources and provenance come from the run, never from the line.
    """
    versions = originals.get(shell["task_id"])
    if not versions:
        return shell, [("unknown_task", f"task {shell['task_id']} is not one of the tasks of {run_dir}")]
    sources = None if is_blind(shell) else [answer["source_id"] for answer in final_answers(shell)]
    original, changed = pick_version(shell["task_id"], versions, returned_claims(shell), sources)
    problems = [("answer_changed", message) for message in changed] + problems
    if problems:
        return shell, problems
    joined = unblind(shell, original)
    return joined, annotation_problems(joined)


def harvest_file(
    source: str | Path, out: str | Path, rejects: str | Path | None = None, run_dir: str | Path | None = None
) -> dict[str, Any]:
    """Read annotated tasks already in the shell shape, keep the valid ones, reject the rest with reasons.

    Every non-blank line is read on its own: a line that is not JSON, not a JSON object, not a valid
    annotated shell (``task_builder.annotated``: shape, unknown slot keys, values) or not annotated at
    all is one reject, with the file, its line number (blank lines counted) and the reason (its kind)
    and details; the other lines are kept. Blank (whitespace-only) lines are skipped silently and not
    counted as read: editors and concatenated exports leave them, and they hold no annotation to lose.
    The report counts the lines read, annotated (accepted) and rejected, and the rejects by reason.

    With ``run_dir`` every line is joined to that run's shell by task id: the values are written into
    the run's shell (a blind shell's positions mapped back to source ids), a task the run did not make is
    rejected (``unknown_task``), and so is a line whose answers are not the run's (``answer_changed``:
    see :func:`_joined`; a version of the task kept when delivered counts as the run's). Without
    ``run_dir``, a blind shell's text is still checked against the hashes it was delivered with.
    """
    out = Path(out)
    outcome = HarvestOutcome()
    originals = _run_shells(run_dir, source) if run_dir is not None else None
    read = 0
    for number, line in numbered_lines(source):
        read += 1
        try:
            shell: Any = bounded_json.loads(line)
        except ValueError as exc:  # JSONDecodeError, bytes that are not UTF-8, or nested too deep
            shell, problems = None, [("invalid_json", str(exc))]
        else:
            problems = annotation_problems(shell)
            if not {kind for kind, _ in problems} & {"not_an_object", "invalid_shell"}:
                if originals is not None:
                    shell, problems = _joined(shell, originals, run_dir, problems)  # type: ignore[arg-type]
                else:  # without the run: the text must still be what the shell was delivered with
                    problems = [("answer_changed", m) for m in returned_text_problems(shell)] + problems
        if not problems:
            outcome.annotated.append(shell)
            continue
        task_id = shell.get("task_id") if isinstance(shell, dict) else None
        outcome.rejected.append(
            {
                "file": str(source),
                "line": number,
                "task_id": task_id,
                "reason": reject_kind(problems),
                "reasons": [message for _, message in problems],
            }
        )
    by_reason = Counter(reject["reason"] for reject in outcome.rejected)
    return {
        "platform": "file",
        "file": str(source),
        "read": read,
        **_write_outcome(outcome, out, Path(rejects) if rejects else default_rejects_path(out)),
        "rejected_by_reason": {kind: by_reason[kind] for kind in REJECT_KINDS if by_reason[kind]},
    }


@flow(name="deliver_tasks")
def deliver_tasks(
    run_dir: str,
    url: str,
    token_env: str = "LABEL_STUDIO_TOKEN",
    project_title: str | None = None,
    predictions: str = DEFAULT_MODE,
    judge: str | None = None,
) -> dict[str, Any]:
    """Deliver a finished run's tasks to Label Studio (idempotent: tasks already there are skipped), with
    a judge's values as pre-annotations per ``predictions`` (``none`` | ``all`` | ``half``)."""
    return deliver_label_studio(run_dir, url, token_from_env(token_env), project_title, predictions, judge)


@flow(name="harvest_annotations")
def harvest_annotations(
    url: str, run_dir: str, out: str, token_env: str = "LABEL_STUDIO_TOKEN", project_ids: list[int] | None = None
) -> dict[str, Any]:
    """Harvest the annotations of a run's Label Studio projects into annotated task shells (and rejects)."""
    return harvest_label_studio(url, token_from_env(token_env), run_dir, out, project_ids=project_ids)
