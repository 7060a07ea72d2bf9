"""The versions of a run's tasks that went to annotators, kept in the run directory.

A rerun rewrites ``tasks.jsonl`` under the same task ids; if an answer's text changes (another model,
another sample), annotations made on the delivered text must still be harvested and exported against
that text, never against the new one. So every delivery appends the run's shell of each task it delivers
to ``<run_dir>/delivered/tasks.jsonl``, once per distinct version (task id + the hashes of its answers'
text, ``task_builder.answer_hash``): re-delivering unchanged tasks adds nothing, and the file holds
exactly the versions some annotator may have read. Harvest looks a task up in ``tasks.jsonl`` first and
then in the kept versions (:func:`run_versions`), and uses the one whose text the annotation was made on.
A rerun counts the delivered tasks whose text it changed (:func:`changed_since_delivery`) and says so.

The file is only ever appended to, and each line is flushed and synced before the delivery goes out; a
line cut short by a crash is skipped when read.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from task_builder.answer_hash import answer_hashes

DELIVERED = Path("delivered") / "tasks.jsonl"

Version = tuple[str, tuple[tuple[str, str], ...]]  # task id, (position, hash) of each answer


def delivered_path(run_dir: str | Path) -> Path:
    """Where the run's delivered versions are kept."""
    return Path(run_dir) / DELIVERED


def _version(shell: dict[str, Any]) -> Version:
    return str(shell["task_id"]), tuple(answer_hashes(shell).items())


def _shells(path: Path) -> Iterator[dict[str, Any]]:
    """The shells of a JSONL file; a line that is not a shell (cut short by a crash) is skipped."""
    if not path.is_file():
        return
    with path.open("rb") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                shell = json.loads(line)
            except ValueError:
                continue
            if isinstance(shell, dict) and isinstance(shell.get("task_id"), str):
                yield shell


@dataclass
class KeptVersions:
    """The versions the delivered file held when this process last read or wrote it, and its size then: a
    caller that delivers many times (a run delivering chunk by chunk) reads the file only when another
    process has appended to it since."""

    size: int = -1
    versions: set[Version] = field(default_factory=set)


@contextmanager
def keeping_delivered(
    run_dir: str | Path, cache: KeptVersions | None = None
) -> Iterator[Callable[[dict[str, Any]], None]]:
    """A function that keeps the version of a shell being delivered (once per version), synced on exit.

    Use it before the delivery goes out, so a version annotators may read is always kept.
    """
    path = delivered_path(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    size = path.stat().st_size if path.is_file() else 0
    if cache is not None and cache.size == size:
        kept = cache.versions
    else:
        kept = {_version(shell) for shell in _shells(path)}
        if cache is not None:
            cache.versions = kept
    with path.open("a", encoding="utf-8") as handle:

        def keep(shell: dict[str, Any]) -> None:
            version = _version(shell)
            if version not in kept:
                kept.add(version)
                handle.write(json.dumps(shell, ensure_ascii=False, separators=(",", ":")) + "\n")

        yield keep
        handle.flush()
        os.fsync(handle.fileno())
        if cache is not None:
            cache.size = handle.tell()


def run_versions(tasks_path: Path, task_ids: Collection[str]) -> dict[str, list[dict[str, Any]]]:
    """The run's versions of each of ``task_ids``: its shell in ``tasks_path`` first (when it has one),
    then the versions kept when delivered (newest first), each version once."""
    found: dict[str, list[dict[str, Any]]] = {}
    seen: set[Version] = set()
    for shell in _shells(tasks_path):
        if shell["task_id"] in task_ids:
            found.setdefault(shell["task_id"], []).append(shell)
            seen.add(_version(shell))
    kept: dict[str, list[dict[str, Any]]] = {}
    for shell in _shells(delivered_path(tasks_path.parent)):
        if shell["task_id"] in task_ids and _version(shell) not in seen:
            seen.add(_version(shell))
            kept.setdefault(shell["task_id"], []).append(shell)
    for task_id, versions in kept.items():
        found.setdefault(task_id, []).extend(reversed(versions))
    return found


def changed_since_delivery(run_dir: str | Path) -> int:
    """How many delivered tasks ``tasks.jsonl`` now holds with other answer text than any delivered version.

    Their delivered versions are kept (:func:`keeping_delivered`), so their annotations are still
    harvested against the text shown; a task no longer in ``tasks.jsonl`` is not counted.
    """
    delivered: dict[str, set[Version]] = {}
    for shell in _shells(delivered_path(run_dir)):
        delivered.setdefault(shell["task_id"], set()).add(_version(shell))
    if not delivered:
        return 0
    return sum(
        1
        for shell in _shells(Path(run_dir) / "tasks.jsonl")
        if shell["task_id"] in delivered and _version(shell) not in delivered[shell["task_id"]]
    )


def note_changes(run_dir: str | Path, report: dict[str, Any]) -> None:
    """After a run wrote ``tasks.jsonl``: put in its summary (``delivered_changed``) how many delivered tasks
    it changed the answer text of, and where their delivered versions are kept; nothing when none."""
    changed = changed_since_delivery(run_dir)
    if changed:
        report["delivered_changed"] = {"tasks": changed, "kept": str(delivered_path(run_dir))}


def changes_warning(report: dict[str, Any]) -> str | None:
    """The operator's warning for a run summary's ``delivered_changed``, or None."""
    changed = report.get("delivered_changed")
    if not changed:
        return None
    return (
        f"{changed['tasks']} task(s) already delivered to annotators now have other answer text: tasks.jsonl "
        f"holds the new text, the delivered versions are kept in {changed['kept']}, and rlhf harvest joins "
        "each annotation to the text it was made on. Deliver the changed tasks again (as new tasks, e.g. "
        "another batch) to have the new text annotated."
    )
