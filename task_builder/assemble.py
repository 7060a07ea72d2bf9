"""Assemble a task shell from a prompt record, a planned layout and the stored results."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from common.images import IMAGES_DIR, stored_name
from prompts.reader import PromptRecord
from task_builder.answers import AnswerResult, AnswerSlot
from task_builder.ids import position_label, stable_id
from task_builder.layout import PlannedTask
from task_builder.predictions import Judgement, task_predictions
from task_builder.shapes import LABELS, AnswerPolicy, shown_text
from task_builder.shell import (
    Annotation,
    Attachment,
    Message,
    MessageContent,
    ModelParameters,
    Reasoning,
    Task,
    Thread,
    Turn,
)
from task_builder.template import AnnotationTemplate


@dataclass(frozen=True, slots=True)
class BatchContext:
    """What every task of a batch shares."""

    project: str
    batch: str
    run_id: str
    config_hash: str
    created_at: str
    layout: str
    template: AnnotationTemplate
    generator: dict[str, str]
    answers: AnswerPolicy = AnswerPolicy()


def build_task(
    ctx: BatchContext,
    record: PromptRecord,
    planned: PlannedTask,
    slots: Mapping[str, AnswerSlot],
    results: Mapping[str, AnswerResult],
    flags: dict[str, list[str]],
    judgements: Mapping[str, Judgement] | None = None,
) -> Task:
    """One task shell: earlier turns as context, then the prompt and the planned answers in order.

    ``results`` holds every slot's result for the prompt (answers and errors); ``flags`` the quality
    flags of the answers in this task; ``judgements`` the judges' values for the prompt, which go to
    ``metadata.predictions`` (``task_builder.predictions``), never into the annotation slots.
    """
    task_id = planned.task_id
    turns: list[Turn] = []
    history, prompt = record.messages[:-1], record.messages[-1]
    pending: list[Message] = []
    if record.system:
        pending.append(_plain("system", record.system, "system"))
    for index, message in enumerate(history):
        if message["role"] == "user":
            pending.append(_user(message))
        else:
            pending.append(_plain("assistant", message["content"], record.context_sources.get(index, "context")))
            turns.append(Turn(id=stable_id("turn", task_id, len(turns)), messages=pending))
            pending = []

    final: list[Message] = [*pending, _user(prompt)]
    first_answer_position = len(final)
    for offset, answer_id in enumerate(planned.order):
        result = results[answer_id]
        final.append(
            Message(
                role="assistant",
                content=MessageContent(text=shown_text(result), reasoning=_reasoning(result)),
                source_id=answer_id,
                model_parameters=ModelParameters(**slots[answer_id].provider.shell_model_parameters()),
                annotations=_answer_slots(ctx.template, task_id, len(turns), first_answer_position + offset),
            )
        )
    turn_index = len(turns)
    turns.append(
        Turn(
            id=stable_id("turn", task_id, turn_index),
            messages=final,
            annotations=_turn_slots(ctx.template, task_id, turn_index, planned.order),
        )
    )
    return Task(
        task_id=task_id,
        project=ctx.project,
        batch=ctx.batch,
        created_at=ctx.created_at,
        metadata=_metadata(ctx, record, planned, slots, results, flags, judgements or {}),
        threads=[Thread(id=stable_id("thr", task_id), turns=turns)],
    )


def _reasoning(result: AnswerResult) -> list[Reasoning] | None:
    """The answer's readable thinking, block by block (redacted blocks have none to show)."""
    blocks = [Reasoning(content=b["content"]) for b in result.reasoning or () if b.get("content")]
    return blocks or None


def _user(message: dict[str, Any]) -> Message:
    """A user message of the prompt, with its images as ``content.attachments``."""
    images = message.get("images")
    if not images:
        return _plain("user", message["content"], "user")
    attachments = [attachment(ref) for ref in images]
    return Message(
        role="user", content=MessageContent(text=message["content"], attachments=attachments), source_id="user"
    )


def attachment(ref: dict[str, Any]) -> Attachment:
    """The shell's attachment for an image reference (``prompts.images``): its URL when it has one, else
    its copy in the run directory (``images/<sha256>.<ext>``)."""
    if "url" in ref:
        return Attachment(url=ref["url"], name=ref.get("name"))
    return Attachment(
        url=f"{IMAGES_DIR}/{stored_name(ref['sha256'], ref['media_type'])}",
        mime_type=ref["media_type"],
        name=ref.get("name"),
        file_size_in_bytes=ref.get("size"),
    )


def _plain(role: str, text: str, source_id: str) -> Message:
    return Message(role=role, content=MessageContent(text=text), source_id=source_id)  # type: ignore[arg-type]


def _slot(task_id: str, turn: int, where: int | str, key: str, kind: str, **fields: Any) -> Annotation:
    """An empty slot; its id derives from the task, the turn, where it sits (a position or "turn") and its key."""
    return Annotation(id=stable_id("ann", task_id, turn, where, key), key=key, type=kind, **fields)  # type: ignore[arg-type]


def _answer_slots(template: AnnotationTemplate, task_id: str, turn: int, position: int) -> list[Annotation]:
    slots = [
        _slot(
            task_id,
            turn,
            position,
            d.key,
            d.type,
            title=d.title,
            description=d.description,
            labels=d.labels,
            possible_values=d.values,
        )
        for d in template.dimensions
    ]
    if template.rewrite:
        slots.append(
            _slot(
                task_id,
                turn,
                position,
                "rewrite",
                "text",
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
            _slot(
                task_id,
                turn,
                "turn",
                "selected_model_id",
                "category",
                title="Which response is best?",
                labels=labels,
                possible_values=list(order),
            )
        )
    if turn_cfg.likert.enabled and len(order) == 2:
        slots.append(
            _slot(
                task_id,
                turn,
                "turn",
                "likert_value",
                "integer",
                title=turn_cfg.likert.title,
                labels=turn_cfg.likert.labels_for(labels[0], labels[1]),
                possible_values=list(turn_cfg.likert.values),
            )
        )
    if turn_cfg.ranking and len(order) >= 2:
        # Scale's ranked_choices has no possible_values: the value is the answers' source ids, best
        # first; metadata.positions maps these labels to them.
        slots.append(
            _slot(
                task_id,
                turn,
                "turn",
                "ranking",
                "ranked_choices",
                title="Rank the responses from best to worst",
                labels=labels,
            )
        )
    if turn_cfg.justification and order:
        slots.append(
            _slot(
                task_id,
                turn,
                "turn",
                "justification",
                "text",
                title="Justification",
                description="Explain your judgement.",
            )
        )
    return slots


def _metadata(
    ctx: BatchContext,
    record: PromptRecord,
    planned: PlannedTask,
    slots: Mapping[str, AnswerSlot],
    results: Mapping[str, AnswerResult],
    flags: dict[str, list[str]],
    judgements: Mapping[str, Judgement],
) -> dict[str, Any]:
    sampled = any(slot.answer_id != slot.provider.source_id for slot in slots.values())
    responses: dict[str, Any] = {}
    for answer_id in sorted(planned.order):
        result, slot = results[answer_id], slots[answer_id]
        shape = ctx.answers.shape(result)
        entry: dict[str, Any] = {
            "model": result.model,
            "request_id": result.request_id,
            "finish_reason": result.finish_reason,
            "vendor_finish_reason": result.vendor_finish_reason,
            "shape": shape,
            "label": LABELS.get(shape),
            "usage": _usage(result),
            "latency_ms": result.latency_ms,
            "attempts": result.attempts,
            "created_at": result.created_at,
            "flags": [*flags.get(answer_id, []), *result.flags],
        }
        if result.cost_usd is not None:  # what the answer cost, as recorded in the store (README "Budgets")
            entry["cost_usd"] = result.cost_usd
        if result.tool_calls:
            entry["tool_calls"] = result.tool_calls
        if result.reasoning:
            entry["reasoning_blocks"] = {
                "thinking": sum(1 for b in result.reasoning if not b.get("redacted")),
                "redacted": sum(1 for b in result.reasoning if b.get("redacted")),
            }
        if sampled:
            entry["provider"] = slot.provider.source_id
            entry["sample"] = slot.sample + 1
        responses[answer_id] = entry
    errors = {
        answer_id: {
            "error_type": result.error_type,
            "error": result.error,
            "status_code": result.status_code,
            "attempts": result.attempts,
            "created_at": result.created_at,
        }
        for answer_id, result in sorted(results.items())
        if not result.ok
    }
    left_out = left_out_answers(ctx.answers, results)
    meta: dict[str, Any] = {
        "prompt_id": record.id,
        "prompt_metadata": record.metadata,
        "project": ctx.project,
        "batch": ctx.batch,
        "run_id": ctx.run_id,
        "config_hash": ctx.config_hash,
        "generator": ctx.generator,
        "annotation_template": ctx.template.name,
        "layout": ctx.layout,
        "response_order": list(planned.order),
        "positions": {position_label(i): answer_id for i, answer_id in enumerate(planned.order)},
        "responses": responses,
        "errors": errors,
    }
    if left_out:
        meta["left_out"] = left_out
    if planned.variant:
        meta["variant"] = planned.variant
    if planned.rates is not None:
        meta["rated_here"] = list(planned.rates)  # pairwise: the answers rated in this pair (the rest elsewhere)
    system_prompts = {
        slot.provider.source_id: slot.provider.system_prompt for slot in slots.values() if slot.provider.system_prompt
    }
    if system_prompts:
        meta["provider_system_prompts"] = dict(sorted(system_prompts.items()))
    predictions = task_predictions(ctx.template, planned.order, judgements)
    if predictions:
        meta["predictions"] = predictions
    return meta


def _usage(result: AnswerResult) -> dict[str, int | None]:
    """An answer's token counts: input and output, and the parts of them that are priced apart."""
    usage: dict[str, int | None] = {"input_tokens": result.input_tokens, "output_tokens": result.output_tokens}
    for key in ("reasoning_tokens", "cached_input_tokens", "cache_write_tokens"):
        value = getattr(result, key)
        if value is not None:
            usage[key] = value
    return usage


def left_out_answers(policy: AnswerPolicy, results: Mapping[str, AnswerResult]) -> dict[str, dict[str, Any]]:
    """The answers of a prompt that annotators are not shown, by answer id: shape, finish reason and why."""
    left_out: dict[str, dict[str, Any]] = {}
    for answer_id, result in sorted(results.items()):
        reason = policy.left_out(result) if result.ok else None
        if reason is not None:
            left_out[answer_id] = {
                "shape": policy.shape(result),
                "finish_reason": result.finish_reason,
                "reason": reason,
            }
    return left_out
