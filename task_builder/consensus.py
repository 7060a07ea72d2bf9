"""One annotated task from several: resolving the annotations of a task by a rule before an export.

Several annotators of one task arrive as several annotated tasks with the same ``task_id``. A
consensus turns each group into one annotated task (the first copy's shape, slot values resolved)
that the exports (``task_builder.datasets``) read like any other. Rules, per slot:

- ``majority``: the value with the most (weighted) votes; a tie between the top values resolves to
  nothing (``null``), so a tied preference gives no DPO pair.
- ``mean``: integer slots (ratings, the Likert preference) take the weighted mean rounded to the
  nearest allowed value (halves towards the scale's middle); choices and yes/no take the majority;
  rankings take the order of the weighted mean rank (Borda), ties by first appearance.
- ``unanimous``: a slot gets a value only when every annotator gave the same one.
- ``drop-disagreements``: the task is dropped when its annotators prefer different answers (one says
  A, another B, or one a tie); otherwise slots resolve as ``mean``.

``selected_model_id`` of a two-answer task with a Likert slot follows the resolved Likert value (the
harvest rule: none on a tie). Free text (justification, rewrites) is taken from the annotator with the
highest weight whose preference matches the consensus (file order on equal weights), else left null.

Weights: ``weights[annotator]`` (default 1; 0 or below: the annotator is left out). ``exclude`` leaves
annotators out by name (the flagged ones of ``rlhf quality``). A task left with no annotator is
dropped. Gold tasks (``metadata.gold``) are never training data: they are dropped and counted.

Each resolved task records in ``metadata.annotation``: ``annotator: "consensus"``, ``annotators`` (who
was counted), ``rule`` and ``agreement``: the (unweighted) share of counted annotators whose preferred
answer (or tie) is the consensus's, null when the consensus has no preference.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from task_builder.preference import likert_winner

RULES = ("majority", "mean", "unanimous", "drop-disagreements")
CONSENSUS_ANNOTATOR = "consensus"
_TIE = "(tie)"


@dataclass
class ConsensusStats:
    """What a consensus read and left out."""

    rule: str
    annotations_read: int = 0
    tasks_written: int = 0
    dropped_gold: int = 0
    dropped_disagreement: int = 0
    dropped_no_annotator: int = 0
    annotations_excluded: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return dict(self.__dict__)


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _turn(task: dict[str, Any]) -> dict[str, Any]:
    turn: dict[str, Any] = task["threads"][0]["turns"][-1]
    return turn


def _order(task: dict[str, Any]) -> list[str]:
    return [m["source_id"] for m in _turn(task)["messages"] if m.get("role") == "assistant"]


def _slot(slots: list[dict[str, Any]], key: str) -> dict[str, Any] | None:
    return next((s for s in slots if isinstance(s, dict) and s.get("key") == key), None)


def preferred(task: dict[str, Any]) -> str | None:
    """The answer a task's annotation prefers (its source id), ``"(tie)"`` for a Likert tie, or None."""
    turn, order = _turn(task), _order(task)
    likert = _slot(turn["annotations"], "likert_value")
    if likert is not None and isinstance(likert.get("value"), int) and len(order) == 2:
        won = likert_winner(likert["possible_values"], likert["value"])
        return _TIE if won is None else order[won[0]]
    ranking = _slot(turn["annotations"], "ranking")
    if ranking is not None and isinstance(ranking.get("value"), list) and ranking["value"]:
        return str(ranking["value"][0])
    selected = _slot(turn["annotations"], "selected_model_id")
    return str(selected["value"]) if selected is not None and selected.get("value") is not None else None


def _mode(votes: list[tuple[Any, float]]) -> Any:
    totals: dict[str, tuple[Any, float]] = {}
    for value, weight in votes:
        key = repr(value)
        totals[key] = (value, totals.get(key, (value, 0.0))[1] + weight)
    ranked = sorted(totals.values(), key=lambda item: -item[1])
    if not ranked or (len(ranked) > 1 and abs(ranked[0][1] - ranked[1][1]) < 1e-12):
        return None
    return ranked[0][0]


def _mean(votes: list[tuple[Any, float]], allowed: list[int]) -> int | None:
    total = sum(w for _, w in votes)
    if not total or not allowed:
        return None
    mean = sum(v * w for v, w in votes) / total
    middle = (allowed[0] + allowed[-1]) / 2
    return min(allowed, key=lambda v: (abs(v - mean), abs(v - middle)))


def _borda(votes: list[tuple[Any, float]]) -> list[str] | None:
    scores: dict[str, float] = {}
    total = sum(w for _, w in votes)
    for ranking, weight in votes:
        for position, source in enumerate(ranking):
            scores[source] = scores.get(source, 0.0) + position * weight / total
    return sorted(scores, key=lambda s: scores[s]) if scores else None


def _resolve(slot: dict[str, Any], votes: list[tuple[Any, float]], rule: str) -> Any:
    if not votes:
        return None
    kind = slot.get("type")
    if rule == "unanimous":
        first = votes[0][0]
        return first if all(v == first for v, _ in votes) else None
    if rule == "majority":
        return _mode(votes)
    if kind == "integer":
        return _mean(votes, list(slot.get("possible_values") or []))
    if kind == "ranked_choices":
        return _borda(votes)
    return _mode(votes)


def _slots_of(task: dict[str, Any]) -> list[tuple[tuple[str, str], dict[str, Any]]]:
    """Every slot of the final turn, by (where, key): where is the answer's source id or ``turn``."""
    turn = _turn(task)
    found = [(("turn", str(s.get("key"))), s) for s in turn["annotations"] if isinstance(s, dict)]
    for message in turn["messages"]:
        for s in message.get("annotations") or []:
            if isinstance(s, dict):
                found.append(((str(message.get("source_id")), str(s.get("key"))), s))
    return found


def _merge(group: list[tuple[dict[str, Any], str, float]], rule: str) -> dict[str, Any]:
    merged = copy.deepcopy(group[0][0])
    values = [dict(_slots_of(task)) for task, _, _ in group]
    order = _order(merged)
    for where, slot in _slots_of(merged):
        if slot.get("type") == "text" or where == ("turn", "selected_model_id"):
            continue
        votes = [
            (v[where]["value"], w) for v, (_, _, w) in zip(values, group) if v.get(where, {}).get("value") is not None
        ]
        slot["value"] = _resolve(slot, votes, rule)
    turn = _turn(merged)
    likert = _slot(turn["annotations"], "likert_value")
    selected = _slot(turn["annotations"], "selected_model_id")
    if selected is not None:
        likert_given = any(v.get(("turn", "likert_value"), {}).get("value") is not None for v in values)
        if likert is not None and len(order) == 2 and likert_given:
            won = likert_winner(likert["possible_values"], likert["value"]) if likert.get("value") is not None else None
            selected["value"] = order[won[0]] if won else None
        else:
            votes = [(v[("turn", "selected_model_id")]["value"], w) for v, (_, _, w) in zip(values, group)]
            selected["value"] = _resolve(selected, [(v, w) for v, w in votes if v is not None], rule)
    winner = preferred(merged)
    agreeing = sorted(
        ((w, n) for n, (task, _, w) in enumerate(group) if winner is not None and preferred(task) == winner),
        key=lambda item: (-item[0], item[1]),
    )
    for where, slot in _slots_of(merged):
        if slot.get("type") == "text":
            source = values[agreeing[0][1]] if agreeing else None
            slot["value"] = source.get(where, {}).get("value") if source else None
    metadata = merged.setdefault("metadata", {})
    counted = [name for _, name, _ in group]
    agreement = sum(1 for task, _, _ in group if preferred(task) == winner) / len(group) if winner else None
    metadata["annotation"] = {
        "annotator": CONSENSUS_ANNOTATOR,
        "annotators": counted,
        "rule": rule,
        "agreement": None if agreement is None else round(agreement, 4),
    }
    merged["status"] = "completed"
    return merged


def consensus(
    tasks: Iterable[Any],
    rule: str = "majority",
    weights: Mapping[str, float] | None = None,
    exclude: Collection[str] = (),
) -> tuple[list[Any], ConsensusStats]:
    """The tasks resolved to one per ``task_id`` by ``rule`` (in order of first appearance), and the stats.
    Anything that is not a completed task is passed through unchanged for the export to count."""
    if rule not in RULES:
        raise ValueError(f"unknown consensus rule {rule!r} (choose {', '.join(RULES)})")
    stats = ConsensusStats(rule)
    groups: dict[str, list[tuple[dict[str, Any], str, float]]] = {}  # in order of first appearance
    passed: list[Any] = []
    for n, task in enumerate(tasks):
        stats.annotations_read += 1
        if not isinstance(task, dict) or task.get("status") != "completed" or not isinstance(task.get("task_id"), str):
            passed.append(task)
            continue
        try:
            _turn(task)
        except (KeyError, IndexError, TypeError):
            passed.append(task)
            continue
        metadata = _mapping(task.get("metadata"))
        if metadata.get("gold") is not None:
            stats.dropped_gold += 1
            continue
        name = _mapping(metadata.get("annotation")).get("annotator")
        name = name if isinstance(name, str) and name else f"anonymous-{n}"
        weight = float((weights or {}).get(name, 1.0))
        group = groups.setdefault(task["task_id"], [])
        if name in exclude or weight <= 0:
            stats.annotations_excluded += 1
        else:
            group.append((task, name, weight))
    resolved: list[Any] = []
    for group in groups.values():
        if not group:
            stats.dropped_no_annotator += 1
            continue
        if rule == "drop-disagreements" and len({preferred(task) for task, _, _ in group}) > 1:
            stats.dropped_disagreement += 1
            continue
        resolved.append(_merge(group, "mean" if rule == "drop-disagreements" else rule))
        resolved[-1]["metadata"]["annotation"]["rule"] = rule
    stats.tasks_written = len(resolved)
    return resolved + passed, stats
