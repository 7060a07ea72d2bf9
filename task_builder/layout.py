"""Layouts: how a prompt's answers become tasks (all in one, in pairs, or one by one), in what order."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from task_builder.answers import AnswerSlot
from task_builder.balance import PairSelector, PositionBalancer
from task_builder.ids import task_id_for

LayoutKind = Literal["n_way", "pairwise", "single"]


@dataclass(frozen=True, slots=True)
class PlannedTask:
    """One task to build: its id, the variant that distinguishes it, and the answer ids in order."""

    task_id: str
    variant: str
    order: list[str]
    rates: tuple[str, ...] | None = None  # pairwise: the answers whose ratings this pair asks (None: all)


class TaskLayout:
    """Plans the tasks of each prompt in batch order, balancing positions (and pairs) across the batch.

    - ``n_way``: one task with every answer (the default);
    - ``pairwise``: one task per pair of answers, all pairs or ``pairs_per_prompt`` of them chosen so
      every pair of sources is compared about equally often (or, with ``pair_weights`` from
      ``task_builder.adaptive``, in proportion to its weight: adaptive pairs);
    - ``single``: one task per answer (for SFT-style review and rewrite).
    """

    def __init__(
        self,
        kind: LayoutKind,
        batch: str,
        seed: int,
        pairs_per_prompt: int | None = None,
        pair_weights: dict[tuple[str, str], float] | None = None,
    ) -> None:
        self.kind = kind
        self.batch = batch
        self.seed = seed
        self.positions = PositionBalancer()
        self.pairs = PairSelector(pairs_per_prompt, pair_weights)

    @property
    def min_answers(self) -> int:
        """Fewest answers a prompt needs for this layout to produce any task."""
        return 2 if self.kind == "pairwise" else 1

    def plan(self, prompt_id: str, answered: Sequence[AnswerSlot]) -> list[PlannedTask]:
        """The tasks for one prompt's answered slots (an empty list if there are too few answers)."""
        if len(answered) < self.min_answers:
            return []
        items = [(slot.answer_id, slot.provider.source_id) for slot in answered]
        if self.kind == "n_way":
            return [self._task(prompt_id, "", items)]
        if self.kind == "single":
            return [self._task(prompt_id, f"single:{item[0]}", [item]) for item in sorted(items)]
        pair_rng = random.Random(f"{self.seed}:{self.batch}:{prompt_id}:pairs")
        sources = dict(items)
        pairs = [
            self._task(prompt_id, f"pair:{a}|{b}", [(a, sources[a]), (b, sources[b])])
            for a, b in self.pairs.pairs(items, pair_rng)
        ]
        return rate_once(pairs)

    def _task(self, prompt_id: str, variant: str, items: list[tuple[str, str]]) -> PlannedTask:
        task_id = task_id_for(self.batch, prompt_id, variant)
        order = self.positions.order(items, random.Random(f"{self.seed}:{task_id}"))
        return PlannedTask(task_id, variant, order)


def rate_once(pairs: list[PlannedTask]) -> list[PlannedTask]:
    """A prompt's pair tasks, each naming the answers it rates: an answer's ratings are asked in the first
    pair it appears in (in plan order) and carried into its other pairs at harvest
    (``task_builder.carried_ratings``); every pair still asks the comparison."""
    seen: set[str] = set()
    out = []
    for task in pairs:
        rates = tuple(answer for answer in task.order if answer not in seen)
        seen.update(rates)
        out.append(PlannedTask(task.task_id, task.variant, task.order, rates))
    return out
