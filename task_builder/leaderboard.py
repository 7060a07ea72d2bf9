"""Which model do people prefer, and how sure is that? Bradley–Terry strengths from preferences.

**Comparisons** come from annotated tasks (:func:`task_builder.labels.read_copies`, gold tasks left out):
each annotator's copy of a task gives, from the first preference it holds,

- ``likert_value`` (two answers): the Likert winner beats the other (``task_builder.preference``); the
  midpoint is a tie, half a win each;
- ``ranking``: every pair, the better rank wins;
- ``selected_model_id``: the selected answer beats each other answer.

The judges' predictions (``metadata.predictions[judge].turn``: ``likert_value`` on the task's order,
else ``selected_model_id``) give a judge's comparisons the same way, once per task.

A comparison counts for both models whatever their positions ("both orders": A beating B in position
1 is the same evidence as B losing in position 2); no position effect is fitted.

**Fit**: the Bradley–Terry model ``P(i beats j) = 1 / (1 + exp(θ_j - θ_i))``, maximum likelihood by
Newton's method, ties as half a win each way. ``prior`` adds that many tied games between every two
models (default 1): it keeps strengths finite when a model won or lost everything and joins models
never compared directly, and with tens of comparisons per pair it moves strengths by a percent or so.
Strengths are log-odds, centred on a mean of 0: ``θ_i - θ_j`` is the log-odds of i beating j.

**Intervals**: 95% percentile bootstrap over tasks (all annotators' comparisons of a task are drawn
together, since they share the same answers), ``draws`` times, seeded.

**Win-rate matrix**: the share of comparisons of i against j that i won (ties half), with their count.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np
import numpy.typing as npt

from task_builder.labels import Copy, read_copies
from task_builder.preference import likert_winner

FloatArray = npt.NDArray[np.float64]
_DIGITS = 4
_NEWTON_STEPS = 100
_MAX_STEP = 2.0


@dataclass(frozen=True)
class Comparison:
    """``a`` against ``b`` in one task: ``score`` is a's share of the win (1, 0.5 or 0)."""

    task_id: str
    a: str
    b: str
    score: float
    category: str | None = None


def _from_preference(
    task_id: str, order: list[str], values: dict[str, Any], scale: Sequence[int] | None, category: str | None
) -> list[Comparison]:
    likert, ranking, selected = values.get("likert_value"), values.get("ranking"), values.get("selected_model_id")
    if isinstance(likert, int) and not isinstance(likert, bool) and len(order) == 2 and scale and likert in scale:
        won = likert_winner(scale, likert)
        score = 0.5 if won is None else (1.0 if won[0] == 0 else 0.0)
        return [Comparison(task_id, order[0], order[1], score, category)]
    if isinstance(ranking, list) and sorted(map(str, ranking)) == sorted(order):
        return [Comparison(task_id, str(x), str(y), 1.0, category) for x, y in combinations(ranking, 2)]
    if isinstance(selected, str) and selected in order:
        return [Comparison(task_id, selected, other, 1.0, category) for other in order if other != selected]
    return []


def _turn_values(copy: Copy) -> dict[str, Any]:
    turn = copy.task["threads"][0]["turns"][-1]
    return {str(s.get("key")): s.get("value") for s in turn["annotations"] if isinstance(s, dict)}


def human_comparisons(copies: Iterable[Copy], exclude: Collection[str] = ()) -> list[Comparison]:
    """The comparisons of every non-gold copy whose annotator is not in ``exclude``."""
    found = []
    for copy in copies:
        if copy.gold is None and copy.annotator not in exclude:
            found += _from_preference(copy.task_id, copy.order, _turn_values(copy), copy.likert_scale, copy.category)
    return found


def judge_comparisons(copies: Iterable[Copy]) -> dict[str, list[Comparison]]:
    """Each judge's comparisons from its predictions, one task once (the first copy of a task)."""
    found: dict[str, list[Comparison]] = defaultdict(list)
    seen: set[str] = set()
    for copy in copies:
        if copy.gold is not None or copy.task_id in seen:
            continue
        seen.add(copy.task_id)
        predictions = copy.task.get("metadata", {}).get("predictions")
        if not isinstance(predictions, dict):
            continue
        for judge, predicted in predictions.items():
            turn = predicted.get("turn") if isinstance(predicted, dict) else None
            if isinstance(turn, dict):
                found[str(judge)] += _from_preference(copy.task_id, copy.order, turn, copy.likert_scale, copy.category)
    return dict(found)


# --------------------------------------------------------------------------------------------------
# Fitting


def fit_batch(wins: FloatArray, prior: float = 1.0) -> FloatArray:
    """Bradley–Terry log-strengths (mean 0) for a batch of win matrices ``wins[b, i, j]`` (i's wins over
    j, ties counted half to each), by Newton's method on the log-likelihood."""
    wins = np.asarray(wins, dtype=float)
    k = wins.shape[-1]
    off = 1.0 - np.eye(k)
    w = wins + off * prior / 2
    games = w + np.swapaxes(w, -1, -2)
    won = w.sum(axis=-1)
    theta = np.zeros(wins.shape[:-1])
    ones = np.ones((k, k))
    for _ in range(_NEWTON_STEPS):
        p = 1 / (1 + np.exp(theta[..., None, :] - theta[..., :, None]))  # p[b, i, j] = P(i beats j)
        gradient = won - (games * p).sum(axis=-1)
        info = games * p * (1 - p)
        laplacian = np.eye(k) * info.sum(axis=-1)[..., None] - info
        step = np.linalg.solve(laplacian + ones, gradient[..., None])[..., 0]
        step = np.clip(step, -_MAX_STEP, _MAX_STEP)
        theta = theta + step
        theta -= theta.mean(axis=-1, keepdims=True)
        if np.abs(step).max() < 1e-10:
            break
    result: FloatArray = theta
    return result


def _contributions(models: list[str], comparisons: Sequence[Comparison]) -> FloatArray:
    """One row per comparison: its flattened k × k win matrix."""
    k = len(models)
    index = {m: i for i, m in enumerate(models)}
    rows = np.zeros((len(comparisons), k * k))
    for n, c in enumerate(comparisons):
        i, j = index[c.a], index[c.b]
        rows[n, i * k + j] += c.score
        rows[n, j * k + i] += 1 - c.score
    return rows


def _r(value: float | None) -> float | None:
    return None if value is None else round(float(value), _DIGITS)


def board(
    comparisons: Sequence[Comparison],
    models: Sequence[str] | None = None,
    draws: int = 1000,
    seed: int = 0,
    prior: float = 1.0,
) -> dict[str, Any]:
    """Strengths with 95% bootstrap intervals, ranks, counts and the win-rate matrix of ``comparisons``."""
    names = sorted(set(models or []) | {c.a for c in comparisons} | {c.b for c in comparisons})
    k = len(names)
    if k < 2 or not comparisons:
        return {"comparisons": len(comparisons), "tasks": 0, "models": [], "win_rates": {}}
    rows = _contributions(names, comparisons)
    total = rows.sum(axis=0).reshape(k, k)
    theta = fit_batch(total[None], prior)[0]
    tasks = sorted({c.task_id for c in comparisons})
    cluster = np.searchsorted(tasks, [c.task_id for c in comparisons])
    intervals: FloatArray | None = None
    if draws > 0 and len(tasks) > 1:
        rng = np.random.default_rng(seed)
        picks = rng.integers(0, len(tasks), size=(draws, len(tasks)))
        multiplicity = np.zeros((draws, len(tasks)))
        np.add.at(multiplicity, (np.arange(draws)[:, None], picks), 1)
        sampled = (multiplicity[:, cluster] @ rows).reshape(draws, k, k)
        intervals = np.percentile(fit_batch(sampled, prior), [2.5, 97.5], axis=0)
    order = np.argsort(-theta, kind="stable")
    entries = []
    for rank, i in enumerate(order, start=1):
        played = float(total[i].sum() + total[:, i].sum())
        entries.append(
            {
                "source_id": names[i],
                "rank": rank,
                "strength": _r(theta[i]),
                "ci": [_r(intervals[0][i]), _r(intervals[1][i])] if intervals is not None else None,
                "comparisons": int(round(played)),
                "win_rate": _r(total[i].sum() / played) if played else None,
            }
        )
    win_rates = {
        names[i]: {
            names[j]: {
                "rate": _r(total[i, j] / (total[i, j] + total[j, i])),
                "n": int(round(total[i, j] + total[j, i])),
            }
            for j in range(k)
            if j != i and total[i, j] + total[j, i] > 0
        }
        for i in range(k)
    }
    return {"comparisons": len(comparisons), "tasks": len(tasks), "models": entries, "win_rates": win_rates}


def leaderboard(
    tasks: Iterable[Any], draws: int = 1000, seed: int = 0, exclude: Collection[str] = (), prior: float = 1.0
) -> dict[str, Any]:
    """The human leaderboard, per prompt category when the prompts carry one, and each judge's, as plain
    data (see the module docstring); ``exclude`` leaves those annotators' preferences out."""
    copies, _, skipped = read_copies(tasks)
    humans = human_comparisons(copies, exclude)
    models = sorted({c.a for c in humans} | {c.b for c in humans})
    by_category: dict[str, list[Comparison]] = defaultdict(list)
    for c in humans:
        if c.category is not None:
            by_category[c.category].append(c)
    return {
        "copies": len(copies),
        "skipped": dict(sorted(skipped.items())),
        "excluded_annotators": sorted(exclude),
        "draws": draws,
        "prior_ties": prior,
        "humans": board(humans, models, draws, seed, prior),
        "categories": {name: board(cs, None, draws, seed, prior) for name, cs in sorted(by_category.items())},
        "judges": {name: board(cs, None, draws, seed, prior) for name, cs in sorted(judge_comparisons(copies).items())},
    }
