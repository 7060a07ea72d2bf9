"""Content hashes of the answers a task shows, so an annotation stays bound to the text it was made on.

Every delivery carries, per answer position (``response_a``, ``response_b`` …), the hash of the answer's
text as the run's shell holds it (:func:`answer_hashes`): in a Label Studio task's data and in a blind
shell's ``metadata``, under :data:`HASH_FIELD`. A hash names no model or source (the annotator reads the
text anyway), and it comes back with the annotation. Harvest compares what came back (those hashes, and the
hashes of whatever text came back) with the run's own shell (:func:`pick_version`); a difference is an
``answer_changed`` reject naming the task and the position, never an annotation joined to other text.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from task_builder.ids import position_field, position_label
from task_builder.shell import final_answers

HASH_FIELD = "text_sha256"
HASH_HEX_CHARS = 32  # 128 bits of SHA-256: no two answers of a run collide by chance

Hashes = dict[str, str]  # position field (response_a …) -> hash of that answer's text


def text_sha256(text: str) -> str:
    """The first :data:`HASH_HEX_CHARS` hex digits of the SHA-256 of ``text`` (UTF-8)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:HASH_HEX_CHARS]


def hashes_of(texts: Sequence[str]) -> Hashes:
    """The hash of each text, keyed by the position it is shown at (the first is ``response_a``)."""
    return {position_field(i): text_sha256(text) for i, text in enumerate(texts)}


def answer_hashes(shell: Mapping[str, Any]) -> Hashes:
    """The hash of each answer's text in the shell's final turn, by position."""
    return hashes_of([str(answer["content"]["text"]) for answer in final_answers(dict(shell))])


def declared_hashes(value: Any) -> Hashes | None:
    """``value`` read as :data:`HASH_FIELD` data (position -> hex string), or None when it is not that."""
    if not isinstance(value, Mapping) or not value:
        return None
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        return None
    return dict(value)


def _label(field: str, count: int) -> str:
    """``response_b`` -> ``Response B (response_b)``: how a reject names a position (an unknown field as is)."""
    labels = {position_field(i): position_label(i) for i in range(count)}
    return f"{labels[field]} ({field})" if field in labels else repr(field)


def differences(task_id: str, run: Hashes, shown: Hashes, what: str, against: str = "the run's answer") -> list[str]:
    """Why the answers ``shown`` (hashes by position, from ``what``) are not those of ``run`` (the run's
    shell, or ``against``): one message per position that differs, naming the task and the position."""
    problems = []
    fields = sorted(run.keys() | shown.keys(), key=lambda f: (len(f), f))
    for field in fields:
        ours, theirs = run.get(field), shown.get(field)
        if ours == theirs:
            continue
        if theirs is None:
            detail = f"not in {what}; {against} has sha256 {ours}"
        elif ours is None:
            detail = f"in {what} (sha256 {theirs}), but {against} is not there"
        else:
            detail = f"{what} has sha256 {theirs}, {against} {ours}: not the text annotated"
        problems.append(f"task {task_id}: {_label(field, len(fields))}: {detail}")
    return problems


def returned_claims(shell: Mapping[str, Any]) -> dict[str, Hashes]:
    """What an annotated shell that came back (blind or not) says about the text shown: the hashes of
    its answers' text, and the hashes it was delivered with (a blind shell's ``metadata.text_sha256``)."""
    claims = {"the returned text": answer_hashes(shell)}
    declared = declared_hashes((shell.get("metadata") or {}).get(HASH_FIELD))
    if declared is not None:
        claims[f"the delivered {HASH_FIELD}"] = declared
    return claims


def returned_text_problems(shell: Mapping[str, Any]) -> list[str]:
    """Without the run: why the text of a shell that came back is not the text it was delivered with
    (its ``metadata.text_sha256``, when it has one)."""
    declared = declared_hashes((shell.get("metadata") or {}).get(HASH_FIELD))
    if declared is None:
        return []
    return differences(
        str(shell.get("task_id")), declared, answer_hashes(shell), "the returned text", f"the delivered {HASH_FIELD}"
    )


def _sources(shell: Mapping[str, Any]) -> list[str]:
    return [str(answer["source_id"]) for answer in final_answers(dict(shell))]


def source_differences(task_id: str, run: Sequence[str], shown: Sequence[str]) -> list[str]:
    """Why the answers' sources by position (a non-blind shell that came back) are not the run's."""
    count = max(len(run), len(shown))
    return [
        f"task {task_id}: {_label(position_field(i), count)}: the returned shell has source {theirs!r} there, "
        f"the run's {ours!r}"
        for i, (ours, theirs) in enumerate(zip(run, shown, strict=False))
        if ours != theirs
    ]


def pick_version(
    task_id: str,
    versions: Sequence[dict[str, Any]],
    claims: Mapping[str, Hashes],
    sources: Sequence[str] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """The version of a task whose answers are the ones annotated, or why none is.

    ``versions``: the run's shells of the task, the current one (``tasks.jsonl``) first, then the versions
    kept when delivered. ``claims``: what came back says about the text shown, each as hashes by position
    and named by where it comes from (``"the delivered text_sha256"``, ``"the returned text"``). The first
    version every claim agrees with (and, for a shell that came back naming sources, whose ``sources`` by
    position are these) is the one annotated. When none does, the current version comes back with one
    message per position that differs (``answer_changed``).
    """
    for version in versions:
        hashes = answer_hashes(version)
        if all(claim == hashes for claim in claims.values()) and (
            sources is None or list(sources) == _sources(version)
        ):
            return version, []
    current = versions[0]
    hashes = answer_hashes(current)
    problems = [problem for what, claim in claims.items() for problem in differences(task_id, hashes, claim, what)]
    if sources is not None:
        problems += source_differences(task_id, _sources(current), sources)
    if len(versions) > 1:
        problems = [
            f"{problem} (nor is it any of the {len(versions) - 1} earlier version(s) kept when delivered)"
            for problem in problems
        ]
    return current, problems
