"""Where to spend the next annotations: pair weights from a previous leaderboard (``pairs: adaptive``).

A pair of models whose leaderboard intervals overlap is still undecided; one whose intervals are apart
is settled. The weight of a pair is the overlap of the two 95% intervals as a share of the narrower one
(1: one interval inside the other, 0: apart), never below ``floor`` so a settled pair is still checked
now and then; a pair with a model the leaderboard does not hold (or holds without an interval) weighs
1. :class:`task_builder.balance.PairSelector` given these weights picks each prompt's pairs so that,
over a batch, each pair is compared in proportion to its weight.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations
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
        if isinstance(m, dict) and isinstance(m.get("ci"), list) and len(m["ci"]) == 2
    }
    weights = {}
    for a, b in combinations(sorted(set(sources)), 2):
        if a in intervals and b in intervals:
            weights[(a, b)] = max(floor, interval_overlap(intervals[a], intervals[b]))
        else:
            weights[(a, b)] = 1.0
    return weights
