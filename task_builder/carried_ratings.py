"""Pairwise layout: each answer rated once per prompt, its ratings carried into every pair it appears in.

In the pairwise layout an answer appears in several pair tasks of its prompt. Its ratings (the template's
per-answer dimensions and rewrite) are asked only in the first of them (``task_builder.layout.rate_once``;
the shell's ``metadata.rated_here`` lists the answers a pair rates); the other pairs show it for the
comparison only. At harvest :func:`carry_ratings` fills an annotated pair's other answers with the ratings
given where they were asked: by the same annotator when they annotated that pair, else by the first
annotation of it (earliest ``annotated_at``). The annotated pair records where each came from
(``metadata.carried_ratings``). A pair whose rating pair has no annotation yet is held back with the
reason (harvest again once it is annotated): a dataset never gets a pair with an answer left unrated.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from task_builder.shell import final_answers


def rated_here(shell: Mapping[str, Any]) -> set[str] | None:
    """The answers (source ids) whose ratings this task asks, or None when it asks every answer's."""
    rates = (shell.get("metadata") or {}).get("rated_here")
    return set(rates) if isinstance(rates, list) else None


def _rating_values(answer: Mapping[str, Any]) -> dict[str, Any]:
    return {slot["key"]: slot.get("value") for slot in answer.get("annotations") or []}


def _prompt_of(shell: Mapping[str, Any]) -> str:
    return str((shell.get("metadata") or {}).get("prompt_id"))


def _who(shell: Mapping[str, Any]) -> dict[str, Any]:
    return dict((shell.get("metadata") or {}).get("annotation") or {})


def carry_ratings(annotated: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The annotated shells with every pair's other answers rated (module docstring), and the rejects:
    annotated pairs whose other answers' ratings have no annotation to come from yet, with the reason."""
    sources: dict[tuple[str, str], list[dict[str, Any]]] = {}  # (prompt, answer) -> annotated pairs rating it
    for shell in annotated:
        for rated in rated_here(shell) or ():
            sources.setdefault((_prompt_of(shell), rated), []).append(shell)
    for found in sources.values():
        found.sort(key=lambda s: (str(_who(s).get("annotated_at") or ""), str(_who(s).get("annotation_id"))))
    kept: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    for shell in annotated:
        rates = rated_here(shell)
        if rates is None:
            kept.append(shell)
            continue
        filled = copy.deepcopy(shell)
        carried: dict[str, Any] = {}
        missing = []
        for position, answer in enumerate(final_answers(filled)):
            source = answer["source_id"]
            if source in rates:
                continue
            found = sources.get((_prompt_of(shell), source)) or []
            who = _who(shell).get("annotator")
            origin = next((s for s in found if _who(s).get("annotator") == who), found[0] if found else None)
            if origin is None:
                missing.append(f"Response {chr(ord('A') + position)}")
                continue
            values = next(_rating_values(a) for a in final_answers(origin) if a["source_id"] == source)
            for slot in answer.get("annotations") or []:
                if slot["key"] in values:
                    slot["value"] = values[slot["key"]]
            carried[source] = {
                "task_id": origin["task_id"],
                "annotation_id": _who(origin).get("annotation_id"),
                "annotator": _who(origin).get("annotator"),
            }
        if missing:
            info = _who(shell)
            rejected.append(
                {
                    "label_studio_task": info.get("label_studio_task"),
                    "annotation_id": info.get("annotation_id"),
                    "annotator": info.get("annotator"),
                    "task_id": shell.get("task_id"),
                    "reason": "ratings_not_annotated_yet",
                    "reasons": [
                        f"{', '.join(missing)}: rated in another pair of prompt {_prompt_of(shell)} that has no "
                        "annotation yet; harvest again once it has"
                    ],
                }
            )
            continue
        if carried:
            filled["metadata"]["carried_ratings"] = carried
        kept.append(filled)
    return kept, rejected
