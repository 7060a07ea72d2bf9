"""Position balance and pair selection across a batch, so no source is favoured by where it appears.

Both are greedy over the batch in file order, with ties broken by a per-task seeded random number
generator: deterministic for the same prompts and answers, balanced to within one use per position.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter, defaultdict

from task_builder.ids import position_label


class PositionBalancer:
    """Orders each task's answers so every source lands in every position about equally often."""

    def __init__(self) -> None:
        self._counts: defaultdict[str, Counter[int]] = defaultdict(Counter)

    def order(self, answers: list[tuple[str, str]], rng: random.Random) -> list[str]:
        """Answer ids in presentation order. ``answers`` holds ``(answer_id, source_to_balance)``."""
        remaining = sorted(answers)
        rng.shuffle(remaining)
        ordered: list[str] = []
        for position in range(len(answers)):
            # min() keeps the first of equal counts: the shuffle above makes ties random.
            chosen = min(remaining, key=lambda item: self._counts[item[1]][position])
            remaining.remove(chosen)
            self._counts[chosen[1]][position] += 1
            ordered.append(chosen[0])
        return ordered

    def report(self) -> dict[str, dict[str, dict[str, float]]]:
        """Per source: how many times and what share of its appearances it held each position."""
        out: dict[str, dict[str, dict[str, float]]] = {}
        for source in sorted(self._counts):
            counts = self._counts[source]
            total = sum(counts.values())
            out[source] = {
                position_label(position): {"count": counts[position], "share": round(counts[position] / total, 4)}
                for position in sorted(counts)
            }
        return out


class PairSelector:
    """Picks ``per_prompt`` pairs of sources for each prompt, keeping pair counts even across the batch."""

    def __init__(self, per_prompt: int | None, weights: dict[tuple[str, str], float] | None = None) -> None:
        self.per_prompt = per_prompt
        # Adaptive pairs (task_builder.adaptive): each pair of sources comes up in proportion to its weight.
        self.weights = weights
        self._counts: Counter[tuple[str, str]] = Counter()

    def _due(self, pair: tuple[tuple[str, str], tuple[str, str]]) -> float:
        """How far ahead of its share a pair is: its count, or (count + 1) / weight with weights."""
        key = _key(pair)
        if self.weights is None:
            return float(self._counts[key])
        return (self._counts[key] + 1) / self.weights.get(key, 1.0)

    def pairs(self, answers: list[tuple[str, str]], rng: random.Random) -> list[tuple[str, str]]:
        """Pairs of answer ids (``answers`` holds ``(answer_id, source)``); all pairs when ``per_prompt`` is unset."""
        candidates = list(itertools.combinations(sorted(answers), 2))
        if self.per_prompt is not None and self.per_prompt < len(candidates):
            rng.shuffle(candidates)
            candidates.sort(key=self._due)  # stable: ties stay shuffled
            candidates = sorted(candidates[: self.per_prompt])
        for pair in candidates:
            self._counts[_key(pair)] += 1
        return [(a[0], b[0]) for a, b in candidates]


def _key(pair: tuple[tuple[str, str], tuple[str, str]]) -> tuple[str, str]:
    first, second = sorted((pair[0][1], pair[1][1]))
    return first, second
