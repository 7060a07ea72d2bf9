"""What ``rlhf deliver`` and ``rlhf harvest`` print: a few lines for a person (counts, where the project is,
the files written). ``--json`` prints the report these lines are made from instead, for scripts."""

from __future__ import annotations

from typing import Any


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def delivery_summary(report: dict[str, Any]) -> str:
    """``rlhf deliver``'s report in words: per Label Studio project its URL and what was imported, or the files."""
    platform = report["platform"]
    if platform == "scale":
        return f"Wrote {_plural(report['tasks'], 'blind task shell')} for Scale: {report['file']}"
    if platform == "argilla":
        files = ", ".join(str(path) for name, path in report.items() if name != "platform")
        return f"Wrote an Argilla dataset: {files}"
    lines = [
        f"Delivered {report['run_dir']} to Label Studio at {report['url']}: {_plural(report['tasks_in_run'], 'task')} "
        f"in the run, {report['imported']} imported now, {report['already_delivered']} already there."
    ]
    for project in report["projects"]:
        state = "created" if project["project_created"] else "existing"
        lines.append(
            f"  {project['project_url']}  {project['project_title']!r} ({state} project {project['project_id']}, "
            f"{_plural(project['answers'], 'answer')} per task): {project['imported']} imported, "
            f"{project['already_delivered']} already there"
        )
    if not report["projects"]:
        lines.append("  no project: the run has no task with an answer to show")
    if report["imported_with_predictions"]:
        lines.append(
            f"  {report['imported_with_predictions']} task(s) arrive pre-filled with the values of judge "
            f"{report['judge']!r} (--predictions {report['predictions']})"
        )
    if report.get("annotators_per_task"):
        lines.append(
            f"  each task goes to {_plural(report['annotators_per_task'], 'annotator')} (the projects' overlap)"
        )
    if report.get("gold_imported"):
        lines.append(f"  {report['gold_imported']} gold task(s) mixed in (scored by rlhf quality, never exported)")
    if report["not_delivered_no_answers"]:
        lines.append(f"  not delivered: {_plural(report['not_delivered_no_answers'], 'task')} without any answer")
    lines.append(
        f"Annotate there; then: rlhf harvest --from label-studio --url {report['url']} --run-dir {report['run_dir']}"
    )
    return "\n".join(lines)


def harvest_summary(report: dict[str, Any]) -> str:
    """``rlhf harvest``'s report in words: what was read, kept and rejected, and the files written."""
    if report["platform"] == "label-studio":
        source = f"Label Studio at {report['url']}: " + ", ".join(report["project_urls"])
    else:
        source = f"{report['file']} ({_plural(report['read'], 'line')} read)"
    lines = [
        f"Harvested from {source}",
        f"  {_plural(report['annotated'], 'annotated task')} written to {report['out']}",
    ]
    rejected = report["rejected"]
    if rejected:
        by_reason = report.get("rejected_by_reason") or {}
        reasons = f" ({', '.join(f'{kind}: {count}' for kind, count in by_reason.items())})" if by_reason else ""
        lines.append(f"  {rejected} rejected{reasons}, each with its reason, in {report['rejects']}")
    else:
        lines.append("  nothing rejected")
    shown = report.get("predictions_shown")
    if shown:
        lines.append(f"  judges' values: {shown['shown']} annotated task(s) started from them, {shown['blind']} blind")
    return "\n".join(lines)
