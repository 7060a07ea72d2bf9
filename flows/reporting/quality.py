"""``rlhf quality``: do annotators agree, and who does not? From harvested annotated tasks.

The figures are ``task_builder.reliability``'s (Krippendorff's alpha per dimension with a bootstrap
interval, each annotator against the others, gold accuracy, time per task, flags). This module reads
the file, writes ``<annotated>.quality.json`` and ``<annotated>.quality.png`` beside it, draws the
console tables and, as the ``quality_report`` flow, publishes the report as a Prefect markdown artifact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import acreate_markdown_artifact

from common.atomic import write_json
from flows.reporting.agreement import read_annotated
from flows.reporting.plots import FLAG_COLOUR, OK_COLOUR, interval_chart, new_figure, save
from task_builder.reliability import Thresholds, quality


def beside(annotated: str | Path, suffix: str) -> Path:
    """``<annotated without .jsonl><suffix>`` in the annotated file's directory."""
    path = Path(annotated)
    return path.with_name(path.name.removesuffix(".jsonl") + suffix)


def quality_from_file(
    annotated: str | Path,
    out: str | Path | None = None,
    thresholds: Thresholds | None = None,
    draws: int = 1000,
    seed: int = 0,
    plot: bool = True,
) -> dict[str, Any]:
    """The quality report of an annotated file, written as JSON (default ``<annotated>.quality.json``) and
    a PNG beside it (same name, ``.png``)."""
    data = {"annotated": str(annotated), **quality(read_annotated(annotated), thresholds, draws, seed)}
    target = Path(out) if out is not None else beside(annotated, ".quality.json")
    picture = target.with_suffix(".png")
    if plot:
        quality_plot(data, picture)
        data["plot"] = str(picture)
    write_json(target, data)
    data["written_to"] = str(target)
    return data


def quality_plot(data: dict[str, Any], path: str | Path) -> None:
    """Alpha per dimension with its interval; each annotator's alpha with the others (flagged in red)."""
    dims, people = data["dimensions"], data["annotators"]
    figure, (left, right) = new_figure(2, max(len(dims), len(people)))
    interval_chart(
        left,
        [f"{d['dimension']} ({d['scale']})" for d in dims],
        [d["alpha"] for d in dims],
        [tuple(d["ci"]) if d["ci"] else None for d in dims],
        "Krippendorff's alpha (95% bootstrap interval)",
        "alpha",
        line=0.667,
    )
    interval_chart(
        right,
        [p["annotator"] for p in people],
        [p["alpha_with_others"] for p in people],
        [None] * len(people),
        "Each annotator against the others",
        "alpha with the others",
        colours=[FLAG_COLOUR if p["flagged"] else OK_COLOUR for p in people],
        line=data["thresholds"]["min_alpha"],
    )
    save(figure, path)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return f"[{_cell(value[0])}, {_cell(value[1])}]"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def quality_tables(data: dict[str, Any]) -> list[Any]:
    """Two rich tables: alpha per dimension, then one row per annotator."""
    from rich.table import Table

    dims = Table(title=f"agreement between annotators: {data['annotated']}")
    for column in ("dimension", "scale", "units", "alpha", "95% interval", "agreement"):
        dims.add_column(column, justify="left" if column in ("dimension", "scale") else "right")
    for d in data["dimensions"]:
        dims.add_row(
            d["dimension"], d["scale"], str(d["units"]), _cell(d["alpha"]), _cell(d["ci"]), _cell(d["agreement"])
        )
    people = Table(
        title="annotators",
        caption=f"flagged: alpha with the others < {data['thresholds']['min_alpha']}, "
        f"gold accuracy < {data['thresholds']['min_gold']}"
        + (f", median time < {data['thresholds']['min_seconds']} s" if data["thresholds"]["min_seconds"] else ""),
    )
    for column in ("annotator", "tasks", "pairs", "agreement", "alpha w/ others", "gold", "median s", "flags"):
        people.add_column(column, justify="left" if column in ("annotator", "flags") else "right")
    for p in data["annotators"]:
        gold = f"{p['gold']['accuracy']:.2f} ({p['gold']['n']})" if p["gold"] else "-"
        people.add_row(
            p["annotator"],
            str(p["tasks"]),
            str(p["pairs"]),
            _cell(p["agreement_with_others"]),
            _cell(p["alpha_with_others"]),
            gold,
            _cell(p["median_lead_time_s"]),
            "; ".join(p["flags"]) or "-",
            style="bold red" if p["flagged"] else None,
        )
    return [dims, people]


def quality_markdown(data: dict[str, Any]) -> str:
    """The report as markdown for the Prefect artifact."""
    lines = [
        f"# Annotator agreement: `{data['annotated']}`",
        "",
        f"{data['tasks']} task(s), {data['copies']} annotation(s), {data['gold_tasks']} gold task(s).",
        "",
        "| dimension | scale | units | alpha | 95% interval | agreement |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for d in data["dimensions"]:
        lines.append(
            f"| {d['dimension']} | {d['scale']} | {d['units']} | {_cell(d['alpha'])} | {_cell(d['ci'])} "
            f"| {_cell(d['agreement'])} |"
        )
    lines += [
        "",
        "| annotator | tasks | alpha with others | gold | median s | flags |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for p in data["annotators"]:
        gold = _cell(p["gold"]["accuracy"]) if p["gold"] else "-"
        lines.append(
            f"| {p['annotator']} | {p['tasks']} | {_cell(p['alpha_with_others'])} | {gold} "
            f"| {_cell(p['median_lead_time_s'])} | {'; '.join(p['flags']) or '-'} |"
        )
    return "\n".join(lines) + "\n"


@flow(name="quality_report", log_prints=False)
async def quality_report(annotated: str, out: str | None = None, draws: int = 1000) -> dict[str, Any]:
    """The quality report of a harvested file, written as JSON and PNG and published as a Prefect
    markdown artifact (key ``annotator-quality``)."""
    data = quality_from_file(annotated, out, draws=draws)
    await acreate_markdown_artifact(
        key="annotator-quality",
        markdown=quality_markdown(data),
        description=f"Agreement between annotators ({data['annotated']})",
    )
    return data
