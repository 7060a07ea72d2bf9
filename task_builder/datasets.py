"""Training data from annotated tasks: DPO pairs, SFT demonstrations and a wide ratings table.

An annotated task is a task shell (``docs/format.md``) with its slot ``value``s filled and
``status: "completed"``; ``metadata.annotation.annotator`` names who annotated it. Several annotators of
one task arrive as several tasks with the same ``task_id``: each gives its own records (nothing is
averaged or merged here), and every record carries ``task_id``, ``prompt_id`` and ``annotator`` so a
consumer can aggregate or split by prompt.

Every builder returns ``(records, stats)``: ``records`` is a generator (one task in memory at a time)
and ``stats`` an :class:`ExportStats` that is filled while the generator is consumed (read it after).

Record shapes (field names are the ones TRL takes unchanged; extra columns are ignored by TRL):

- DPO (``DPOTrainer``, conversational): ``prompt`` (system message if any, earlier turns, final user
  message), ``chosen`` / ``rejected`` (one assistant message each), plus ``chosen_source_id``,
  ``rejected_source_id``, ``margin`` (float or null; ``RewardTrainer`` reads a ``margin`` column too),
  ``task_id``, ``prompt_id``, ``annotator``, ``preference`` (``likert`` | ``ranking`` | ``selected``).
- SFT (``SFTTrainer``, conversational): ``messages`` (the prompt messages, then the assistant target),
  plus ``task_id``, ``prompt_id``, ``annotator``, ``source_id`` (whose answer the target is, or is a
  rewrite of) and ``origin`` (``rewrite`` | ``selected``).
- Ratings: one row per (task, annotator, answer): ``task_id``, ``prompt_id``, ``annotator``,
  ``source_id``, ``position`` ("Response A" …), ``model`` (the model the API reported, else the
  configured one), then one column per per-answer slot key (ratings, categories, booleans, text, and
  ``rewrite``), its value or null. A slot key equal to one of those fixed columns becomes ``dim_<key>``.

Consensus: tasks resolved by ``task_builder.consensus`` (``annotator: "consensus"``) give one record per
task, and every record of theirs adds ``agreement`` (the share of annotators who preferred the
consensus's answer) and ``annotators`` (how many were counted). Gold tasks (``metadata.gold``) are
never exported: they are skipped and counted (``skipped_gold``).

Decisions:

- Only tasks with ``status == "completed"`` are used; anything else, or a task whose shape or values do
  not fit its own slots (a value outside ``possible_values``, a selection or ranking naming an unknown
  answer, a ranking that is not a permutation of the answers, a Likert slot on a task without exactly
  two answers), is skipped and counted under ``skipped_invalid`` with the reason. Nothing is guessed or
  repaired.
- DPO preference source, first one with a value: ``likert_value`` (two answers only), else ``ranking``,
  else ``selected_model_id``. Likert: the midpoint is ``(first + last) / 2`` of the slot's
  ``possible_values`` (so any scale works); a value on the first value's side prefers the first answer
  (position A), on the other side the second (B), ``margin = |value - midpoint|``. A value exactly on
  the midpoint is a tie: the task is skipped (``skipped_tie``) and does *not* fall through to the
  selection, since the annotator said "about the same". Ranking: every pair, better rank chosen,
  ``margin`` = rank difference. Selection: the selected answer against each other answer, ``margin``
  null. A task with no preference value is ``skipped_no_preference``.
- SFT target, first that applies: the rewrite of the best answer; else the first non-empty rewrite in
  presentation order; else the best answer's own text. The best answer is the ``selected_model_id``,
  else the top of the ``ranking``, else the Likert winner (not on a tie). An answer's own text is used
  only if its ``needs_rewrite`` boolean (when the template has one) is not ``true``; for a task with a
  single answer and no rewrite, only when ``needs_rewrite`` is explicitly ``false`` (the annotator
  approved it as is; ``origin`` is then ``selected``). Otherwise the task is ``skipped_no_target``.
  Whitespace-only rewrites count as empty.
- ``write_dataset`` writes ``<name>.jsonl`` always and ``<name>.parquet`` on request (``pyarrow``,
  optional extra ``parquet``), each under ``<file>.partial`` and renamed when complete. Parquet is made
  from the finished JSONL in two bounded passes (schema of all rows, then the rows), so records stream
  and a column that is null in the first rows still gets its real type. Lists of messages are stored as
  ``list<struct<role: string, content: string>>``.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.atomic import atomic_open
from task_builder.annotated import value_problem
from task_builder.consensus import CONSENSUS_ANNOTATOR
from task_builder.ids import position_label
from task_builder.preference import likert_winner

PARQUET_HINT = "pip install 'rlhf-orchestrator[parquet]'"
FORMATS = ("jsonl", "parquet")
RATING_FIXED_COLUMNS = (
    "task_id",
    "prompt_id",
    "annotator",
    "source_id",
    "position",
    "model",
    "finish_reason",
    "agreement",
    "annotators",
)
_PARQUET_CHUNK_ROWS = 2000


class ParquetUnavailable(RuntimeError):
    """Parquet output was asked for but ``pyarrow`` is not installed."""


@dataclass
class ExportStats:
    """What an export read, wrote and skipped (filled while its records are consumed)."""

    kind: str
    tasks_read: int = 0
    records_written: int = 0
    skipped_tie: int = 0
    skipped_no_preference: int = 0
    skipped_no_target: int = 0
    skipped_invalid: int = 0
    skipped_gold: int = 0
    invalid_reasons: Counter[str] = field(default_factory=Counter)

    @property
    def pairs_written(self) -> int:
        """DPO name for ``records_written``."""
        return self.records_written

    def invalid(self, reason: str) -> None:
        """Count one task skipped as invalid, with why."""
        self.skipped_invalid += 1
        self.invalid_reasons[reason] += 1

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON (a summary file or the CLI)."""
        out: dict[str, Any] = {"kind": self.kind, "tasks_read": self.tasks_read}
        out["pairs_written" if self.kind == "dpo" else "records_written"] = self.records_written
        if self.kind == "dpo":
            out.update(skipped_tie=self.skipped_tie, skipped_no_preference=self.skipped_no_preference)
        if self.kind == "sft":
            out["skipped_no_target"] = self.skipped_no_target
        out["skipped_invalid"] = self.skipped_invalid
        if self.skipped_gold:
            out["skipped_gold"] = self.skipped_gold
        out["invalid_reasons"] = dict(sorted(self.invalid_reasons.items()))
        return out


class _Invalid(Exception):
    """The task does not fit the contract; the message is the reason counted in the stats."""


@dataclass
class _Answer:
    position: int
    label: str
    source_id: str
    text: str
    model: str | None
    slots: dict[str, dict[str, Any]]
    finish_reason: str | None = None  # normalised (stop, length, refusal, ...): a cut-off can be left out


@dataclass
class _Task:
    task_id: str
    prompt_id: str | None
    annotator: str | None
    prompt: list[dict[str, Any]]
    answers: list[_Answer]
    turn_slots: dict[str, dict[str, Any]]
    consensus: dict[str, Any] | None = None  # agreement and annotator count of a resolved task

    def answer(self, source_id: str) -> _Answer:
        return next(a for a in self.answers if a.source_id == source_id)


# --------------------------------------------------------------------------------------------------
# Reading an annotated task


def _mapping(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def _text(message: dict[str, Any]) -> str:
    content = message.get("content")
    text = content.get("text") if isinstance(content, dict) else None
    if isinstance(text, str):
        return text
    raise _Invalid("message without content.text")


def _slots(annotations: Any, where: str) -> dict[str, dict[str, Any]]:
    if not isinstance(annotations, list):
        raise _Invalid(f"{where} annotations are not a list")
    out: dict[str, dict[str, Any]] = {}
    for slot in annotations:
        if not isinstance(slot, dict) or not isinstance(slot.get("key"), str):
            raise _Invalid(f"{where} annotation without a key")
        if slot["key"] in out:
            raise _Invalid(f"duplicate {where} slot {slot['key']!r}")
        out[slot["key"]] = slot
    return out


def _check_value(slot: dict[str, Any], key: str) -> None:
    value = slot.get("value")
    if value is None:
        return
    problem = value_problem(slot, value)
    if problem:
        raise _Invalid(f"{key}: {problem}")


def _parse(task: Any) -> _Task:
    if not isinstance(task, dict):
        raise _Invalid("not a JSON object")
    status = task.get("status")
    if status != "completed":
        raise _Invalid(f"status {status!r}, not 'completed'")
    task_id = task.get("task_id")
    if not isinstance(task_id, str):
        raise _Invalid("no task_id")
    threads = task.get("threads")
    if not isinstance(threads, list) or len(threads) != 1 or not isinstance(threads[0], dict):
        raise _Invalid("not exactly one thread")
    turns = threads[0].get("turns")
    if not isinstance(turns, list) or not turns or not all(isinstance(t, dict) for t in turns):
        raise _Invalid("no turns")
    prompt: list[dict[str, Any]] = []
    for turn in turns[:-1]:
        for message in turn.get("messages") or []:
            prompt.append({"role": message.get("role"), "content": _text(message)})
    final = turns[-1].get("messages")
    if not isinstance(final, list):
        raise _Invalid("last turn has no messages")
    answers: list[_Answer] = []
    metadata = _mapping(task.get("metadata"))
    reported = _mapping(metadata.get("responses"))
    for message in final:
        if not isinstance(message, dict):
            raise _Invalid("message is not an object")
        if message.get("role") != "assistant":
            if answers:
                raise _Invalid("prompt message after an answer in the last turn")
            prompt.append({"role": message.get("role"), "content": _text(message)})
            continue
        source_id = message.get("source_id")
        if not isinstance(source_id, str):
            raise _Invalid("answer without source_id")
        if any(a.source_id == source_id for a in answers):
            raise _Invalid(f"duplicate answer source_id {source_id!r}")
        params = message.get("model_parameters") or {}
        response = _mapping(reported.get(source_id))
        model = response.get("model") or params.get("model")
        finish_reason = response.get("finish_reason")
        slots = _slots(message.get("annotations", []), "answer")
        for key, slot in slots.items():
            _check_value(slot, key)
        index = len(answers)
        answers.append(
            _Answer(
                index,
                position_label(index),
                source_id,
                _text(message),
                model,
                slots,
                finish_reason if isinstance(finish_reason, str) else None,
            )
        )
    if any(m["role"] not in ("system", "user", "assistant") for m in prompt):
        raise _Invalid("prompt message with an unknown role")
    if not prompt or prompt[-1]["role"] != "user":
        raise _Invalid("last turn does not start with a user message")
    if not answers:
        raise _Invalid("no answers")
    turn_slots = _slots(turns[-1].get("annotations", []), "turn")
    for key, slot in turn_slots.items():
        if key != "ranking":
            _check_value(slot, key)
    ids = [a.source_id for a in answers]
    selected = turn_slots.get("selected_model_id", {}).get("value")
    if selected is not None and selected not in ids:
        raise _Invalid("selected_model_id names no answer of the task")
    ranking = turn_slots.get("ranking", {}).get("value")
    if ranking is not None and (
        not isinstance(ranking, list) or not all(isinstance(r, str) for r in ranking) or sorted(ranking) != sorted(ids)
    ):
        raise _Invalid("ranking is not a permutation of the answers")
    likert = turn_slots.get("likert_value", {})
    if likert.get("value") is not None:
        if len(answers) != 2:
            raise _Invalid("likert_value on a task without exactly two answers")
        values = likert.get("possible_values")
        if not values or len(values) < 2 or not all(isinstance(v, int) for v in values):
            raise _Invalid("likert_value without integer possible_values")
    annotation = _mapping(metadata.get("annotation"))
    annotator = annotation.get("annotator")
    prompt_id = metadata.get("prompt_id")
    counted = annotation.get("annotators")
    consensus = (
        {"agreement": annotation.get("agreement"), "annotators": len(counted)}
        if annotator == CONSENSUS_ANNOTATOR and isinstance(counted, list)
        else None
    )
    return _Task(
        task_id=task_id,
        prompt_id=prompt_id if isinstance(prompt_id, str) else None,
        annotator=annotator if isinstance(annotator, str) else None,
        prompt=prompt,
        answers=answers,
        turn_slots=turn_slots,
        consensus=consensus,
    )


def _read(annotated: Iterable[dict[str, Any]], stats: ExportStats) -> Iterator[_Task]:
    for task in annotated:
        stats.tasks_read += 1
        if isinstance(task, dict) and _mapping(task.get("metadata")).get("gold") is not None:
            stats.skipped_gold += 1  # a gold task checks annotators; it is never training data
            continue
        try:
            yield _parse(task)
        except _Invalid as exc:
            stats.invalid(str(exc))


def _likert(task: _Task) -> tuple[int, float] | None:
    """``(winner index, margin)`` from the Likert value, ``None`` on a tie; caller checks it is set."""
    slot = task.turn_slots["likert_value"]
    return likert_winner(slot["possible_values"], slot["value"])


def _value(task: _Task, key: str) -> Any:
    return task.turn_slots.get(key, {}).get("value")


# --------------------------------------------------------------------------------------------------
# DPO


def _pair(task: _Task, chosen: _Answer, rejected: _Answer, margin: float | None, preference: str) -> dict[str, Any]:
    return {
        "prompt": [dict(m) for m in task.prompt],
        "chosen": [{"role": "assistant", "content": chosen.text}],
        "rejected": [{"role": "assistant", "content": rejected.text}],
        "chosen_source_id": chosen.source_id,
        "rejected_source_id": rejected.source_id,
        "chosen_finish_reason": chosen.finish_reason,
        "rejected_finish_reason": rejected.finish_reason,
        "margin": margin,
        "preference": preference,
        "task_id": task.task_id,
        "prompt_id": task.prompt_id,
        "annotator": task.annotator,
        **(task.consensus or {}),
    }


def _dpo(tasks: Iterator[_Task], stats: ExportStats) -> Iterator[dict[str, Any]]:
    for task in tasks:
        pairs: list[dict[str, Any]] = []
        if _value(task, "likert_value") is not None:
            result = _likert(task)
            if result is None:
                stats.skipped_tie += 1
                continue
            winner, margin = result
            pairs.append(_pair(task, task.answers[winner], task.answers[1 - winner], margin, "likert"))
        elif _value(task, "ranking") is not None:
            ranked = [task.answer(s) for s in _value(task, "ranking")]
            for i, better in enumerate(ranked):
                for j in range(i + 1, len(ranked)):
                    pairs.append(_pair(task, better, ranked[j], float(j - i), "ranking"))
        elif _value(task, "selected_model_id") is not None:
            chosen = task.answer(_value(task, "selected_model_id"))
            pairs.extend(_pair(task, chosen, other, None, "selected") for other in task.answers if other is not chosen)
        if not pairs:
            stats.skipped_no_preference += 1
            continue
        for pair in pairs:
            stats.records_written += 1
            yield pair


def dpo_records(annotated: Iterable[dict[str, Any]]) -> tuple[Iterator[dict[str, Any]], ExportStats]:
    """Preference pairs in TRL's conversational DPO format, and the stats filled as they are read."""
    stats = ExportStats("dpo")
    return _dpo(_read(annotated, stats), stats), stats


# --------------------------------------------------------------------------------------------------
# SFT


def _best(task: _Task) -> _Answer | None:
    selected = _value(task, "selected_model_id")
    if selected is not None:
        return task.answer(selected)
    ranking = _value(task, "ranking")
    if ranking:
        return task.answer(ranking[0])
    if _value(task, "likert_value") is not None:
        result = _likert(task)
        if result is not None:
            return task.answers[result[0]]
    return None


def _rewrite(answer: _Answer) -> str | None:
    value = answer.slots.get("rewrite", {}).get("value")
    return value if isinstance(value, str) and value.strip() else None


def _sft(tasks: Iterator[_Task], stats: ExportStats) -> Iterator[dict[str, Any]]:
    for task in tasks:
        best = _best(task)
        target: tuple[_Answer, str, str] | None = None
        if best is not None and _rewrite(best):
            target = (best, _rewrite(best) or "", "rewrite")
        else:
            rewritten = next((a for a in task.answers if _rewrite(a)), None)
            if rewritten is not None:
                target = (rewritten, _rewrite(rewritten) or "", "rewrite")
            elif len(task.answers) == 1:
                only = task.answers[0]
                if only.slots.get("needs_rewrite", {}).get("value") is False:
                    target = (only, only.text, "selected")
            elif best is not None and best.slots.get("needs_rewrite", {}).get("value") is not True:
                target = (best, best.text, "selected")
        if target is None:
            stats.skipped_no_target += 1
            continue
        answer, text, origin = target
        stats.records_written += 1
        yield {
            "messages": [*(dict(m) for m in task.prompt), {"role": "assistant", "content": text}],
            "task_id": task.task_id,
            "prompt_id": task.prompt_id,
            "annotator": task.annotator,
            "source_id": answer.source_id,
            "origin": origin,
            # of the answer the target came from (a rewrite of a cut-off answer is complete)
            "finish_reason": answer.finish_reason,
            **(task.consensus or {}),
        }


def sft_records(annotated: Iterable[dict[str, Any]]) -> tuple[Iterator[dict[str, Any]], ExportStats]:
    """Demonstrations in TRL's conversational SFT format (``messages``), and the stats."""
    stats = ExportStats("sft")
    return _sft(_read(annotated, stats), stats), stats


# --------------------------------------------------------------------------------------------------
# Ratings


def _ratings(tasks: Iterator[_Task], stats: ExportStats) -> Iterator[dict[str, Any]]:
    for task in tasks:
        for answer in task.answers:
            row: dict[str, Any] = {
                "task_id": task.task_id,
                "prompt_id": task.prompt_id,
                "annotator": task.annotator,
                "source_id": answer.source_id,
                "position": answer.label,
                "model": answer.model,
                "finish_reason": answer.finish_reason,
                **(task.consensus or {}),
            }
            for key, slot in answer.slots.items():
                row[f"dim_{key}" if key in RATING_FIXED_COLUMNS else key] = slot.get("value")
            stats.records_written += 1
            yield row


def ratings_rows(annotated: Iterable[dict[str, Any]]) -> tuple[Iterator[dict[str, Any]], ExportStats]:
    """A wide table: one row per (task, annotator, answer), one column per per-answer slot."""
    stats = ExportStats("ratings")
    return _ratings(_read(annotated, stats), stats), stats


# --------------------------------------------------------------------------------------------------
# Writing


def parquet_available() -> bool:
    """True when ``pyarrow`` (the optional ``parquet`` extra) can be imported."""
    try:
        _require_pyarrow()
    except ParquetUnavailable:
        return False
    return True


def _require_pyarrow() -> Any:
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise ParquetUnavailable(
            f"Parquet output needs the optional dependency pyarrow: {PARQUET_HINT} "
            "(or pip install pyarrow), or leave out --parquet for JSONL only."
        ) from None
    return pyarrow


def write_dataset(
    records: Iterable[dict[str, Any]],
    out_dir: str | Path,
    name: str,
    formats: Sequence[str] = ("jsonl", "parquet"),
) -> dict[str, Path]:
    """Write ``<out_dir>/<name>.jsonl`` (always) and ``.parquet`` (if asked); returns format → path.

    Files appear only when complete. Raises :class:`ParquetUnavailable` before writing anything if
    Parquet is asked for without ``pyarrow`` installed.
    """
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ValueError(f"unknown format(s) {', '.join(unknown)} (known: {', '.join(FORMATS)})")
    if not name or "/" in name or os.sep in name:
        raise ValueError(f"invalid dataset name {name!r}")
    pa = _require_pyarrow() if "parquet" in formats else None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    jsonl = out / f"{name}.jsonl"
    with atomic_open(jsonl) as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    written["jsonl"] = jsonl
    if pa is not None:
        parquet = out / f"{name}.parquet"
        _jsonl_to_parquet(pa, jsonl, parquet)
        written["parquet"] = parquet
    return written


def _chunks(path: Path) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            chunk.append(json.loads(line))
            if len(chunk) >= _PARQUET_CHUNK_ROWS:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


def _columns(chunk: list[dict[str, Any]], names: dict[str, None]) -> None:
    for row in chunk:
        for key in row:
            names.setdefault(key, None)


def _schema_of(pa: Any, path: Path) -> Any:
    names: dict[str, None] = {}
    schema = None
    for chunk in _chunks(path):
        _columns(chunk, names)
        fields = []
        for column in names:
            values = [row.get(column) for row in chunk]
            try:
                fields.append(pa.field(column, pa.array(values).type))
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise ValueError(f"column {column!r} mixes value types, cannot write Parquet: {exc}") from None
        chunk_schema = pa.schema(fields)
        try:
            schema = (
                chunk_schema
                if schema is None
                else pa.unify_schemas([schema, chunk_schema], promote_options="permissive")
            )
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise ValueError(f"a column changes type between rows, cannot write Parquet: {exc}") from None
    return schema if schema is not None else pa.schema([])


def _jsonl_to_parquet(pa: Any, jsonl: Path, parquet: Path) -> None:
    import pyarrow.parquet as pq

    schema = _schema_of(pa, jsonl)
    partial = parquet.with_name(parquet.name + ".partial")
    try:
        with pq.ParquetWriter(partial, schema) as writer:
            for chunk in _chunks(jsonl):
                columns = {}
                for f in schema:
                    try:
                        columns[f.name] = pa.array([row.get(f.name) for row in chunk], type=f.type)
                    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                        raise ValueError(f"column {f.name!r} cannot be written as {f.type}: {exc}") from None
                writer.write_table(pa.table(columns, schema=schema))
        os.replace(partial, parquet)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
