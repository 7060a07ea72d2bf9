"""PNG charts for the quality and leaderboard reports (matplotlib's object API, Agg canvas: no display,
no pyplot state, fonts shipped with matplotlib, nothing downloaded). Written atomically."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

FLAG_COLOUR = "#c0392b"
OK_COLOUR = "#2e86c1"


def _save(figure: Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    try:
        figure.savefig(str(partial), format="png")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def interval_chart(
    ax: Axes,
    labels: Sequence[str],
    values: Sequence[float | None],
    intervals: Sequence[tuple[float, float] | None],
    title: str,
    xlabel: str,
    colours: Sequence[str] | None = None,
    line: float | None = None,
) -> None:
    """Horizontal points with interval bars, one row per label (top to bottom in the given order)."""
    rows = list(range(len(labels)))[::-1]
    for row, value, interval, colour in zip(rows, values, intervals, colours or [OK_COLOUR] * len(labels)):
        if value is None:
            continue
        if interval is not None:
            ax.hlines(row, interval[0], interval[1], color=colour, linewidth=2)
        ax.plot([value], [row], "o", color=colour)
    if line is not None:
        ax.axvline(line, color="grey", linestyle="--", linewidth=1)
    ax.set_yticks(rows)
    ax.set_yticklabels(list(labels))
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)


def new_figure(panels: int, rows: int) -> tuple[Figure, list[Axes]]:
    """A figure with ``panels`` side-by-side axes sized for ``rows`` rows."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6 * panels, max(2.5, 0.45 * rows + 1.5)), layout="constrained")
    axes = figure.subplots(1, panels, squeeze=False)[0]
    return figure, list(axes)


def save(figure: Figure, path: str | Path) -> None:
    """Write the figure as PNG to ``path`` (absent or complete)."""
    _save(figure, Path(path))
