"""Gold tasks (task_builder/gold.py): a pending shell made from a task with known values, how many are
mixed in and where, and bad gold refused."""

from __future__ import annotations

import copy
import json
import random
import re
from pathlib import Path

import pytest
from scripted_annotators import Annotator, bt_truth, shell
from typer.testing import CliRunner

from flows.cli.app import app
from task_builder.annotated import annotation_problems
from task_builder.gold import GoldProblem, gold_shell, known_values, mix, mix_count
from task_builder.reliability import quality


def gold_task() -> dict:
    task = shell("g1", ["m1", "m2"])
    return Annotator("expert", accuracy=1.0).annotate(
        task, bt_truth(["m1", "m2"], {"m1": 3.0, "m2": -3.0}, random.Random(0))
    )


def test_a_gold_shell_is_blank_with_a_task_id_like_any_other_and_the_truth_in_metadata() -> None:
    done = gold_task()
    made = gold_shell(done, "b1")
    assert re.fullmatch(r"task_[0-9a-f]{24}", made["task_id"]) and made["task_id"] != done["task_id"]
    assert made["status"] == "pending" and "annotation" not in made["metadata"]
    turn = made["threads"][0]["turns"][-1]
    values = [s["value"] for s in turn["annotations"]] + [
        s["value"] for m in turn["messages"] for s in m["annotations"]
    ]
    assert set(values) == {None}
    assert made["metadata"]["gold"] == known_values(done)
    assert made["metadata"]["gold"]["turn"]["likert_value"] in (1, 2, 3)  # m1 is far better
    assert "justification" not in made["metadata"]["gold"]["turn"]  # free text is no known value
    completed = copy.deepcopy(made)
    completed["status"] = "completed"
    completed["threads"][0]["turns"][-1]["annotations"][1]["value"] = 2
    assert annotation_problems(completed) == []  # slot ids derive from the new task id
    assert gold_shell(done, "b1") == made and gold_shell(done, "b2")["task_id"] != made["task_id"]


def test_gold_copies_are_scored_by_quality() -> None:
    made = gold_shell(gold_task(), "b1")
    truth = bt_truth(["m1", "m2"], {"m1": 3.0, "m2": -3.0}, random.Random(0))
    copies = [Annotator(name, accuracy=1.0).annotate(made, truth) for name in ("a", "b")]
    report = quality(copies, draws=0)
    assert report["gold_tasks"] == 1 and report["tasks"] == 0
    assert {p["annotator"]: p["gold"]["accuracy"] for p in report["annotators"]}["a"] >= 0.5


@pytest.mark.parametrize(
    ("real", "rate", "available", "expected"),
    [(42, 0.1, 8, 5), (9, 0.1, 8, 1), (90, 0.1, 20, 10), (42, 0.1, 2, 2), (42, 0.0, 8, 0), (0, 0.1, 8, 0)],
)
def test_how_many_gold_tasks_make_the_rate(real: int, rate: float, available: int, expected: int) -> None:
    assert mix_count(real, rate, available) == expected


def test_mixing_is_seeded_and_keeps_the_real_order() -> None:
    real, gold = list(range(20)), ["g1", "g2"]
    mixed = mix(real, gold, "b1")
    assert mixed == mix(real, gold, "b1") and [x for x in mixed if isinstance(x, int)] == real
    assert sorted(str(x) for x in mixed if isinstance(x, str)) == gold
    with pytest.raises(ValueError, match="gold rate"):
        mix_count(10, 1.0, 5)


def test_a_task_without_a_known_preference_is_no_gold() -> None:
    done = gold_task()
    for slot in done["threads"][0]["turns"][-1]["annotations"]:
        slot["value"] = None
    with pytest.raises(GoldProblem, match="no known preference"):
        gold_shell(done, "b1")
    with pytest.raises(GoldProblem, match="not a completed"):
        gold_shell({"task_id": "x", "status": "pending"}, "b1")


def test_gold_and_overlap_are_refused_for_file_deliveries(tmp_path: Path) -> None:
    gold = tmp_path / "gold.jsonl"
    gold.write_text(json.dumps(gold_task()) + "\n", encoding="utf-8")
    result = CliRunner().invoke(
        app, ["deliver", str(tmp_path), "--to", "scale", "--out", str(tmp_path / "o.jsonl"), "--gold", str(gold)]
    )
    assert result.exit_code != 0 and "--to label-studio only" in result.output


def test_a_gold_file_line_that_is_no_gold_is_named(tmp_path: Path) -> None:
    from common.errors import InputError
    from flows.cli.app import _read_gold

    pending = gold_task()
    pending["status"] = "pending"
    gold = tmp_path / "gold.jsonl"
    gold.write_text(json.dumps(gold_task()) + "\n\n" + json.dumps(pending) + "\n", encoding="utf-8")
    with pytest.raises(InputError) as caught:
        _read_gold(gold)
    (problem,) = caught.value.problems
    assert (problem.file, problem.line) == (str(gold), 3) and "not a completed annotated task" in problem.message
