"""task_builder.predictions: a prompt's judgements as one task's metadata.predictions, in the task's own order."""

from __future__ import annotations

from task_builder.predictions import Judgement, PairJudgement, mirrored, task_predictions
from task_builder.template import resolve_template

TEMPLATE = resolve_template("default")  # Likert 1..7, selected_model_id on


def _judgement() -> Judgement:
    return Judgement(
        answers={
            "x": {"tone": 6, "rationale": "ok"},
            "y": {"tone": 3, "rationale": "meh"},
            "z": {"tone": 5, "rationale": "z"},
        },
        # asked with x as A: 2 (x better); with y as A the judge said 5, i.e. 3 read back onto x-first
        pairs={("x", "y"): PairJudgement(2, "x is clearer", "mean", 2, 3)},
        errors={"w": "http_500: boom"},
    )


def test_the_task_in_the_pairs_order_gets_the_value_as_asked() -> None:
    predictions = task_predictions(TEMPLATE, ["x", "y"], {"judge": _judgement()})
    entry = predictions["judge"]
    assert entry["x"] == {"tone": 6, "rationale": "ok"} and entry["y"]["tone"] == 3 and "z" not in entry
    assert entry["turn"] == {
        "likert_value": 2,
        "selected_model_id": "x",
        "rationale": "x is clearer",
        "position_bias": {"rule": "mean", "a_first": 2, "b_first_mirrored": 3},
    }
    assert "errors" not in entry


def test_the_task_in_the_other_order_reads_every_value_mirrored() -> None:
    entry = task_predictions(TEMPLATE, ["y", "x"], {"judge": _judgement()})["judge"]
    assert entry["turn"]["likert_value"] == 6 and entry["turn"]["selected_model_id"] == "x"
    # y shown first was the second asking (3 on x-first = 5 on y-first); x first was 2 on x-first = 6 here
    assert entry["turn"]["position_bias"] == {"rule": "mean", "a_first": 5, "b_first_mirrored": 6}


def test_no_turn_for_three_answers_errors_only_for_the_tasks_answers_and_an_undecided_pair_says_why() -> None:
    entry = task_predictions(TEMPLATE, ["x", "y", "z"], {"judge": _judgement()})["judge"]
    assert "turn" not in entry and set(entry) == {"x", "y", "z"}
    entry = task_predictions(TEMPLATE, ["x", "w"], {"judge": _judgement()})["judge"]
    assert entry["errors"] == {"w": "http_500: boom"} and "turn" not in entry
    undecided = Judgement(pairs={("x", "y"): PairJudgement(None, "", "none", 2, 5)})
    entry = task_predictions(TEMPLATE, ["y", "x"], {"judge": undecided})["judge"]
    assert "turn" not in entry and "disagreed" in entry["errors"]["turn"]
    assert task_predictions(TEMPLATE, ["a", "b"], {"judge": Judgement()}) == {}


def test_mirrored_reads_a_scale_from_the_other_end() -> None:
    assert [mirrored([1, 2, 3, 4, 5, 6, 7], v) for v in (1, 4, 6)] == [7, 4, 2]
    assert mirrored([0, 1, 2, 3], 1) == 2
