"""``rlhf agreement``: how often annotators kept the judges' suggestions, from harvested annotated tasks.

The figures are ``task_builder.agreement``'s (per judge and dimension: kept, mean absolute difference,
Cohen's kappa, by group when some tasks were delivered without predictions). This module reads the
file, writes the JSON, draws the table and, as the ``agreement_report`` flow, publishes it as a Prefect
table artifact.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import acreate_table_artifact

from common.atomic import write_json
from common.errors import InputError, InputProblem
from task_builder.agreement import ROW_COLUMNS, agreement

MAX_PROBLEMS = 20


def read_annotated(path: str | Path) -> list[dict[str, Any]]:
    """The annotated tasks of a JSONL file; a line that is not a JSON object is an :class:`InputError`
    naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise InputError([InputProblem(str(path), None, "no such file")])
    tasks, problems = [], []
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                task = json.loads(raw)
            except ValueError as exc:
                problems.append(InputProblem(str(path), number, f"not JSON ({exc})"))
                continue
            if not isinstance(task, dict):
                problems.append(InputProblem(str(path), number, "not a JSON object (an annotated task)"))
                continue
            tasks.append(task)
    if problems:
        raise InputError(problems[:MAX_PROBLEMS])
    return tasks


def agreement_from_file(annotated: str | Path, out: str | Path | None = None) -> dict[str, Any]:
    """The agreement report of an annotated file, written as JSON to ``out`` (default: ``<annotated>.agreement.json``)."""
    report = agreement(read_annotated(annotated))
    data = {"annotated": str(annotated), **report.to_dict(), "rows": report.to_rows()}
    target = Path(out) if out is not None else default_out(annotated)
    write_json(target, data)
    data["written_to"] = str(target)
    return data


def default_out(annotated: str | Path) -> Path:
    """``<annotated>.agreement.json`` beside the annotated file."""
    path = Path(annotated)
    return path.with_name(path.name.removesuffix(".jsonl") + ".agreement.json")


def agreement_table(data: dict[str, Any]) -> Any:
    """The report as a rich table: one row per judge, dimension and group."""
    from rich.table import Table

    caption = (
        f"{data['tasks_with_predictions']} task(s) with predictions, {data['tasks_without_predictions']} without; "
        "kept = the human's value equals the judge's; kappa: quadratic-weighted for scales, Cohen's for choices"
    )
    table = Table(title=f"agreement: {data['annotated']}", caption=caption)
    for column in ROW_COLUMNS:
        table.add_column(
            column.replace("_", " "), justify="left" if column in ("judge", "dimension", "group") else "right"
        )
    for row in data["rows"]:
        table.add_row(*("-" if row[c] is None else str(row[c]) for c in ROW_COLUMNS))
    return table


@flow(name="agreement_report", log_prints=False)
async def agreement_report(annotated: str, out: str | None = None) -> dict[str, Any]:
    """The agreement report of a harvested file, written as JSON and published as a Prefect table artifact."""
    data = agreement_from_file(annotated, out)
    await acreate_table_artifact(
        key="judge-agreement",
        table=data["rows"],
        description=f"How often annotators kept the judges' values ({data['annotated']})",
    )
    return data
