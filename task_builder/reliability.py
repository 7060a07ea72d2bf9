"""Do annotators agree? Krippendorff's alpha per dimension, each annotator against the others, gold.

Input: annotated tasks read into copies by :func:`task_builder.labels.read_copies` (one per task and
annotator). For each dimension (a rating, a choice, a yes/no, the preference ``likert_value`` and
``selected_model_id``) the **units** are the answers (or the turn) of the non-gold tasks, and each
annotator's value of a unit is one coding.

Figures:

- ``alpha``: Krippendorff's alpha (the ``krippendorff`` package) with the interval metric for scales
  (integer slots, the Likert preference) and the nominal metric for choices and yes/no. Only units
  coded by two or more annotators count (pairable values). Undefined (fewer than two pairable values,
  or one value throughout so no disagreement is expected) is ``None``.
- ``ci``: a 95% percentile bootstrap interval of alpha over units drawn with replacement (``draws``
  times, seeded: the same input gives the same interval).
- ``agreement``: the share of pairs of codings of one unit by two annotators that are equal.
- per annotator, ``alpha_with_others`` per dimension: ``1 - D_o(a) / D_e``, where ``D_o(a)`` is the
  mean distance between the annotator's value and each other annotator's value of the same unit
  (each unit weighted as alpha weights it, ``1 / (m_u - 1)`` per pair) and ``D_e`` is alpha's expected
  distance over all pairable values. 1 is perfect agreement with the others, 0 is what a coder picking
  values at random from the data's distribution gets, below 0 is systematic disagreement. The
  annotator's overall figure is the mean over dimensions, weighted by the pairs compared.
- ``agreement_with_others``: the share of equal pairs between the annotator's codings and the others'.
- ``gold``: on gold tasks (``metadata.gold``), the share of the known values the annotator matched:
  choices and yes/no exactly, integer ratings within ``gold_tolerance``, the Likert preference by its
  direction (the same answer preferred, or both a tie).
- ``median_lead_time_s``: the median seconds per task (Label Studio's lead time) when recorded.

Flags (an annotator with at least ``min_pairs`` compared values, or ``min_pairs`` gold values):
``alpha_with_others < min_alpha``, ``gold accuracy < min_gold``, ``median time < min_seconds``.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import krippendorff
import numpy as np
import numpy.typing as npt

from task_builder.labels import Copy, Dimension, read_copies
from task_builder.preference import likert_winner

FloatArray = npt.NDArray[np.float64]
_DIGITS = 4


@dataclass(frozen=True)
class Thresholds:
    """When an annotator is flagged (see the module docstring)."""

    min_alpha: float = 0.2
    min_gold: float = 0.6
    min_seconds: float | None = None
    min_pairs: int = 10
    gold_tolerance: int = 1


# --------------------------------------------------------------------------------------------------
# Alpha


def distances(domain: Sequence[Any], scale: str) -> FloatArray:
    """The squared distance δ² between each two values of ``domain``: 0/1 (nominal) or (a - b)² (interval)."""
    if scale == "interval":
        values = np.asarray(domain, dtype=float)
        squared: FloatArray = (values[:, None] - values[None, :]) ** 2
        return squared
    nominal: FloatArray = 1.0 - np.eye(len(domain))
    return nominal


def _pairable(counts: FloatArray) -> FloatArray:
    rows: FloatArray = counts[counts.sum(axis=1) >= 2]
    return rows


def expected_distance(counts: FloatArray, delta: FloatArray) -> float | None:
    """Alpha's ``D_e`` of a units × values count matrix (None: fewer than two pairable values)."""
    totals = _pairable(counts).sum(axis=0)
    n = float(totals.sum())
    if n < 2:
        return None
    return float(totals @ delta @ totals - (np.diag(delta) * totals).sum()) / (n * (n - 1))


def alpha(counts: FloatArray, domain: Sequence[Any], scale: str) -> float | None:
    """Krippendorff's alpha of a units × values count matrix (``counts[u, v]``: how many annotators gave
    unit ``u`` the value ``domain[v]``); None when undefined."""
    pairable = _pairable(np.asarray(counts, dtype=float))
    if pairable.shape[0] == 0 or np.count_nonzero(pairable.sum(axis=0)) < 2:
        return None
    value_domain = list(domain) if scale == "interval" else list(range(len(domain)))
    level: Literal["interval", "nominal"] = "interval" if scale == "interval" else "nominal"
    result = float(krippendorff.alpha(value_counts=pairable, value_domain=value_domain, level_of_measurement=level))
    return None if result != result else result


def resampled_alphas(counts: FloatArray, domain: Sequence[Any], scale: str, picks: npt.NDArray[np.int64]) -> FloatArray:
    """Alpha of each resample of the pairable units of ``counts`` (``picks[d]``: the unit indices of draw
    ``d``), all draws at once: each unit's coincidences are computed once and a draw's coincidence matrix
    is their sum weighted by how often the draw picked the unit. NaN where alpha is undefined."""
    pairable = _pairable(np.asarray(counts, dtype=float))
    units, values = pairable.shape
    per_unit = pairable.sum(axis=1)
    coincidences = pairable[:, :, None] * pairable[:, None, :]
    coincidences[:, np.arange(values), np.arange(values)] -= pairable
    coincidences /= (per_unit - 1)[:, None, None]
    delta = distances(domain, scale)
    results = []
    for chunk in np.array_split(picks, max(1, len(picks) // 100)):  # ~100 draws at a time: bounded memory
        flat = (np.arange(len(chunk))[:, None] * units + chunk).ravel()
        weights = np.bincount(flat, minlength=len(chunk) * units).reshape(len(chunk), units).astype(float)
        observed = (weights @ coincidences.reshape(units, values * values)).reshape(len(chunk), values, values)
        totals = observed.sum(axis=2)
        n = totals.sum(axis=1)
        disagreement = (observed * delta).sum(axis=(1, 2))
        expected = np.einsum("bi,ij,bj->b", totals, delta, totals)
        with np.errstate(divide="ignore", invalid="ignore"):
            results.append(1 - (n - 1) * disagreement / expected)
    joined: FloatArray = np.concatenate(results) if results else np.zeros(0)
    return np.where(np.isfinite(joined), joined, np.nan)


def bootstrap_alpha(
    counts: FloatArray, domain: Sequence[Any], scale: str, draws: int, seed: int = 0
) -> tuple[float, float] | None:
    """A 95% percentile interval of alpha over units resampled with replacement (None: undefined)."""
    units = _pairable(np.asarray(counts, dtype=float)).shape[0]
    if units < 2 or draws < 1 or alpha(counts, domain, scale) is None:
        return None
    picks = np.random.default_rng(seed).integers(0, units, size=(draws, units))
    values = resampled_alphas(counts, domain, scale, picks)
    values = values[~np.isnan(values)]
    if len(values) < draws / 2:  # mostly undefined: no honest interval
        return None
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


# --------------------------------------------------------------------------------------------------
# Report


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, _DIGITS)


@dataclass
class _Tally:
    pairs: float = 0.0  # alpha-weighted pairs
    distance: float = 0.0  # alpha-weighted distance
    compared: int = 0  # plain pairs
    equal: int = 0


def _units(copies: Iterable[Copy]) -> dict[str, dict[tuple[str, str], dict[str, Any]]]:
    """By dimension key, by unit (task id, answer source id or "turn"): each annotator's value (their
    first, if they annotated a task twice)."""
    units: dict[str, dict[tuple[str, str], dict[str, Any]]] = defaultdict(lambda: defaultdict(dict))
    for copy in copies:
        for (key, unit), value in copy.values.items():
            units[key][(copy.task_id, unit)].setdefault(copy.annotator, value)
    return units


def _gold_hit(copy: Copy, key: str, unit: str, known: Any, tolerance: int) -> bool | None:
    given = copy.values.get((key, unit))
    if given is None:
        return None
    if key == "likert_value" and copy.likert_scale:
        if not isinstance(known, int) or known not in copy.likert_scale:
            return None
        won, truth = likert_winner(copy.likert_scale, given), likert_winner(copy.likert_scale, known)
        return (won[0] if won else None) == (truth[0] if truth else None)
    if isinstance(given, int) and not isinstance(given, bool) and isinstance(known, int):
        return abs(given - known) <= tolerance
    return bool(given == known)


def _gold(copies: Iterable[Copy], tolerance: int) -> dict[str, tuple[int, int]]:
    scores: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for copy in copies:
        for unit, known_values in (copy.gold or {}).items():
            if not isinstance(known_values, dict):
                continue
            for key, known in known_values.items():
                hit = _gold_hit(copy, key, unit, known, tolerance)
                if hit is not None:
                    scores[copy.annotator][0] += int(hit)
                    scores[copy.annotator][1] += 1
    return {name: (hits, n) for name, (hits, n) in scores.items()}


def _dimension_figures(
    dimension: Dimension,
    units: dict[tuple[str, str], dict[str, Any]],
    draws: int,
    seed: int,
    tallies: dict[str, dict[str, _Tally]],
) -> tuple[dict[str, Any], dict[tuple[str, str], list[int]]]:
    index = {value: i for i, value in enumerate(dimension.domain)}
    counts = np.zeros((len(units), len(dimension.domain)))
    for row, coders in enumerate(units.values()):
        for value in coders.values():
            counts[row, index[value]] += 1
    delta = distances(dimension.domain, dimension.scale)
    expected = expected_distance(counts, delta)
    pair_counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    equal = compared = 0
    for coders in units.values():
        names = sorted(coders)
        m = len(names)
        if m < 2:
            continue
        for a in names:
            tally = tallies[a].setdefault(dimension.key, _Tally())
            for b in names:
                if a == b:
                    continue
                d = float(delta[index[coders[a]], index[coders[b]]])
                tally.pairs += 1 / (m - 1)
                tally.distance += d / (m - 1)
                tally.compared += 1
                tally.equal += int(coders[a] == coders[b])
                if a < b:
                    pair_counts[(a, b)][0] += int(coders[a] == coders[b])
                    pair_counts[(a, b)][1] += 1
                    equal, compared = equal + int(coders[a] == coders[b]), compared + 1
    value = alpha(counts, dimension.domain, dimension.scale)
    interval = bootstrap_alpha(counts, dimension.domain, dimension.scale, draws, seed) if value is not None else None
    figures = {
        "dimension": dimension.key,
        "level": dimension.level,
        "scale": dimension.scale,
        "units": int((counts.sum(axis=1) >= 2).sum()),
        "values": int(_pairable(counts).sum()),
        "alpha": _r(value),
        "ci": [_r(interval[0]), _r(interval[1])] if interval else None,
        "agreement": _r(equal / compared) if compared else None,
        "expected_distance": expected,
    }
    return figures, pair_counts


def quality(
    tasks: Iterable[Any], thresholds: Thresholds | None = None, draws: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """The agreement report of annotated tasks as plain data (see the module docstring)."""
    limits = thresholds or Thresholds()
    copies, dimensions, skipped = read_copies(tasks)
    work = [c for c in copies if c.gold is None]
    tallies: dict[str, dict[str, _Tally]] = defaultdict(dict)
    pairwise: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    rows = []
    units = _units(work)
    for dimension in dimensions.values():
        figures, pairs = _dimension_figures(dimension, units.get(dimension.key, {}), draws, seed, tallies)
        rows.append(figures)
        for names, (eq, n) in pairs.items():
            pairwise[names][0] += eq
            pairwise[names][1] += n
    expected = {row["dimension"]: row.pop("expected_distance") for row in rows}
    gold = _gold(copies, limits.gold_tolerance)
    annotators = []
    for name in sorted({c.annotator for c in copies}):
        mine = [c for c in copies if c.annotator == name]
        times = [c.lead_time_s for c in mine if c.lead_time_s is not None]
        by_dimension: dict[str, Any] = {}
        weighted = total_pairs = 0.0
        compared = equal = 0
        for key, tally in tallies.get(name, {}).items():
            d_e = expected.get(key)
            score = 1 - (tally.distance / tally.pairs) / d_e if d_e and tally.pairs else None
            by_dimension[key] = {
                "pairs": tally.compared,
                "agreement": _r(tally.equal / tally.compared) if tally.compared else None,
                "alpha_with_others": _r(score),
            }
            if score is not None:
                weighted += score * tally.compared
                total_pairs += tally.compared
            compared += tally.compared
            equal += tally.equal
        overall = weighted / total_pairs if total_pairs else None
        hits, gold_n = gold.get(name, (0, 0))
        median = statistics.median(times) if times else None
        flags = []
        if overall is not None and compared >= limits.min_pairs and overall < limits.min_alpha:
            flags.append(f"alpha with the others {overall:.2f} < {limits.min_alpha}")
        if gold_n >= limits.min_pairs and hits / gold_n < limits.min_gold:
            flags.append(f"gold accuracy {hits / gold_n:.2f} < {limits.min_gold}")
        if limits.min_seconds is not None and median is not None and median < limits.min_seconds:
            flags.append(f"median time {median:.1f} s < {limits.min_seconds} s")
        annotators.append(
            {
                "annotator": name,
                "tasks": len({c.task_id for c in mine if c.gold is None}),
                "gold_tasks": len({c.task_id for c in mine if c.gold is not None}),
                "pairs": compared,
                "agreement_with_others": _r(equal / compared) if compared else None,
                "alpha_with_others": _r(overall),
                "gold": {"n": gold_n, "accuracy": _r(hits / gold_n)} if gold_n else None,
                "median_lead_time_s": _r(median),
                "by_dimension": by_dimension,
                "flags": flags,
                "flagged": bool(flags),
            }
        )
    all_times = [c.lead_time_s for c in copies if c.lead_time_s is not None]
    return {
        "copies": len(copies),
        "tasks": len({c.task_id for c in work}),
        "gold_tasks": len({c.task_id for c in copies if c.gold is not None}),
        "skipped": dict(sorted(skipped.items())),
        "draws": draws,
        "thresholds": {
            "min_alpha": limits.min_alpha,
            "min_gold": limits.min_gold,
            "min_seconds": limits.min_seconds,
            "min_pairs": limits.min_pairs,
            "gold_tolerance": limits.gold_tolerance,
        },
        "median_lead_time_s": _r(statistics.median(all_times)) if all_times else None,
        "dimensions": rows,
        "annotators": annotators,
        "pairwise": [
            {"a": a, "b": b, "pairs": n, "agreement": _r(eq / n) if n else None}
            for (a, b), (eq, n) in sorted(pairwise.items())
        ],
        "flagged": [a["annotator"] for a in annotators if a["flagged"]],
    }
