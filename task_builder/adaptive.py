"""Where to spend the next annotations: pair weights from a previous leaderboard (``pairs: adaptive``).

A pair of models whose leaderboard intervals overlap is still undecided; one whose intervals are apart
is settled. The weight of a pair is the overlap of the two 95% intervals as a share of the narrower one
(1: one interval inside the other, 0: apart), never below ``floor`` so a settled pair is still checked
now and then; a pair with a model the leaderboard does not hold (or holds without an interval) weighs
1. :class:`task_builder.balance.PairSelector` given these weights picks each prompt's pairs so that,
over a batch, each pair is compared in proportion to its weight.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from itertools import combinations
from pathlib import Path
from typing import Any

FLOOR = 0.05


def interval_overlap(a: Sequence[float], b: Sequence[float]) -> float:
    """The overlap of intervals ``a`` and ``b`` as a share of the narrower one (0 to 1)."""
    low, high = max(a[0], b[0]), min(a[1], b[1])
    narrower = min(a[1] - a[0], b[1] - b[0])
    if high < low:
        return 0.0
    return 1.0 if narrower <= 0 else min(1.0, (high - low) / narrower)


def pair_weights(
    leaderboard: Mapping[str, Any], sources: Sequence[str], floor: float = FLOOR
) -> dict[tuple[str, str], float]:
    """The weight of every pair of ``sources`` (sorted pairs) from a leaderboard's human board (the
    JSON ``rlhf leaderboard`` writes: ``humans.models[*].source_id`` and ``ci``)."""
    intervals = {
        m["source_id"]: m["ci"]
        for m in (leaderboard.get("humans") or {}).get("models") or []
        if isinstance(m, dict) and _is_interval(m.get("ci"))
    }
    weights = {}
    for a, b in combinations(sorted(set(sources)), 2):
        if a in intervals and b in intervals:
            weights[(a, b)] = max(floor, interval_overlap(intervals[a], intervals[b]))
        else:
            weights[(a, b)] = 1.0
    return weights


def read_leaderboard(path: Path) -> dict[str, Any]:
    """A previous leaderboard (the JSON ``rlhf leaderboard`` writes); ``ValueError`` saying what is wrong
    when the file is missing, is not JSON, or holds no human board with intervals."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"leaderboard file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read the leaderboard file {path}: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not JSON (line {exc.lineno}: {exc.msg})") from None
    humans = data.get("humans") if isinstance(data, dict) else None
    models = humans.get("models") if isinstance(humans, dict) else None
    if (
        not isinstance(data, dict)
        or not isinstance(models, list)
        or not any(
            isinstance(m, dict) and isinstance(m.get("source_id"), str) and _is_interval(m.get("ci")) for m in models
        )
    ):
        raise ValueError(
            f"{path} holds no human leaderboard with intervals (humans.models[*].source_id and ci): "
            "give the JSON `rlhf leaderboard` wrote"
        )
    return data


def ranked_sources(leaderboard: Mapping[str, Any]) -> set[str]:
    """The models a leaderboard's human board gives an interval for."""
    models = (leaderboard.get("humans") or {}).get("models") or []
    return {m["source_id"] for m in models if isinstance(m, dict) and _is_interval(m.get("ci"))}


def _is_interval(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        and value[0] <= value[1]
    )
