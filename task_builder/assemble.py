"""Assemble a task shell from a prompt record and its providers' stored results."""

from __future__ import annotations

import random
import string
from dataclasses import dataclass
from typing import Any

from providers.config import ProviderConfig
from providers.result import CallResult
from task_builder.ids import stable_id, task_id_for
from task_builder.quality import answer_flags
from task_builder.shell import Annotation, Message, MessageContent, ModelParameters, Task, Thread, Turn
from task_builder.template import AnnotationTemplate, Dimension


@dataclass(frozen=True, slots=True)
class BatchContext:
    """What every task of a batch shares."""

    project: str
    batch: str
    run_id: str
    config_hash: str
    created_at: str
    seed: int
    template: AnnotationTemplate
    providers: tuple[ProviderConfig, ...]
    generator: dict[str, str]


def position_label(index: int) -> str:
    """``Response A``, ``Response B``, … ``Response Z``, ``Response AA``, …"""
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = string.ascii_uppercase[rem] + letters
    return f"Response {letters}"


def answer_order(seed: int, task_id: str, source_ids: list[str]) -> list[str]:
    """A seeded random permutation of the answering sources, different per task, stable across runs."""
    order = sorted(source_ids)
    random.Random(f"{seed}:{task_id}").shuffle(order)
    return order


def build_task(
    ctx: BatchContext,
    prompt_id: str,
    messages: list[dict[str, Any]],
    system: str | None,
    prompt_metadata: dict[str, Any],
    context_sources: dict[int, str],
    results: dict[str, CallResult],
) -> Task:
    """One task shell: earlier turns as context, then the prompt and one answer per answering provider."""
    task_id = task_id_for(ctx.batch, prompt_id)
    answered = {sid: r for sid, r in results.items() if r.ok}
    order = answer_order(ctx.seed, task_id, list(answered))
    by_source = {p.source_id: p for p in ctx.providers}

    turns: list[Turn] = []
    history, prompt = messages[:-1], messages[-1]
    pending: list[Message] = []
    if system:
        pending.append(_plain("system", system, "system"))
    for index, message in enumerate(history):
        if message["role"] == "user":
            pending.append(_plain("user", message["content"], "user"))
        else:
            pending.append(_plain("assistant", message["content"], context_sources.get(index, "context")))
            turns.append(Turn(id=stable_id("turn", task_id, len(turns)), messages=pending))
            pending = []

    final: list[Message] = [*pending, _plain("user", prompt["content"], "user")]
    first_answer_position = len(final)
    for offset, source_id in enumerate(order):
        position = first_answer_position + offset
        final.append(
            Message(
                role="assistant",
                content=MessageContent(text=answered[source_id].text or ""),
                source_id=source_id,
                model_parameters=ModelParameters(**by_source[source_id].shell_model_parameters()),
                annotations=_answer_slots(ctx.template, task_id, len(turns), position),
            )
        )
    turn_index = len(turns)
    turns.append(
        Turn(
            id=stable_id("turn", task_id, turn_index),
            messages=final,
            annotations=_turn_slots(ctx.template, task_id, turn_index, order),
        )
    )
    return Task(
        task_id=task_id,
        project=ctx.project,
        batch=ctx.batch,
        created_at=ctx.created_at,
        metadata=_metadata(ctx, prompt_id, prompt_metadata, order, results),
        threads=[Thread(id=stable_id("thr", task_id), turns=turns)],
    )


def _plain(role: str, text: str, source_id: str) -> Message:
    return Message(role=role, content=MessageContent(text=text), source_id=source_id)  # type: ignore[arg-type]


def _dimension_slot(dim: Dimension, slot_id: str) -> Annotation:
    return Annotation(
        id=slot_id,
        key=dim.key,
        type=dim.type,
        title=dim.title,
        description=dim.description,
        labels=dim.labels,
        possible_values=dim.values,
    )


def _answer_slots(template: AnnotationTemplate, task_id: str, turn: int, position: int) -> list[Annotation]:
    slots = [_dimension_slot(d, stable_id("ann", task_id, turn, position, d.key)) for d in template.dimensions]
    if template.rewrite:
        slots.append(
            Annotation(
                id=stable_id("ann", task_id, turn, position, "rewrite"),
                key="rewrite",
                type="text",
                title="Rewrite",
                description="Rewrite this response into the ideal answer (leave empty if it needs no change).",
            )
        )
    return slots


def _turn_slots(template: AnnotationTemplate, task_id: str, turn: int, order: list[str]) -> list[Annotation]:
    slots: list[Annotation] = []
    labels = [position_label(i) for i in range(len(order))]
    turn_cfg = template.turn
    if turn_cfg.selected_model_id and len(order) >= 2:
        slots.append(
            Annotation(
                id=stable_id("ann", task_id, turn, "turn", "selected_model_id"),
                key="selected_model_id",
                type="category",
                title="Which response is best?",
                labels=labels,
                possible_values=list(order),
            )
        )
    if turn_cfg.likert.enabled and len(order) == 2:
        slots.append(
            Annotation(
                id=stable_id("ann", task_id, turn, "turn", "likert_value"),
                key="likert_value",
                type="integer",
                title=turn_cfg.likert.title,
                labels=turn_cfg.likert.labels_for(labels[0], labels[1]),
                possible_values=list(turn_cfg.likert.values),
            )
        )
    if turn_cfg.ranking and len(order) >= 2:
        slots.append(
            Annotation(
                id=stable_id("ann", task_id, turn, "turn", "ranking"),
                key="ranking",
                type="ranked_choices",
                title="Rank the responses from best to worst",
                labels=labels,
                possible_values=list(order),
            )
        )
    if turn_cfg.justification and order:
        slots.append(
            Annotation(
                id=stable_id("ann", task_id, turn, "turn", "justification"),
                key="justification",
                type="text",
                title="Justification",
                description="Explain your judgement.",
            )
        )
    return slots


def _metadata(
    ctx: BatchContext,
    prompt_id: str,
    prompt_metadata: dict[str, Any],
    order: list[str],
    results: dict[str, CallResult],
) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    errors: dict[str, Any] = {}
    for source_id, result in results.items():
        if result.ok:
            responses[source_id] = {
                "model": result.model,
                "request_id": result.request_id,
                "finish_reason": result.finish_reason,
                "usage": {"input_tokens": result.input_tokens, "output_tokens": result.output_tokens},
                "latency_ms": result.latency_ms,
                "attempts": result.attempts,
                "created_at": result.created_at,
                "flags": answer_flags(result),
            }
        else:
            errors[source_id] = {
                "error_type": result.error_type,
                "error": result.error,
                "status_code": result.status_code,
                "attempts": result.attempts,
                "created_at": result.created_at,
            }
    meta: dict[str, Any] = {
        "prompt_id": prompt_id,
        "prompt_metadata": prompt_metadata,
        "project": ctx.project,
        "batch": ctx.batch,
        "run_id": ctx.run_id,
        "config_hash": ctx.config_hash,
        "generator": ctx.generator,
        "annotation_template": ctx.template.name,
        "response_order": order,
        "positions": {position_label(i): sid for i, sid in enumerate(order)},
        "responses": {sid: responses[sid] for sid in sorted(responses)},
        "errors": {sid: errors[sid] for sid in sorted(errors)},
    }
    system_prompts = {p.source_id: p.system_prompt for p in ctx.providers if p.system_prompt}
    if system_prompts:
        meta["provider_system_prompts"] = system_prompts
    return meta
