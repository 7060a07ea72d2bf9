"""Consensus before an export (task_builder/consensus.py, rlhf export-dataset --consensus): each rule on
hand-made annotations, weights and left-out annotators, agreement on every row, gold never exported."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from scripted_annotators import Annotator, annotate_all, pairwise_batch, shell
from typer.testing import CliRunner

from flows.cli.app import app
from task_builder.consensus import consensus
from task_builder.datasets import dpo_records, ratings_rows, sft_records

TASK = shell("c1", ["m1", "m2"])


def copy_of(
    annotator: str, likert: int | None, overall: int | None = None, justification: str | None = None
) -> dict[str, Any]:
    """TASK as ``annotator`` filled it: the Likert value (1: m1 much better), m1's overall rating."""
    done = copy.deepcopy(TASK)
    done["status"] = "completed"
    turn = done["threads"][0]["turns"][-1]
    for slot in turn["annotations"]:
        if slot["key"] == "likert_value":
            slot["value"] = likert
        elif slot["key"] == "selected_model_id" and likert is not None and likert != 4:
            slot["value"] = "m1" if likert < 4 else "m2"
        elif slot["key"] == "justification":
            slot["value"] = justification
    for slot in turn["messages"][1]["annotations"]:
        if slot["key"] == "overall":
            slot["value"] = overall
    done["metadata"]["annotation"] = {"annotator": annotator}
    return done


def turn_value(task: dict[str, Any], key: str) -> Any:
    return next(s["value"] for s in task["threads"][0]["turns"][-1]["annotations"] if s["key"] == key)


def overall(task: dict[str, Any]) -> Any:
    return next(
        s["value"] for s in task["threads"][0]["turns"][-1]["messages"][1]["annotations"] if s["key"] == "overall"
    )


def one(tasks: list[dict[str, Any]], rule: str, **kwargs: Any) -> dict[str, Any]:
    (resolved,), stats = consensus(tasks, rule, **kwargs)
    assert stats.tasks_written == 1
    return resolved


def test_majority_takes_the_most_votes_and_records_the_agreement() -> None:
    task = one([copy_of("a", 2, 5), copy_of("b", 2, 5), copy_of("c", 6, 1)], "majority")
    assert turn_value(task, "likert_value") == 2 and turn_value(task, "selected_model_id") == "m1"
    assert overall(task) == 5
    assert task["metadata"]["annotation"] == {
        "annotator": "consensus",
        "annotators": ["a", "b", "c"],
        "rule": "majority",
        "agreement": pytest.approx(2 / 3, abs=1e-4),
    }
    records, stats = dpo_records([task])
    (pair,) = list(records)
    assert pair["chosen_source_id"] == "m1" and pair["annotator"] == "consensus"
    assert pair["agreement"] == pytest.approx(0.6667) and pair["annotators"] == 3


def test_a_majority_tie_resolves_to_nothing_and_gives_no_pair() -> None:
    task = one([copy_of("a", 2), copy_of("b", 6)], "majority")
    assert turn_value(task, "likert_value") is None and turn_value(task, "selected_model_id") is None
    records, stats = dpo_records([task])
    assert list(records) == [] and stats.skipped_no_preference == 1


def test_mean_rounds_to_the_nearest_value_halves_towards_the_middle() -> None:
    assert turn_value(one([copy_of("a", 1), copy_of("b", 2), copy_of("c", 6)], "mean"), "likert_value") == 3
    assert turn_value(one([copy_of("a", 1), copy_of("b", 2)], "mean"), "likert_value") == 2  # 1.5 -> 2
    middle = one([copy_of("a", 3), copy_of("b", 5)], "mean")  # mean 4: a tie, no selection, no pair
    assert turn_value(middle, "likert_value") == 4 and turn_value(middle, "selected_model_id") is None
    assert middle["metadata"]["annotation"]["agreement"] == 0.0


def test_unanimous_keeps_only_values_everyone_gave() -> None:
    task = one([copy_of("a", 2, 5), copy_of("b", 3, 5)], "unanimous")
    assert turn_value(task, "likert_value") is None and overall(task) == 5
    assert turn_value(task, "selected_model_id") is None


def test_drop_disagreements_keeps_one_direction_and_drops_the_rest() -> None:
    kept = one([copy_of("a", 2), copy_of("b", 3)], "drop-disagreements")
    assert turn_value(kept, "likert_value") == 3 and kept["metadata"]["annotation"]["agreement"] == 1.0
    assert kept["metadata"]["annotation"]["rule"] == "drop-disagreements"
    resolved, stats = consensus([copy_of("a", 2), copy_of("b", 6)], "drop-disagreements")
    assert resolved == [] and stats.dropped_disagreement == 1


def test_weights_and_left_out_annotators() -> None:
    copies = [copy_of("good", 6), copy_of("rand", 1), copy_of("rand2", 2)]
    weighted = one(copies, "majority", weights={"good": 2.5, "rand": 1.0, "rand2": 1.0})
    assert turn_value(weighted, "likert_value") == 6  # 2.5 votes against 1 + 1 split
    assert turn_value(one(copies, "mean", weights={"rand": 0, "rand2": 0}), "likert_value") == 6
    left = one(copies, "majority", exclude=["rand", "rand2"])
    assert left["metadata"]["annotation"]["annotators"] == ["good"]
    resolved, stats = consensus([copy_of("rand", 1)], "majority", exclude=["rand"])
    assert resolved == [] and stats.dropped_no_annotator == 1 and stats.annotations_excluded == 1


def test_text_comes_from_the_heaviest_annotator_who_agrees_with_the_consensus() -> None:
    copies = [
        copy_of("a", 6, justification="B is right"),
        copy_of("b", 1, justification="A"),
        copy_of("c", 7, justification="B!"),
    ]
    task = one(copies, "majority", weights={"a": 1.0, "b": 1.0, "c": 3.0})
    assert turn_value(task, "justification") == "B!"


def test_gold_is_never_exported_with_or_without_consensus() -> None:
    gold = copy_of("a", 2)
    gold["metadata"]["gold"] = {"turn": {"likert_value": 2}}
    records, stats = dpo_records([gold, copy_of("a", 2)])
    assert len(list(records)) == 1 and stats.skipped_gold == 1 and stats.to_dict()["skipped_gold"] == 1
    resolved, cstats = consensus([gold, copy_of("b", 2)], "majority")
    assert len(resolved) == 1 and cstats.dropped_gold == 1


def test_every_export_kind_carries_the_agreement() -> None:
    task = one([copy_of("a", 2, 5), copy_of("b", 2, 5)], "mean")
    records, _ = ratings_rows([task])
    rows = list(records)
    assert len(rows) == 2 and {r["agreement"] for r in rows} == {1.0} and {r["annotators"] for r in rows} == {2}
    sft, _ = sft_records([task])
    assert [r["agreement"] for r in sft] == [1.0]
    plain, _ = ratings_rows([copy_of("a", 2, 5)])
    assert "agreement" not in next(iter(plain))  # per-annotator exports are unchanged


def test_unknown_rule_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown consensus rule"):
        consensus([], "vote")


def test_export_with_consensus_drops_the_annotator_quality_flags(tmp_path: Path) -> None:
    strengths = {"m1": 1.0, "m2": 0.0, "m3": -1.0}
    people = [Annotator("alice"), Annotator("bob"), Annotator("rand", kind="random")]
    copies = annotate_all(pairwise_batch(list(strengths), 10, strengths), people)
    path = tmp_path / "annotated.jsonl"
    path.write_text("".join(json.dumps(c) + "\n" for c in copies), encoding="utf-8")
    assert CliRunner().invoke(app, ["quality", str(path), "--draws", "20"]).exit_code == 0
    result = CliRunner().invoke(
        app,
        [
            "export-dataset",
            str(path),
            "--out",
            str(tmp_path / "out"),
            "--no-parquet",
            "--consensus",
            "majority",
            "--quality",
            str(tmp_path / "annotated.quality.json"),
            "--drop-flagged",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["consensus"]["excluded_annotators"] == ["rand"] and summary["consensus"]["tasks_written"] == 30
    rows = [json.loads(line) for line in (tmp_path / "out" / "dpo.jsonl").read_text().splitlines()]
    assert rows and all(r["annotator"] == "consensus" and r["annotators"] == 2 for r in rows)
    assert len(rows) == summary["stats"]["pairs_written"] <= 30

    needs_quality = CliRunner().invoke(app, ["export-dataset", str(path), "--consensus", "mean", "--weighted"])
    assert needs_quality.exit_code == 2 and "--quality" in needs_quality.output


def test_rankings_resolve_by_mean_rank_or_by_identical_majority() -> None:
    from task_builder.consensus import _resolve

    slot = {"type": "ranked_choices"}
    votes = [(["a", "b", "c"], 1.0), (["b", "a", "c"], 1.0), (["a", "c", "b"], 1.0)]
    assert _resolve(slot, votes, "mean") == ["a", "b", "c"]  # mean ranks 0.33, 1.0, 1.67
    assert _resolve(slot, votes, "majority") is None  # three different rankings: no majority
    assert _resolve(slot, [*votes, (["a", "b", "c"], 1.0)], "majority") == ["a", "b", "c"]
    assert _resolve(slot, votes, "unanimous") is None
