"""Turn each prompt's stored results into task shells, incomplete records or filtered records."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from common.images import keep_copy
from flows.reporting.summary import WriteCounts
from prompts.reader import PromptRecord
from providers.result import CallResult
from providers.slots import AnswerSlot
from task_builder.assemble import BatchContext, build_task, left_out_answers
from task_builder.ids import task_id_for
from task_builder.layout import TaskLayout
from task_builder.predictions import Judgement
from task_builder.quality import all_identical, task_flags
from task_builder.shapes import shown_text
from task_builder.template import TaskFilters


def filter_reason(
    filters: TaskFilters, answers: dict[str, tuple[str, str | None]], flags: dict[str, list[str]]
) -> str | None:
    """Why a task should not reach annotators under the template's filters, or ``None``."""
    if filters.drop_all_identical and all_identical(answers):
        return "all answers are identical"
    if filters.drop_all_flagged and flags and all(flags.values()):
        return "every answer is flagged"
    return None


class TaskWriter:
    """Writes, for each prompt in batch order, its tasks (per the layout) or why it has none."""

    def __init__(
        self,
        ctx: BatchContext,
        layout: TaskLayout,
        slots: list[AnswerSlot],
        required_answers: int,
        tasks_out: IO[str],
        incomplete_out: IO[str],
        filtered_out: IO[str],
        on_task: Callable[[str], None] | None = None,
        images_dir: Path | None = None,
    ) -> None:
        self.ctx = ctx
        self._images_dir = images_dir  # where the shells' local images are copied (once each), if anywhere
        self.layout = layout
        self.slots = {slot.answer_id: slot for slot in slots}
        self.required = max(required_answers, layout.min_answers)
        self.counts = WriteCounts()
        self._tasks_out = tasks_out
        self._incomplete_out = incomplete_out
        self._filtered_out = filtered_out
        self._on_task = on_task  # told each task's JSON line as it is written (delivery as the run goes)

    def write(
        self, record: PromptRecord, results: dict[str, CallResult], judgements: dict[str, Judgement] | None = None
    ) -> None:
        """Write the prompt's tasks (with the judges' values, if any), or its incomplete record, and count."""
        counts = self.counts
        counts.prompts += 1
        left_out = left_out_answers(self.ctx.answers, results)
        answered = [self.slots[aid] for aid, result in results.items() if result.ok and aid not in left_out]
        plans = self.layout.plan(record.id, answered) if len(answered) >= self.required else []
        if not plans:
            counts.incomplete += 1
            entry = {
                "prompt_id": record.id,
                "task_id": task_id_for(self.ctx.batch, record.id),
                "reason": f"{len(answered)} answer(s)"
                + (f" to show ({len(left_out)} left out)" if left_out else "")
                + f", {self.required} required",
                "answered": sorted(slot.answer_id for slot in answered),
                "errors": {
                    aid: {"error_type": r.error_type, "error": r.error} for aid, r in results.items() if not r.ok
                },
            }
            if left_out:
                entry["left_out"] = left_out
            self._write_line(self._incomplete_out, entry)
            return
        written = 0
        for planned in plans:
            texts = {aid: (shown_text(results[aid]), results[aid].finish_reason) for aid in planned.order}
            flags = task_flags(texts)
            reason = filter_reason(self.ctx.template.filters, texts, flags)
            if reason is not None:
                counts.tasks_filtered += 1
                self._write_line(
                    self._filtered_out,
                    {
                        "task_id": planned.task_id,
                        "prompt_id": record.id,
                        "variant": planned.variant,
                        "reason": reason,
                        "flags": flags,
                    },
                )
                continue
            shell = build_task(self.ctx, record, planned, self.slots, results, flags, judgements)
            if self._images_dir is not None:
                for ref in record.images:  # before the shell naming images/<sha256>.<ext> is written
                    keep_copy(ref, self._images_dir)
            line = shell.to_json_line()
            self._tasks_out.write(line + "\n")
            if self._on_task is not None:
                self._on_task(line)
            counts.tasks_written += 1
            written += 1
        if written:
            counts.prompts_tasked += 1
        else:
            counts.prompts_filtered += 1

    @staticmethod
    def _write_line(handle: IO[str], data: dict[str, Any]) -> None:
        handle.write(json.dumps(data, ensure_ascii=False, allow_nan=False) + "\n")
