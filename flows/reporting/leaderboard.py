"""``rlhf leaderboard``: Bradley–Terry strengths of the models from the humans' preferences, with the
judges' side by side.

The figures are ``task_builder.leaderboard``'s. This module reads the file, writes
``<annotated>.leaderboard.json`` and ``<annotated>.leaderboard.png`` beside it, draws the console table
and, as the ``leaderboard_report`` flow, publishes the table as a Prefect table artifact.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import acreate_table_artifact

from common.atomic import write_json
from flows.reporting.agreement import read_annotated
from flows.reporting.plots import interval_chart, new_figure, save
from flows.reporting.quality import beside
from task_builder.leaderboard import leaderboard

MAX_JUDGE_PANELS = 3


def leaderboard_from_file(
    annotated: str | Path,
    out: str | Path | None = None,
    draws: int = 1000,
    seed: int = 0,
    exclude: Collection[str] = (),
    plot: bool = True,
) -> dict[str, Any]:
    """The leaderboard of an annotated file, written as JSON (default ``<annotated>.leaderboard.json``)
    and a PNG beside it (same name, ``.png``)."""
    data = {"annotated": str(annotated), **leaderboard(read_annotated(annotated), draws, seed, exclude)}
    data["rows"] = leaderboard_rows(data)
    target = Path(out) if out is not None else beside(annotated, ".leaderboard.json")
    if plot and data["humans"]["models"]:
        picture = target.with_suffix(".png")
        leaderboard_plot(data, picture)
        data["plot"] = str(picture)
    write_json(target, data)
    data["written_to"] = str(target)
    return data


def _interval(entry: dict[str, Any] | None) -> str:
    if entry is None:
        return "-"
    ci = entry["ci"]
    return f"{entry['strength']:+.2f}" + (f" [{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else "")


def leaderboard_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per model in the humans' order: rank, strength [interval], win rate, comparisons, and each
    judge's strength [interval] and rank."""
    rows = []
    for entry in data["humans"]["models"]:
        row = {
            "rank": entry["rank"],
            "source_id": entry["source_id"],
            "humans": _interval(entry),
            "win_rate": entry["win_rate"],
            "comparisons": entry["comparisons"],
        }
        for judge, board in data["judges"].items():
            theirs = next((m for m in board["models"] if m["source_id"] == entry["source_id"]), None)
            row[judge] = _interval(theirs) + (f" (#{theirs['rank']})" if theirs else "")
        rows.append(row)
    return rows


def leaderboard_table(data: dict[str, Any]) -> list[Any]:
    """Rich tables: the leaderboard (humans, then each judge), and one per prompt category."""
    from rich.table import Table

    humans = data["humans"]
    main = Table(
        title=f"leaderboard: {data['annotated']}",
        caption=f"Bradley–Terry log-strength (mean 0) [95% bootstrap interval over {humans['tasks']} tasks, "
        f"{data['draws']} draws]; {humans['comparisons']} human comparisons"
        + (f"; left out: {', '.join(data['excluded_annotators'])}" if data["excluded_annotators"] else ""),
    )
    columns = list(data["rows"][0]) if data["rows"] else ["rank", "source_id", "humans"]
    for column in columns:
        main.add_column(column.replace("_", " "), justify="left" if column == "source_id" else "right")
    for row in data["rows"]:
        main.add_row(*("-" if row[c] is None else str(row[c]) for c in columns))
    tables = [main]
    for name, board in data["categories"].items():
        table = Table(title=f"category {name!r} ({board['comparisons']} comparisons)")
        for column in ("rank", "source_id", "strength [95%]", "win rate"):
            table.add_column(column, justify="left" if column == "source_id" else "right")
        for entry in board["models"]:
            table.add_row(str(entry["rank"]), entry["source_id"], _interval(entry), str(entry["win_rate"]))
        tables.append(table)
    return tables


def leaderboard_plot(data: dict[str, Any], path: str | Path) -> None:
    """Strengths with intervals: humans, then up to three judges on the same models and axis."""
    models = [m["source_id"] for m in data["humans"]["models"]]
    panels = [("humans", data["humans"])] + list(data["judges"].items())[:MAX_JUDGE_PANELS]
    figure, axes = new_figure(len(panels), len(models))
    for ax, (name, board) in zip(axes, panels):
        by_id = {m["source_id"]: m for m in board["models"]}
        entries = [by_id.get(model) for model in models]
        interval_chart(
            ax,
            models,
            [e["strength"] if e else None for e in entries],
            [tuple(e["ci"]) if e and e["ci"] else None for e in entries],
            f"{name} ({board['comparisons']} comparisons)",
            "Bradley–Terry log-strength",
            line=0.0,
        )
    save(figure, path)


@flow(name="leaderboard_report", log_prints=False)
async def leaderboard_report(annotated: str, out: str | None = None, draws: int = 1000) -> dict[str, Any]:
    """The leaderboard of a harvested file, written as JSON and PNG and published as a Prefect table
    artifact (key ``model-leaderboard``)."""
    data = leaderboard_from_file(annotated, out, draws=draws)
    await acreate_table_artifact(
        key="model-leaderboard",
        table=data["rows"],
        description=f"Bradley–Terry strengths from human preferences, judges beside ({data['annotated']})",
    )
    return data
