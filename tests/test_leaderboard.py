"""Bradley–Terry leaderboard (task_builder/leaderboard.py, rlhf leaderboard): hand-computed fits, ties
and orders, interval coverage in a simulation with known strengths, human and judge boards from
annotated tasks, and the files the command writes."""

from __future__ import annotations

import asyncio
import json
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import flow_run_artifacts
from scripted_annotators import Annotator, annotate_all, pairwise_batch
from typer.testing import CliRunner

from flows.cli.app import app
from task_builder.leaderboard import Comparison, board, fit_batch, leaderboard

STRENGTHS = {"m1": 1.0, "m2": 0.0, "m3": -1.0}


def strengths(result: dict[str, Any]) -> dict[str, float]:
    return {m["source_id"]: m["strength"] for m in result["models"]}


def games(pairs: list[tuple[str, str, float]]) -> list[Comparison]:
    return [Comparison(f"t{n}", a, b, s) for n, (a, b, s) in enumerate(pairs)]


def test_two_models_the_strength_gap_is_the_log_odds_of_the_wins() -> None:
    three_to_one = games([("a", "b", 1.0)] * 3 + [("a", "b", 0.0)])
    fitted = strengths(board(three_to_one, draws=0, prior=0))
    assert fitted["a"] - fitted["b"] == pytest.approx(math.log(3), abs=1e-3)
    assert fitted["a"] + fitted["b"] == pytest.approx(0, abs=1e-3)
    # the default prior: one tied game, half a win each way
    shrunk = strengths(board(three_to_one, draws=0))
    assert shrunk["a"] - shrunk["b"] == pytest.approx(math.log(3.5 / 1.5), abs=1e-3)


def test_a_tie_is_half_a_win_each_way() -> None:
    with_tie = strengths(board(games([("a", "b", 1.0), ("a", "b", 1.0), ("a", "b", 0.5)]), draws=0, prior=0))
    assert with_tie["a"] - with_tie["b"] == pytest.approx(math.log(2.5 / 0.5), abs=1e-3)


def test_the_position_a_model_was_shown_in_does_not_matter() -> None:
    rng = random.Random(1)
    pairs = [(a, b, rng.choice([0.0, 0.5, 1.0])) for a, b in [("x", "y"), ("y", "z"), ("x", "z")] * 10]
    flipped = [(b, a, 1 - s) for a, b, s in pairs]
    assert board(games(pairs), draws=50) == board(games(flipped), draws=50)


def mm_fit(wins: np.ndarray, iterations: int = 20000) -> np.ndarray:
    """Hunter's (2004) minorisation–maximisation algorithm, written independently of Newton's method."""
    k = len(wins)
    p = np.ones(k)
    n = wins + wins.T
    for _ in range(iterations):
        p = wins.sum(axis=1) / np.array([sum(n[i, j] / (p[i] + p[j]) for j in range(k) if j != i) for i in range(k)])
        p /= np.exp(np.log(p).mean())
    return np.asarray(np.log(p))


def test_newton_fit_matches_the_mm_algorithm_and_solves_the_likelihood_equations() -> None:
    wins = np.array([[0, 7, 9, 4], [3, 0, 6, 5], [1, 4, 0, 6], [2, 5, 4, 0]], dtype=float)
    theta = fit_batch(wins[None], prior=0)[0]
    np.testing.assert_allclose(theta, mm_fit(wins), atol=1e-6)
    p = 1 / (1 + np.exp(theta[None, :] - theta[:, None]))
    np.testing.assert_allclose(((wins + wins.T) * p).sum(axis=1), wins.sum(axis=1), atol=1e-8)


def test_a_model_that_won_everything_has_a_finite_strength() -> None:
    fitted = strengths(board(games([("a", "b", 1.0)] * 20 + [("b", "c", 1.0)] * 20), draws=20))
    assert all(math.isfinite(v) for v in fitted.values()) and fitted["a"] > fitted["b"] > fitted["c"]


def test_bootstrap_intervals_cover_known_strengths_about_95_percent_of_the_time() -> None:
    """Simulate preferences from known strengths, fit, and count how often the 95% interval holds the
    truth over repeated draws (each draw: every pair 40 times; 200 bootstrap draws)."""
    truth = {"a": 0.8, "b": 0.3, "c": -0.2, "d": -0.9}  # mean 0, like the fitted strengths
    rng = random.Random(7)
    covered = checked = 0
    for repetition in range(120):
        pairs = []
        for x, y in [(x, y) for i, x in enumerate(truth) for y in list(truth)[i + 1 :]]:
            p = 1 / (1 + math.exp(truth[y] - truth[x]))
            pairs += [(x, y, 1.0 if rng.random() < p else 0.0) for _ in range(40)]
        result = board(games(pairs), draws=200, seed=repetition)
        for entry in result["models"]:
            low, high = entry["ci"]
            covered += int(low <= truth[entry["source_id"]] <= high)
            checked += 1
    coverage = covered / checked
    print(f"coverage {coverage:.3f} over {checked} intervals")
    assert 0.88 <= coverage <= 0.99


# ---------------------------------------------------------------- from annotated tasks


def careful_copies(per_pair: int = 30, seed: int = 0, categories: list[str] | None = None) -> list[dict[str, Any]]:
    tasks = pairwise_batch(list(STRENGTHS), per_pair, STRENGTHS, seed=seed, categories=categories)
    people = [Annotator("alice", accuracy=1.0), Annotator("bob", accuracy=1.0), Annotator("rand", kind="random")]
    return annotate_all(tasks, people)


def test_humans_rank_the_models_in_order_of_their_true_strengths_per_category_too() -> None:
    result = leaderboard(careful_copies(categories=["code", "chat"]), draws=200)
    humans = result["humans"]
    assert [m["source_id"] for m in humans["models"]] == ["m1", "m2", "m3"]
    assert humans["tasks"] == 90 and humans["comparisons"] == 270
    for entry in humans["models"]:
        assert entry["ci"][0] <= entry["strength"] <= entry["ci"][1]
    first, last = humans["models"][0], humans["models"][-1]
    assert first["ci"][0] > last["ci"][1]  # m1 is surely better than m3
    rate = humans["win_rates"]["m1"]["m3"]
    assert rate["n"] == 90 and rate["rate"] + humans["win_rates"]["m3"]["m1"]["rate"] == pytest.approx(1)
    assert set(result["categories"]) == {"code", "chat"}
    assert sum(b["comparisons"] for b in result["categories"].values()) == 270


def test_leaving_an_annotator_out_removes_their_preferences() -> None:
    everyone = leaderboard(careful_copies(per_pair=10), draws=10)
    careful = leaderboard(careful_copies(per_pair=10), draws=10, exclude=["rand"])
    assert careful["humans"]["comparisons"] == 60 and everyone["humans"]["comparisons"] == 90
    gap = strengths(careful["humans"])["m1"] - strengths(careful["humans"])["m3"]
    assert gap > strengths(everyone["humans"])["m1"] - strengths(everyone["humans"])["m3"]


def with_judge(copies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A judge that always prefers the model the humans like less (on the task's own order)."""
    rank = {"m1": 0, "m2": 1, "m3": 2}
    for task in copies:
        order = [m["source_id"] for m in task["threads"][0]["turns"][-1]["messages"] if m["role"] == "assistant"]
        likert = 6 if rank[order[0]] < rank[order[1]] else 2  # 6: the second answer is better
        task["metadata"]["predictions"] = {"judge-x": {"turn": {"likert_value": likert}}}
    return copies


def test_judges_are_ranked_from_their_predictions_once_per_task() -> None:
    result = leaderboard(with_judge(careful_copies(per_pair=10)), draws=50)
    judge = result["judges"]["judge-x"]
    assert judge["comparisons"] == 30  # once per task, not once per annotator
    assert [m["source_id"] for m in judge["models"]] == ["m3", "m2", "m1"]


def test_gold_tasks_stay_out_of_the_leaderboard() -> None:
    copies = careful_copies(per_pair=4)
    for task in copies[:6]:
        task["metadata"]["gold"] = {"turn": {"likert_value": 1}}
    assert leaderboard(copies, draws=0)["humans"]["comparisons"] == 36 - 6


def test_leaderboard_command_writes_json_and_png(tmp_path: Path) -> None:
    path = tmp_path / "annotated.jsonl"
    path.write_text("".join(json.dumps(c) + "\n" for c in with_judge(careful_copies(per_pair=10))), encoding="utf-8")
    result = CliRunner().invoke(app, ["leaderboard", str(path), "--draws", "100", "--exclude", "rand"])
    assert result.exit_code == 0, result.output
    assert "m1" in result.output and "judge-x" in result.output and "left out: rand" in result.output
    data = json.loads((tmp_path / "annotated.leaderboard.json").read_text())
    assert [r["source_id"] for r in data["rows"]] == ["m1", "m2", "m3"] and data["excluded_annotators"] == ["rand"]
    assert data["rows"][0]["judge-x"].endswith("(#3)")
    png = (tmp_path / "annotated.leaderboard.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000

    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    nothing = CliRunner().invoke(app, ["leaderboard", str(empty)])
    assert nothing.exit_code == 1 and "nothing to rank" in nothing.output


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_leaderboard_flow_publishes_a_table_artifact(tmp_path: Path) -> None:
    from flows.reporting.leaderboard import leaderboard_report

    path = tmp_path / "annotated.jsonl"
    path.write_text("".join(json.dumps(c) + "\n" for c in careful_copies(per_pair=5)), encoding="utf-8")
    state = asyncio.run(leaderboard_report(str(path), draws=20, return_state=True))
    data = state.result()

    (artifact,) = flow_run_artifacts(state.state_details.flow_run_id)
    rows = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
    assert artifact.type == "table" and artifact.key == "model-leaderboard" and rows == data["rows"]


def test_rankings_and_selections_give_comparisons_too() -> None:
    from task_builder.leaderboard import _from_preference

    ranked = _from_preference("t", ["x", "y", "z"], {"ranking": ["z", "x", "y"]}, None, "code")
    assert [(c.a, c.b, c.score) for c in ranked] == [("z", "x", 1.0), ("z", "y", 1.0), ("x", "y", 1.0)]
    assert all(c.category == "code" for c in ranked)
    chosen = _from_preference("t", ["x", "y", "z"], {"selected_model_id": "y"}, None, None)
    assert [(c.a, c.b, c.score) for c in chosen] == [("y", "x", 1.0), ("y", "z", 1.0)]
    tie = _from_preference("t", ["x", "y"], {"likert_value": 4, "selected_model_id": None}, [1, 2, 3, 4, 5, 6, 7], None)
    assert [(c.a, c.b, c.score) for c in tie] == [("x", "y", 0.5)]
    assert _from_preference("t", ["x", "y"], {"ranking": ["x", "q"]}, None, None) == []
