"""Training data from annotated tasks: DPO pairs, SFT demonstrations, the ratings table, JSONL/Parquet."""

from __future__ import annotations

import builtins
import copy
import json
from pathlib import Path
from typing import Any

import pytest

from prompts.reader import PromptRecord
from providers.config import ProviderConfig
from providers.result import CallResult
from providers.slots import answer_slots
from task_builder.assemble import BatchContext, build_task
from task_builder.datasets import (
    PARQUET_HINT,
    ParquetUnavailable,
    dpo_records,
    ratings_rows,
    sft_records,
    write_dataset,
)
from task_builder.layout import PlannedTask
from task_builder.template import AnnotationTemplate, resolve_template

TEXTS = {"gpt-4o": "Answer from gpt.", "claude": "Answer from claude.", "llama-3": "Answer from llama."}


def make_shell(
    order: list[str],
    template: str | AnnotationTemplate = "default",
    prompt: str = "What is jazz?",
    history: list[dict[str, str]] | None = None,
    system: str | None = None,
    prompt_id: str = "p1",
) -> dict[str, Any]:
    """A real task shell from ``build_task``: answers in ``order`` (position A first)."""
    template = resolve_template(template)
    providers = [
        ProviderConfig(source_id=s, kind="openai", model=f"{s}-model", params={"temperature": 0.5}) for s in order
    ]
    slots = {slot.answer_id: slot for slot in answer_slots(providers, 1)}
    results = {s: CallResult(ok=True, text=TEXTS[s], model=f"{s}-2024", finish_reason="stop") for s in order}
    ctx = BatchContext(
        project="proj",
        batch="b1",
        run_id="run",
        config_hash="h",
        created_at="2026-01-01T00:00:00Z",
        layout="n_way",
        template=template,
        generator={"name": "t", "version": "0"},
    )
    record = PromptRecord(id=prompt_id, messages=[*(history or []), {"role": "user", "content": prompt}], system=system)
    planned = PlannedTask(task_id=f"task_{prompt_id}_{'_'.join(order)}", variant="", order=list(order))
    return build_task(ctx, record, planned, slots, results, {}).to_json_dict()


def annotate(
    shell: dict[str, Any],
    annotator: str = "ann1",
    turn: dict[str, Any] | None = None,
    answers: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Fill the shell's slots (turn-level by key, per-answer by source id then key) and complete it."""
    task = copy.deepcopy(shell)
    task["status"] = "completed"
    task["metadata"]["annotation"] = {
        "annotator": annotator,
        "platform": "test",
        "annotated_at": "2026-01-02T00:00:00Z",
    }
    last = task["threads"][0]["turns"][-1]
    for slot in last["annotations"]:
        if turn and slot["key"] in turn:
            slot["value"] = turn[slot["key"]]
    for message in last["messages"]:
        values = (answers or {}).get(message["source_id"], {})
        for slot in message["annotations"]:
            if slot["key"] in values:
                slot["value"] = values[slot["key"]]
    return task


def pairs(tasks: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], Any]:
    records, stats = dpo_records(tasks)
    return list(records), stats


# ---------------------------------------------------------------- DPO


def test_likert_below_midpoint_prefers_response_a_with_margin() -> None:
    shell = make_shell(["claude", "gpt-4o"])
    (pair,), stats = pairs([annotate(shell, turn={"likert_value": 2})])
    assert pair["chosen"] == [{"role": "assistant", "content": TEXTS["claude"]}]
    assert pair["rejected"] == [{"role": "assistant", "content": TEXTS["gpt-4o"]}]
    assert (pair["chosen_source_id"], pair["rejected_source_id"]) == ("claude", "gpt-4o")
    assert pair["margin"] == 2.0 and pair["preference"] == "likert"
    assert pair["prompt"] == [{"role": "user", "content": "What is jazz?"}]
    assert (pair["task_id"], pair["annotator"], pair["prompt_id"]) == (shell["task_id"], "ann1", "p1")
    assert stats.tasks_read == 1 and stats.pairs_written == 1


def test_likert_above_midpoint_prefers_response_b() -> None:
    shell = make_shell(["claude", "gpt-4o"])
    (pair,), _ = pairs([annotate(shell, turn={"likert_value": 7})])
    assert (pair["chosen_source_id"], pair["rejected_source_id"], pair["margin"]) == ("gpt-4o", "claude", 3.0)


def test_likert_tie_is_skipped_and_counted_even_with_a_selection() -> None:
    shell = make_shell(["claude", "gpt-4o"])
    records, stats = pairs([annotate(shell, turn={"likert_value": 4, "selected_model_id": "claude"})])
    assert records == []
    assert (stats.skipped_tie, stats.pairs_written, stats.skipped_no_preference) == (1, 0, 0)


def test_likert_midpoint_comes_from_the_slot_possible_values() -> None:
    template = AnnotationTemplate(name="five", turn={"likert": {"values": [0, 1, 2, 3, 4]}})
    shell = make_shell(["claude", "gpt-4o"], template=template)
    records, stats = pairs(
        [
            annotate(shell, turn={"likert_value": 2}),
            annotate(shell, annotator="ann2", turn={"likert_value": 3}),
            annotate(shell, annotator="ann3", turn={"likert_value": 0}),
        ]
    )
    assert stats.skipped_tie == 1
    assert [(r["annotator"], r["chosen_source_id"], r["margin"]) for r in records] == [
        ("ann2", "gpt-4o", 1.0),
        ("ann3", "claude", 2.0),
    ]


def test_ranking_gives_every_pair_with_rank_difference_as_margin() -> None:
    shell = make_shell(["gpt-4o", "claude", "llama-3"], template="helpsteer_0_4")
    records, stats = pairs(
        [annotate(shell, turn={"ranking": ["llama-3", "gpt-4o", "claude"], "selected_model_id": "gpt-4o"})]
    )
    got = [(r["chosen_source_id"], r["rejected_source_id"], r["margin"], r["preference"]) for r in records]
    assert got == [
        ("llama-3", "gpt-4o", 1.0, "ranking"),
        ("llama-3", "claude", 2.0, "ranking"),
        ("gpt-4o", "claude", 1.0, "ranking"),
    ]
    assert records[0]["chosen"][0]["content"] == TEXTS["llama-3"]
    assert stats.pairs_written == 3


def test_selection_only_pairs_the_selected_answer_with_each_other() -> None:
    shell = make_shell(["gpt-4o", "claude", "llama-3"])  # three answers: no Likert slot
    records, stats = pairs([annotate(shell, turn={"selected_model_id": "claude"})])
    assert [(r["chosen_source_id"], r["rejected_source_id"], r["margin"]) for r in records] == [
        ("claude", "gpt-4o", None),
        ("claude", "llama-3", None),
    ]
    assert all(r["preference"] == "selected" for r in records) and stats.pairs_written == 2


def test_missing_preference_is_skipped_and_counted() -> None:
    shell = make_shell(["gpt-4o", "claude"])
    records, stats = pairs([annotate(shell, turn={"justification": "both fine"}, answers={"claude": {"overall": 5}})])
    assert records == [] and stats.skipped_no_preference == 1 and stats.tasks_read == 1


def test_invalid_tasks_are_skipped_with_reasons() -> None:
    shell = make_shell(["gpt-4o", "claude"])
    pending = copy.deepcopy(shell)
    pending["threads"][0]["turns"][-1]["annotations"][0]["value"] = "claude"
    tasks = [
        pending,  # status still "pending"
        annotate(shell, turn={"likert_value": 9}),
        annotate(shell, turn={"selected_model_id": "nobody"}),
        annotate(
            make_shell(["gpt-4o", "claude", "llama-3"], template="helpsteer_0_4"),
            turn={"ranking": ["gpt-4o", "claude"]},
        ),
        annotate(shell, turn={"likert_value": 1}),
    ]
    records, stats = pairs(tasks)
    assert len(records) == 1 and stats.skipped_invalid == 4
    assert stats.invalid_reasons == {
        "status 'pending', not 'completed'": 1,
        "likert_value: 9 is outside the allowed values [1, 2, 3, 4, 5, 6, 7]": 1,
        "selected_model_id: 'nobody' is outside the allowed values ['gpt-4o', 'claude']": 1,
        "ranking is not a permutation of the answers": 1,
    }
    assert stats.to_dict()["skipped_invalid"] == 4


def test_several_annotators_of_one_task_give_separate_records() -> None:
    shell = make_shell(["gpt-4o", "claude"])
    records, stats = pairs(
        [
            annotate(shell, annotator="alice", turn={"likert_value": 1}),
            annotate(shell, annotator="bob", turn={"likert_value": 6}),
        ]
    )
    assert [(r["task_id"], r["annotator"], r["chosen_source_id"]) for r in records] == [
        (shell["task_id"], "alice", "gpt-4o"),
        (shell["task_id"], "bob", "claude"),
    ]
    assert stats.tasks_read == 2


def test_conversation_history_and_system_prompt_are_in_the_prompt() -> None:
    history = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    shell = make_shell(["gpt-4o", "claude"], prompt="Name a jazz standard.", history=history, system="You are terse.")
    (pair,), _ = pairs([annotate(shell, turn={"likert_value": 5})])
    assert pair["prompt"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Name a jazz standard."},
    ]
    assert pair["chosen"] == [{"role": "assistant", "content": TEXTS["claude"]}]


def test_system_prompt_without_history_is_kept() -> None:
    shell = make_shell(["gpt-4o", "claude"], system="Be kind.")
    (pair,), _ = pairs([annotate(shell, turn={"selected_model_id": "gpt-4o"})])
    assert pair["prompt"] == [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "What is jazz?"}]


def test_records_stream_and_stats_fill_as_they_are_read() -> None:
    shell = make_shell(["gpt-4o", "claude"])
    consumed: list[int] = []

    def source():
        for i in range(3):
            consumed.append(i)
            yield annotate(shell, annotator=f"a{i}", turn={"likert_value": 1})

    records, stats = dpo_records(source())
    assert consumed == [] and stats.tasks_read == 0
    next(records)
    assert consumed == [0] and stats.pairs_written == 1
    assert len(list(records)) == 2 and stats.tasks_read == 3


# ---------------------------------------------------------------- SFT


def sft(tasks: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], Any]:
    records, stats = sft_records(tasks)
    return list(records), stats


def test_sft_uses_the_rewrite_of_the_selected_answer() -> None:
    shell = make_shell(["gpt-4o", "claude"], template="pref_ranking_rewrites", system="S")
    task = annotate(
        shell,
        turn={"selected_model_id": "claude"},
        answers={"gpt-4o": {"rewrite": "gpt rewritten"}, "claude": {"rewrite": "claude rewritten"}},
    )
    (record,), stats = sft([task])
    assert record["messages"] == [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "What is jazz?"},
        {"role": "assistant", "content": "claude rewritten"},
    ]
    assert (record["source_id"], record["origin"], record["annotator"]) == ("claude", "rewrite", "ann1")
    assert stats.records_written == 1


def test_sft_falls_back_to_another_rewrite_then_to_the_selected_answer() -> None:
    shell = make_shell(["gpt-4o", "claude"], template="pref_ranking_rewrites")
    other = annotate(
        shell,
        turn={"selected_model_id": "claude"},
        answers={"gpt-4o": {"rewrite": "gpt rewritten"}, "claude": {"rewrite": "  "}},
    )
    plain = annotate(shell, annotator="b", turn={"likert_value": 6})
    records, _ = sft([other, plain])
    assert [(r["source_id"], r["origin"], r["messages"][-1]["content"]) for r in records] == [
        ("gpt-4o", "rewrite", "gpt rewritten"),
        ("claude", "selected", TEXTS["claude"]),
    ]


def test_sft_single_answer_rules() -> None:
    shell = make_shell(["llama-3"], template="sft")
    rewritten = annotate(shell, answers={"llama-3": {"needs_rewrite": True, "rewrite": "better"}})
    approved = annotate(shell, annotator="b", answers={"llama-3": {"needs_rewrite": False}})
    flawed = annotate(shell, annotator="c", answers={"llama-3": {"needs_rewrite": True}})
    unknown = annotate(shell, annotator="d", answers={"llama-3": {"overall": 6}})
    records, stats = sft([rewritten, approved, flawed, unknown])
    assert [(r["annotator"], r["origin"], r["messages"][-1]["content"]) for r in records] == [
        ("ann1", "rewrite", "better"),
        ("b", "selected", TEXTS["llama-3"]),
    ]
    assert stats.skipped_no_target == 2 and stats.records_written == 2


def test_sft_skips_tasks_without_a_best_answer_or_rewrite() -> None:
    shell = make_shell(["gpt-4o", "claude"])
    records, stats = sft([annotate(shell, turn={"likert_value": 4}), annotate(shell, turn={"justification": "x"})])
    assert records == [] and stats.skipped_no_target == 2


# ---------------------------------------------------------------- ratings


def test_ratings_table_has_a_row_per_answer_and_a_column_per_dimension() -> None:
    shell = make_shell(["claude", "gpt-4o"], template="pref_ranking_rewrites")
    task = annotate(
        shell,
        annotator="alice",
        answers={
            "claude": {"truthfulness": 6, "verbosity": "too_long", "rewrite": "shorter"},
            "gpt-4o": {"truthfulness": 3, "overall": 2},
        },
    )
    rows, stats = ratings_rows([task])
    rows = list(rows)
    assert stats.records_written == 2
    keys = [
        "instruction_following",
        "truthfulness",
        "factuality",
        "tone",
        "verbosity",
        "harmlessness",
        "overall",
        "rewrite",
    ]
    assert list(rows[0]) == [
        "task_id",
        "prompt_id",
        "annotator",
        "source_id",
        "position",
        "model",
        "finish_reason",
        *keys,
    ]
    assert rows[0] | {} == {
        "task_id": shell["task_id"],
        "prompt_id": "p1",
        "annotator": "alice",
        "source_id": "claude",
        "position": "Response A",
        "model": "claude-2024",
        "finish_reason": "stop",
        "instruction_following": None,
        "truthfulness": 6,
        "factuality": None,
        "tone": None,
        "verbosity": "too_long",
        "harmlessness": None,
        "overall": None,
        "rewrite": "shorter",
    }
    assert (
        rows[1]["source_id"],
        rows[1]["position"],
        rows[1]["truthfulness"],
        rows[1]["overall"],
        rows[1]["rewrite"],
    ) == ("gpt-4o", "Response B", 3, 2, None)


def test_ratings_boolean_dimension_and_colliding_key() -> None:
    template = AnnotationTemplate(
        name="t",
        dimensions=[
            {"key": "needs_rewrite", "title": "N", "type": "boolean"},
            {"key": "model", "title": "Model guess", "type": "text"},
        ],
    )
    shell = make_shell(["gpt-4o", "claude"], template=template)
    rows, _ = ratings_rows([annotate(shell, answers={"gpt-4o": {"needs_rewrite": False, "model": "looks like gpt"}})])
    first = next(rows)
    assert (
        first["needs_rewrite"] is False and first["dim_model"] == "looks like gpt" and first["model"] == "gpt-4o-2024"
    )


# ---------------------------------------------------------------- writing


def _dpo_sample() -> list[dict[str, Any]]:
    history = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    a = make_shell(["gpt-4o", "claude"], history=history, system="Sys")
    b = make_shell(["gpt-4o", "claude", "llama-3"], prompt_id="p2")
    records, _ = dpo_records(
        [annotate(b, turn={"selected_model_id": "llama-3"}), annotate(a, turn={"likert_value": 2})]
    )
    return list(records)


def test_jsonl_and_parquet_round_trip(tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    expected = _dpo_sample()
    assert expected[0]["margin"] is None and expected[-1]["margin"] == 2.0  # the first rows have a null margin
    paths = write_dataset(iter(expected), tmp_path / "out", "dpo", formats=("jsonl", "parquet"))
    assert paths == {"jsonl": tmp_path / "out" / "dpo.jsonl", "parquet": tmp_path / "out" / "dpo.parquet"}
    lines = paths["jsonl"].read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == expected
    table = pq.read_table(paths["parquet"])
    assert table.to_pylist() == expected
    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    for column in ("prompt", "chosen", "rejected"):
        assert table.schema.field(column).type == pa.list_(message)
    assert table.schema.field("margin").type == pa.float64()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["dpo.jsonl", "dpo.parquet"]


def test_parquet_schema_covers_all_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    import task_builder.datasets as datasets

    monkeypatch.setattr(datasets, "_PARQUET_CHUNK_ROWS", 1)  # every row is its own chunk
    rows = [{"margin": None, "n": 1}, {"margin": 2, "n": 2, "late": "x"}, {"margin": 0.5, "n": 3}]
    paths = write_dataset(rows, tmp_path, "chunks")
    table = pq.read_table(paths["parquet"])
    assert str(table.schema.field("margin").type) == "double" and str(table.schema.field("late").type) == "string"
    assert table.to_pylist() == [
        {"margin": None, "n": 1, "late": None},
        {"margin": 2.0, "n": 2, "late": "x"},
        {"margin": 0.5, "n": 3, "late": None},
    ]


def test_parquet_of_sft_and_ratings_round_trips(tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    shell = make_shell(["gpt-4o", "claude"], template="pref_ranking_rewrites")
    tasks = [
        annotate(
            shell,
            turn={"selected_model_id": "claude"},
            answers={"claude": {"rewrite": "R", "overall": 7, "verbosity": "too_long"}},
        )
    ]
    sft_rows, _ = sft_records(tasks)
    rating_rows, _ = ratings_rows(tasks)
    for name, rows in (("sft", list(sft_rows)), ("ratings", list(rating_rows))):
        paths = write_dataset(rows, tmp_path, name)
        assert pq.read_table(paths["parquet"]).to_pylist() == rows


def test_jsonl_only_and_empty_dataset(tmp_path: Path) -> None:
    paths = write_dataset([], tmp_path, "empty", formats=("jsonl",))
    assert paths == {"jsonl": tmp_path / "empty.jsonl"} and paths["jsonl"].read_text() == ""
    assert not (tmp_path / "empty.parquet").exists()


def test_failed_write_leaves_no_file(tmp_path: Path) -> None:
    def broken():
        yield {"a": 1}
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        write_dataset(broken(), tmp_path, "x", formats=("jsonl",))
    assert list(tmp_path.iterdir()) == []


def test_mixed_column_types_give_a_clear_parquet_error(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    with pytest.raises(ValueError, match="'overall'"):
        write_dataset([{"overall": 3}, {"overall": "good"}], tmp_path, "bad")
    assert not (tmp_path / "bad.parquet").exists()


def test_missing_pyarrow_names_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_pyarrow(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "pyarrow" or name.startswith("pyarrow."):
            raise ImportError("No module named 'pyarrow'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    with pytest.raises(ParquetUnavailable) as caught:
        write_dataset([{"a": 1}], tmp_path, "d", formats=("jsonl", "parquet"))
    assert PARQUET_HINT in str(caught.value) and "pip install 'rlhf-orchestrator[parquet]'" in str(caught.value)
    assert list(tmp_path.iterdir()) == []  # refused before writing anything
    assert write_dataset([{"a": 1}], tmp_path, "d", formats=("jsonl",))["jsonl"].exists()


def test_unknown_format_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="csv"):
        write_dataset([], tmp_path, "d", formats=("csv",))
