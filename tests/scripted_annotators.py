"""Scripted annotators for the agreement, leaderboard and consensus tests: real task shells (built by
``task_builder.assemble.build_task``) filled the way a careful or a random annotator would fill them.

Each task has a hidden truth: which answer is better (drawn from a Bradley–Terry model with known
strengths) and a latent 1–7 rating per answer. A careful annotator reports the truth (the preference
right with probability ``accuracy``, ratings within one step); a random one picks every value
uniformly and fast.
"""

from __future__ import annotations

import copy
import math
import random
from dataclasses import dataclass
from typing import Any

from prompts.reader import PromptRecord
from providers.config import ProviderConfig
from providers.result import CallResult
from providers.slots import answer_slots
from task_builder.assemble import BatchContext, build_task
from task_builder.layout import PlannedTask
from task_builder.template import resolve_template

LIKERT = [1, 2, 3, 4, 5, 6, 7]
VERBOSITY = ["too_short", "just_right", "too_long"]


def shell(
    prompt_id: str,
    order: list[str],
    category: str | None = None,
    layout: str = "pairwise",
    task_id: str | None = None,
) -> dict[str, Any]:
    """A real task shell (template pref_ranking) with the answers of ``order`` in that order (``task_id``:
    by default ``task_<prompt>_<order>``)."""
    providers = [ProviderConfig(source_id=s, kind="openai", model=f"{s}-model") for s in order]
    slots = {slot.answer_id: slot for slot in answer_slots(providers, 1)}
    results = {s: CallResult(ok=True, text=f"Answer from {s}.", model=s, finish_reason="stop") for s in order}
    ctx = BatchContext(
        project="proj",
        batch="b1",
        run_id="run",
        config_hash="h",
        created_at="2026-01-01T00:00:00Z",
        layout=layout,
        template=resolve_template("pref_ranking"),
        generator={"name": "t", "version": "0"},
    )
    metadata = {"category": category} if category else {}
    record = PromptRecord(
        id=prompt_id, messages=[{"role": "user", "content": f"Question {prompt_id}?"}], metadata=metadata
    )
    planned = PlannedTask(task_id or f"task_{prompt_id}_{'_'.join(order)}", variant="", order=list(order))
    return build_task(ctx, record, planned, slots, results, {}).to_json_dict()


@dataclass
class Truth:
    """What a careful annotator sees in a task: the better answer's index (None: a tie) and ratings."""

    winner: int | None
    ratings: dict[str, int]


def bt_truth(order: list[str], strengths: dict[str, float], rng: random.Random) -> Truth:
    """The truth of a pairwise task under Bradley–Terry with log-strengths ``strengths``."""
    a, b = order
    p_a = 1 / (1 + math.exp(strengths[b] - strengths[a]))
    winner = 0 if rng.random() < p_a else 1
    ratings = {s: max(1, min(7, round(4 + 1.5 * strengths[s] + rng.gauss(0, 1)))) for s in order}
    return Truth(winner, ratings)


@dataclass
class Annotator:
    """One scripted annotator: ``careful`` (right with probability ``accuracy``) or ``random``."""

    name: str
    kind: str = "careful"
    accuracy: float = 0.9
    seed: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(f"{self.name}:{self.seed}")

    def likert(self, truth: Truth) -> int:
        """The Likert value (1 favours the first answer)."""
        if self.kind == "random":
            return self.rng.choice(LIKERT)
        if truth.winner is None:
            return 4
        winner = truth.winner if self.rng.random() < self.accuracy else 1 - truth.winner
        return self.rng.choice([1, 2, 3]) if winner == 0 else self.rng.choice([5, 6, 7])

    def rating(self, latent: int) -> int:
        """A 1–7 rating of an answer whose latent rating is ``latent``."""
        if self.kind == "random":
            return self.rng.choice(LIKERT)
        return max(1, min(7, latent + self.rng.choice([-1, 0, 0, 0, 1])))

    def annotate(self, task: dict[str, Any], truth: Truth) -> dict[str, Any]:
        """A completed copy of ``task`` as this annotator fills it, with a lead time."""
        done = copy.deepcopy(task)
        turn = done["threads"][0]["turns"][-1]
        order = [m["source_id"] for m in turn["messages"] if m["role"] == "assistant"]
        likert = self.likert(truth)
        for slot in turn["annotations"]:
            if slot["key"] == "likert_value":
                slot["value"] = likert
            elif slot["key"] == "selected_model_id":
                slot["value"] = None if likert == 4 else order[0 if likert < 4 else 1]
        for message in turn["messages"]:
            for slot in message["annotations"]:
                if slot["type"] == "integer":
                    slot["value"] = self.rating(truth.ratings[message["source_id"]])
                elif slot["key"] == "verbosity":
                    slot["value"] = self.rng.choice(VERBOSITY) if self.kind == "random" else "just_right"
        done["status"] = "completed"
        lead = self.rng.uniform(1, 4) if self.kind == "random" else self.rng.uniform(20, 90)
        done["metadata"]["annotation"] = {"annotator": self.name, "platform": "test", "lead_time_s": round(lead, 1)}
        return done


def pairwise_batch(
    models: list[str], per_pair: int, strengths: dict[str, float], seed: int = 0, categories: list[str] | None = None
) -> list[tuple[dict[str, Any], Truth]]:
    """``per_pair`` tasks for every pair of ``models`` (both positions, alternating), each with its truth."""
    rng = random.Random(seed)
    tasks = []
    for i, a in enumerate(models):
        for b in models[i + 1 :]:
            for n in range(per_pair):
                order = [a, b] if n % 2 == 0 else [b, a]
                category = categories[n % len(categories)] if categories else None
                tasks.append((shell(f"p{n}", order, category), bt_truth(order, strengths, rng)))
    return tasks


def annotate_all(tasks: list[tuple[dict[str, Any], Truth]], annotators: list[Annotator]) -> list[dict[str, Any]]:
    """Every annotator's copy of every task."""
    return [who.annotate(task, truth) for task, truth in tasks for who in annotators]
