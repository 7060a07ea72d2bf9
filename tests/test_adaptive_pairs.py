"""Adaptive pairs (task_builder/adaptive.py, PairSelector with weights): pairs whose leaderboard intervals
overlap get the next comparisons, in proportion to the overlap."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from scripted_annotators import Annotator, annotate_all, pairwise_batch

from task_builder.adaptive import FLOOR, interval_overlap, pair_weights
from task_builder.balance import PairSelector
from task_builder.leaderboard import leaderboard


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [((0, 1), (2, 3), 0.0), ((0, 2), (1, 3), 0.5), ((0, 4), (1, 2), 1.0), ((0, 1), (0, 1), 1.0), ((0, 1), (1, 2), 0.0)],
)
def test_interval_overlap_as_a_share_of_the_narrower(
    a: tuple[float, float], b: tuple[float, float], expected: float
) -> None:
    assert interval_overlap(a, b) == pytest.approx(expected)


def test_pair_weights_from_a_leaderboard() -> None:
    board = {
        "humans": {
            "models": [
                {"source_id": "a", "ci": [1.0, 2.0]},
                {"source_id": "b", "ci": [-0.5, 0.5]},
                {"source_id": "c", "ci": [0.0, 1.0]},
            ]
        }
    }
    weights = pair_weights(board, ["c", "a", "b", "new"])
    assert weights[("a", "b")] == FLOOR  # settled: apart
    assert weights[("b", "c")] == pytest.approx(0.5)
    assert weights[("a", "c")] == FLOOR  # touching ends overlap by nothing
    assert weights[("a", "new")] == 1.0  # a model the leaderboard has not seen: undecided


def picks(weights: dict[tuple[str, str], float] | None, prompts: int = 600) -> Counter[tuple[str, str]]:
    selector = PairSelector(1, weights)
    answers = [(f"ans-{s}", s) for s in ("a", "b", "c", "d")]
    counted: Counter[tuple[str, str]] = Counter()
    for n in range(prompts):
        for x, y in selector.pairs(answers, random.Random(n)):
            counted[(x[4:], y[4:])] += 1
    return counted


def test_weighted_pairs_come_up_in_proportion_to_their_weights() -> None:
    weights = {("a", "b"): 1.0, ("a", "c"): 0.5, ("a", "d"): 0.05, ("b", "c"): 1.0, ("b", "d"): 0.25, ("c", "d"): 0.2}
    counted = picks(weights)
    total = sum(weights.values())
    for pair, weight in weights.items():
        assert counted[pair] == pytest.approx(600 * weight / total, abs=2)
    assert set(picks(None).values()) == {100}  # without weights: even, as before


def test_a_leaderboard_sends_the_next_comparisons_to_the_undecided_pair() -> None:
    strengths = {"m1": 3.0, "m2": 0.0, "m3": -0.1}
    people = [Annotator("a", accuracy=1.0), Annotator("b", accuracy=1.0)]
    board = leaderboard(annotate_all(pairwise_batch(list(strengths), 20, strengths), people), draws=200)
    weights = pair_weights(board, list(strengths))
    assert weights[("m2", "m3")] == max(weights.values()) and weights[("m2", "m3")] > 0.5
    assert weights[("m1", "m3")] == FLOOR
